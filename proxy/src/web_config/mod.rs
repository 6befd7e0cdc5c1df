//! `--web.config.file`: the Prometheus exporter-toolkit web configuration (TLS, client
//! certificates, basic-auth users, response headers), so a file written for node_exporter
//! secures the proxy unchanged.
//!
//! [`WebConfig::load`] reads and checks the whole file: unknown keys are refused with their
//! name (as exporter-toolkit's strict YAML does), and so is every option rustls or this proxy
//! cannot honour (TLS 1.0/1.1, a Go cipher suite or curve rustls lacks, `http2: true`,
//! `rate_limit`): never silently ignored. Relative paths are relative to the file's directory.
//! The TLS files themselves are read by [`WebConfig::server_config`] ([`tls::from_web_config`]).

mod parse;
pub mod settings;
#[cfg(test)]
mod tests;
pub mod tls;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::SupportedKxGroup;
use rustls::SupportedCipherSuite;

use crate::auth::Users;
use crate::http::TlsSetup;

pub use settings::{Settings, SettingsError};
pub use tls::TlsConfigError;

/// Web config files above this size are refused (a real one is well under 100 KiB, even with
/// inline certificates and many users).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A checked web configuration.
#[derive(Debug)]
pub struct WebConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// `tls_server_config`; `None`: plain HTTP (no certificate or key given).
    pub tls: Option<TlsServerConfig>,
    /// `http_server_config.headers`: extra response headers, in file order of names.
    pub headers: Vec<(String, String)>,
    /// `basic_auth_users`; `None` when absent or empty (no basic auth, as exporter-toolkit).
    pub users: Option<Users>,
}

/// PEM text given as a file (path as written in the config) or inline.
#[derive(Clone, PartialEq, Eq)]
pub enum PemSource {
    /// `*_file`: a path, relative to the config file's directory unless absolute.
    File(PathBuf),
    /// `cert`, `key`, `client_ca`: the PEM text itself.
    Inline(String),
}

// Inline text may be a private key: `{:?}` of a config must not print it.
impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::File(path) => f.debug_tuple("File").field(path).finish(),
            PemSource::Inline(text) => write!(f, "Inline(<{} bytes>)", text.len()),
        }
    }
}

/// `client_auth_type`, Go's `tls.ClientAuthType` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate is asked for (the default).
    NoClientCert,
    /// A certificate is asked for, not required, and not verified.
    RequestClientCert,
    /// A certificate is required but not verified against a CA (anyone can make one).
    RequireAnyClientCert,
    /// A certificate is optional; if given, it must chain to `client_ca_file`.
    VerifyClientCertIfGiven,
    /// A certificate chaining to `client_ca_file` is required: the mode for identities.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn parse(name: &str) -> Option<ClientAuth> {
        Some(match name {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // "RequireClientCert": the old name exporter-toolkit still accepts.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    /// Whether certificates are checked against the client CA.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// `min_version`, `max_version`: the versions rustls implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// `tls_server_config`, checked.
#[derive(Debug, Clone)]
pub struct TlsServerConfig {
    /// `cert_file` or `cert`.
    pub cert: PemSource,
    /// `key_file` or `key`.
    pub key: PemSource,
    /// `client_auth_type`.
    pub client_auth: ClientAuth,
    /// `client_ca_file` or `client_ca`; present whenever `client_auth` verifies.
    pub client_ca: Option<PemSource>,
    /// `client_allowed_sans`: the peer certificate must carry one of them (DNS, e-mail, IP or
    /// URI SAN, exact match); empty: no check.
    pub client_allowed_sans: Vec<String>,
    /// `min_version` (default TLS12).
    pub min_version: TlsVersion,
    /// `max_version` (default TLS13).
    pub max_version: TlsVersion,
    /// `cipher_suites`, in preference order; empty: rustls' defaults.
    pub cipher_suites: Vec<SupportedCipherSuite>,
    /// `curve_preferences`, in preference order; empty: rustls' defaults.
    pub curve_preferences: Vec<&'static dyn SupportedKxGroup>,
    /// `prefer_server_cipher_suites` (default true).
    pub prefer_server_cipher_suites: bool,
    /// The web config file, for messages about inline PEM.
    pub config_path: PathBuf,
}

/// Why a web config file cannot be used.
#[derive(Debug)]
pub enum WebConfigError {
    /// The file cannot be read.
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Not YAML, a value of the wrong type, or an unknown key.
    Yaml { path: PathBuf, message: String },
    /// A key whose value cannot be used; `key` is its dotted path.
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// A file the config names (certificate, key, CA) cannot be used.
    Tls {
        path: PathBuf,
        error: TlsConfigError,
    },
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebConfigError::Read { path, error } => write!(
                f,
                "cannot read --web.config.file {}: {error}",
                path.display()
            ),
            WebConfigError::Yaml { path, message } => {
                write!(f, "web config file {}: {message}", path.display())
            }
            WebConfigError::Invalid { path, key, reason } => {
                write!(f, "web config file {}: {key}: {reason}", path.display())
            }
            WebConfigError::Tls { path, error } => {
                write!(f, "web config file {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for WebConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WebConfigError::Read { error, .. } => Some(error),
            WebConfigError::Tls { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl WebConfig {
    /// Reads and checks the file (not yet the TLS files it names: see
    /// [`WebConfig::server_config`]).
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        use std::io::Read;
        let read_error = |error| WebConfigError::Read {
            path: path.to_path_buf(),
            error,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_error)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(WebConfigError::Yaml {
                path: path.to_path_buf(),
                message: format!(
                    "larger than {} KiB: not a web config file; check the path",
                    MAX_CONFIG_BYTES / 1024
                ),
            });
        }
        WebConfig::parse(&text, path)
    }

    /// The directory relative paths of the file are resolved against: the file's directory
    /// (`.` for a bare file name).
    pub fn base_dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// The rustls configuration of `tls_server_config`, its files read and checked; `None`
    /// when the config has no TLS.
    pub fn server_config(&self) -> Result<Option<Arc<TlsSetup>>, WebConfigError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        tls::from_web_config(tls, self.base_dir())
            .map(Some)
            .map_err(|error| WebConfigError::Tls {
                path: self.path.clone(),
                error,
            })
    }

    /// The files this config depends on (itself, then certificate, key and client CA
    /// files), absolute as far as the config path is: what a reloader watches.
    pub fn files(&self) -> Vec<PathBuf> {
        let sources = self
            .tls
            .iter()
            .flat_map(|tls| [Some(&tls.cert), Some(&tls.key), tls.client_ca.as_ref()])
            .flatten();
        let named = sources.filter_map(|source| match source {
            PemSource::File(p) => Some(self.base_dir().join(p)),
            PemSource::Inline(_) => None,
        });
        std::iter::once(self.path.clone()).chain(named).collect()
    }
}
