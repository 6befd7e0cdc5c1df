//! Why the proxy could not start, or stopped serving: `main` reports it once and exits 1.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use pushprox_daemon::listen::ListenError;

use crate::web_config::SettingsError;

#[derive(Debug)]
pub enum StartupError {
    /// A file the flags name cannot be used.
    Settings(SettingsError),
    /// `-l` cannot be bound.
    Listen(ListenError),
    /// The bcrypt threads or the password cache's salt.
    Passwords(io::Error),
    /// A thread the proxy needs could not be started.
    Thread {
        what: &'static str,
        source: io::Error,
    },
    /// The listener stopped accepting connections.
    Accept { addr: SocketAddr, source: io::Error },
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupError::Settings(e) => e.fmt(f),
            StartupError::Listen(e) => write!(
                f,
                "{e} (is another proxy running there? choose another address with -l)"
            ),
            StartupError::Passwords(e) => write!(
                f,
                "cannot start the password checks: {e} (lower --auth.check-workers, or raise \
                 the limit of threads: ulimit -u, systemd TasksMax=)"
            ),
            StartupError::Thread { what, source } => write!(
                f,
                "cannot start the {what} thread: {source} (raise the limit of threads: \
                 ulimit -u, systemd TasksMax=)"
            ),
            StartupError::Accept { addr, source } => {
                write!(f, "cannot accept connections on {addr}: {source}")
            }
        }
    }
}

impl std::error::Error for StartupError {}
