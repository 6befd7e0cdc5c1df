//! What `pushprox-proxy` and `pushprox-client` need as long-running daemons, written once:
//! threads that are reused ([`workers`]), SIGTERM and SIGINT ([`signals`]), `--lock-file`
//! ([`lock`]), the one-line logger ([`logger`]), the Prometheus text exposition
//! ([`exposition`]) with the `process_*` metrics ([`process`]), random ids ([`ids`]), and
//! TLS certificate and key files with the crypto provider ([`tls`]).
//!
//! The wire codec is `pushprox-protocol`; nothing here knows PushProx's messages.

pub mod exposition;
pub mod ids;
pub mod lock;
pub mod logger;
pub mod process;
pub mod signals;
pub mod tls;
pub mod workers;
