//! What the tests of pushprox-rs share, so that each is written once: the real binaries started
//! on free loopback ports and killed on drop ([`process`], [`binaries`]), tiny targets and
//! servers ([`target`]), a fake proxy for the client ([`fake_proxy`]), a small blocking HTTP/1.1 client ([`http`]), readers of metrics and
//! /proc ([`procfs`]), one temporary-directory type ([`TempDir`]), and keys, certificates and
//! bcrypt lines made in Rust ([`certs`], [`passwords`]), so that `cargo test` needs neither
//! `openssl` nor `htpasswd`.
//!
//! Everything binds to 127.0.0.0/8 only, and every wait has a bound. A dev-dependency only:
//! nothing here ships.

pub mod binaries;
pub mod certs;
pub mod curl;
pub mod fake_proxy;
pub mod http;
pub mod passwords;
pub mod process;
pub mod procfs;
pub mod target;
mod temp_dir;
pub mod tls_target;

pub use binaries::{
    client_args, client_args_to, client_bin, client_flags, proxy_bin, quiet_client, quiet_proxy,
    Client, Proxy,
};
pub use certs::{KeyKind, Spec, Usage, ALL_KEYS};
pub use curl::{curl, served_serial};
pub use fake_proxy::{FakeProxy, Poll, ProxyEvent};
pub use http::*;
pub use passwords::bcrypt_line;
pub use process::{command, free_port, target_tmp_dir, wait_until, ChildGuard, Proc, READY_WITHIN};
pub use procfs::*;
pub use target::{host, random_bytes, read_head, Answer, FakeTarget, Server, Target};
pub use temp_dir::TempDir;
pub use tls_target::TlsTarget;
