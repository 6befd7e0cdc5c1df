//! What `pushprox-proxy` and `pushprox-client` need as long-running daemons, written once:
//! the flags both take ([`flags`], [`listen`]) and their start ([`startup`]), threads that are
//! reused ([`workers`]) and one-value hand-offs between them ([`handoff`]), SIGTERM and SIGINT
//! ([`signals`]), `--lock-file` ([`lock`]), the one-line logger ([`logger`]), the Prometheus text exposition
//! ([`exposition`]) with the `process_*` metrics ([`process`]), random ids ([`ids`]), and
//! TLS certificate and key files with the crypto provider ([`tls`]).
//!
//! The wire codec is `pushprox-protocol`; nothing here knows PushProx's messages.

pub mod exposition;
pub mod flags;
pub mod handoff;
pub mod ids;
pub mod listen;
pub mod lock;
pub mod logger;
pub mod process;
pub mod signals;
pub mod startup;
pub mod sync;
pub mod tls;
pub mod workers;

/// The 64-bit counter both daemons use: the CPU's own atomic where it has 64-bit atomics,
/// portable-atomic's lock-based one on the 32-bit MIPS and ARMv5 targets, which have none (and
/// where `std::sync::atomic::AtomicU64` does not exist). Same methods as std's.
pub use portable_atomic::AtomicU64;
