//! Errors that stop the client before it starts polling; each one exits 1.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the client could not start.
#[derive(Debug)]
pub enum StartupError {
    /// A `--tls.*` or `--scrape.tls.cacert` file could not be read or used, or
    /// `--tls.cert` and `--tls.key` do not make a pair rustls can use.
    Tls(pushprox_daemon::tls::PemError),
    /// No `--tls.cacert` and no system CA certificates, with an https proxy URL.
    NoCaCertificates {
        url: String,
        /// Where the system's certificates were looked for.
        looked: String,
    },
    /// `--auth.token-file` could not be read or holds no usable token.
    TokenFile { path: PathBuf, reason: String },
    /// `--metrics-addr` could not be bound.
    MetricsBind { addr: String, source: io::Error },
    /// A thread could not be started.
    Thread {
        what: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupError::Tls(e) => write!(f, "{e}"),
            StartupError::NoCaCertificates { url, looked } => write!(
                f,
                "cannot check the certificate of --proxy-url {url}: no CA certificates found \
                 ({looked}); give the CA's PEM file with --tls.cacert FILE or SSL_CERT_FILE=FILE, \
                 or install the system's CA bundle (ca-certificates)"
            ),
            StartupError::TokenFile { path, reason } => {
                write!(f, "cannot use --auth.token-file {}: {reason}", path.display())
            }
            StartupError::MetricsBind { addr, source } => write!(
                f,
                "cannot listen on --metrics-addr {addr}: {source} (is another client or exporter using that port?)"
            ),
            StartupError::Thread { what, source } => {
                write!(f, "cannot start the {what} thread: {source}")
            }
        }
    }
}

impl std::error::Error for StartupError {}
