//! `--web.config.file`: the Prometheus exporter-toolkit web configuration (TLS, client
//! certificates, basic-auth users, response headers), so a file written for node_exporter
//! secures the proxy unchanged.
//!
//! [`WebConfig::load`] reads and checks the whole file: unknown keys are refused with their
//! name (as exporter-toolkit's strict YAML does), and so is every option rustls or this proxy
//! cannot honour (TLS 1.0/1.1, a Go cipher suite or curve rustls lacks, `http2: true`,
//! `rate_limit`): never silently ignored. Relative paths are relative to the file's directory.
//! The TLS files themselves are read by [`WebConfig::server_config`] ([`tls::from_web_config`]).

pub mod settings;
pub mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::SupportedKxGroup;
use rustls::SupportedCipherSuite;
use serde::Deserialize;

use crate::auth::Users;
use crate::http::TlsSetup;

pub use settings::Settings;
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

// The file as written. Every struct refuses unknown keys, as exporter-toolkit's
// yaml.UnmarshalStrict does; values are checked afterwards, with messages naming the key.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<RawRateLimit>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    interval: Option<String>,
    burst: Option<u64>,
}

/// The headers `http_server_config.headers` may set, and the values allowed where the
/// format restricts them (exporter-toolkit's list, kept small on purpose there too).
const HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

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

    /// Parses and checks the text of the file at `path`.
    pub fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
        let invalid = |key: &str, reason: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        // An empty file (or only comments) is an empty config, as in exporter-toolkit.
        let raw: RawConfig = if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            RawConfig::default()
        } else {
            serde_saphyr::from_str::<Option<RawConfig>>(text)
                .map_err(|e| WebConfigError::Yaml {
                    path: path.to_path_buf(),
                    message: yaml_message(&e),
                })?
                .unwrap_or_default()
        };

        if let Some(rate) = &raw.rate_limit {
            let off = rate
                .interval
                .as_deref()
                .is_none_or(|i| i.trim_end_matches(['s', 'm', 'h']).trim() == "0");
            if !off || rate.burst.is_some_and(|b| b > 0) {
                return Err(invalid(
                    "rate_limit",
                    "not supported by pushprox-proxy (a scrape is never refused for arriving too often); remove it".into(),
                ));
            }
        }

        let http = raw.http_server_config.unwrap_or_default();
        if http.http2 == Some(true) {
            return Err(invalid(
                "http_server_config.http2",
                "pushprox-proxy speaks HTTP/1.1 only (what Prometheus and the clients use); remove the line or set it to false".into(),
            ));
        }
        let mut headers = Vec::new();
        for (name, value) in http.headers.unwrap_or_default() {
            let key = format!("http_server_config.headers.{name}");
            let Some((_, allowed)) = HEADERS.iter().find(|(h, _)| *h == name) else {
                let names: Vec<&str> = HEADERS.iter().map(|(h, _)| *h).collect();
                return Err(invalid(
                    &key,
                    format!(
                        "this header cannot be configured; the ones that can: {}",
                        names.join(", ")
                    ),
                ));
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(invalid(
                    &key,
                    format!("\"{value}\" is not one of: {}", allowed.join(", ")),
                ));
            }
            // The value goes into every response head as is.
            if value.bytes().any(|b| b.is_ascii_control()) {
                return Err(invalid(
                    &key,
                    "the value contains a control character (a line break?)".into(),
                ));
            }
            headers.push((name, value));
        }

        let users = match raw.basic_auth_users {
            Some(map) if !map.is_empty() => Some(
                Users::from_bcrypt_map(map)
                    .map_err(|e| invalid(&format!("basic_auth_users.{}", e.user), e.reason))?,
            ),
            _ => None,
        };

        let tls = match raw.tls_server_config {
            None => None,
            Some(t) => parse_tls(t, path)?,
        };

        Ok(WebConfig {
            path: path.to_path_buf(),
            tls,
            headers,
            users,
        })
    }

    /// The directory relative paths of the file are resolved against.
    pub fn base_dir(&self) -> &Path {
        base_dir(&self.path)
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
        let mut files = vec![self.path.clone()];
        if let Some(tls) = &self.tls {
            for source in [Some(&tls.cert), Some(&tls.key), tls.client_ca.as_ref()]
                .into_iter()
                .flatten()
            {
                if let PemSource::File(p) = source {
                    files.push(self.base_dir().join(p));
                }
            }
        }
        files
    }
}

/// The directory of `config` (`.` for a bare file name).
pub fn base_dir(config: &Path) -> &Path {
    match config.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// serde-saphyr's message on one line, with its line and column, without the source snippet
/// (which may hold a password hash or a key).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let text = text
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    match e.location() {
        Some(loc) if !text.contains(" line ") => {
            format!("line {} column {}: {text}", loc.line(), loc.column())
        }
        _ => text,
    }
}

fn pem_source(
    file: Option<String>,
    inline: Option<String>,
    file_key: &str,
    inline_key: &str,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Option<PemSource>, WebConfigError> {
    let file = file.filter(|f| !f.is_empty());
    let inline = inline.filter(|t| !t.is_empty());
    match (file, inline) {
        (Some(_), Some(_)) => Err(invalid(
            &format!("tls_server_config.{inline_key}"),
            format!("give either {inline_key} (inline PEM) or {file_key}, not both"),
        )),
        (Some(f), None) => Ok(Some(PemSource::File(PathBuf::from(f)))),
        (None, Some(t)) => Ok(Some(PemSource::Inline(t))),
        (None, None) => Ok(None),
    }
}

fn parse_version(
    key: &str,
    value: Option<&str>,
    default: TlsVersion,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<TlsVersion, WebConfigError> {
    match value {
        None => Ok(default),
        Some("TLS12") => Ok(TlsVersion::Tls12),
        Some("TLS13") => Ok(TlsVersion::Tls13),
        Some(old @ ("TLS10" | "TLS11")) => Err(invalid(
            key,
            format!(
                "{old} is not supported: rustls implements TLS 1.2 and 1.3 only (TLS12, TLS13)"
            ),
        )),
        Some(other) => Err(invalid(
            key,
            format!("unknown TLS version \"{other}\": expected TLS12 or TLS13"),
        )),
    }
}

/// Go cipher suite names (`tls.CipherSuites()` and `tls.InsecureCipherSuites()`) that rustls
/// does not implement: CBC modes, RC4, 3DES and RSA key exchange.
const GO_SUITES_RUSTLS_LACKS: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The name of a rustls suite as Go spells it (the IANA name, which rustls' `Debug` prints).
fn suite_name(suite: &SupportedCipherSuite) -> String {
    format!("{:?}", suite.suite())
}

fn parse_suites(
    names: &[String],
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Vec<SupportedCipherSuite>, WebConfigError> {
    let available = rustls::crypto::ring::ALL_CIPHER_SUITES;
    let list = || {
        available
            .iter()
            .map(suite_name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut suites = Vec::new();
    for name in names {
        let key = "tls_server_config.cipher_suites";
        match available.iter().find(|s| suite_name(s) == *name) {
            Some(s) if !suites.contains(s) => suites.push(*s),
            Some(_) => return Err(invalid(key, format!("{name} is listed twice"))),
            None if GO_SUITES_RUSTLS_LACKS.contains(&name.as_str()) => {
                return Err(invalid(
                    key,
                    format!("{name} is a Go cipher suite rustls does not implement (no CBC, RC4, 3DES or RSA key exchange); the suites available are: {}", list()),
                ))
            }
            None => {
                return Err(invalid(
                    key,
                    format!("unknown cipher suite \"{name}\"; the suites available are: {}", list()),
                ))
            }
        }
    }
    Ok(suites)
}

fn parse_curves(
    names: &[String],
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Vec<&'static dyn SupportedKxGroup>, WebConfigError> {
    use rustls::crypto::ring::kx_group;
    let key = "tls_server_config.curve_preferences";
    let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in names {
        let group = match name.as_str() {
            "CurveP256" => kx_group::SECP256R1,
            "CurveP384" => kx_group::SECP384R1,
            "X25519" => kx_group::X25519,
            "CurveP521" => {
                return Err(invalid(
                    key,
                    "CurveP521 is not implemented by rustls' crypto provider (ring); use X25519, CurveP256 or CurveP384".into(),
                ))
            }
            other => {
                return Err(invalid(
                    key,
                    format!("unknown curve \"{other}\": expected X25519, CurveP256 or CurveP384"),
                ))
            }
        };
        if groups.iter().any(|g| g.name() == group.name()) {
            return Err(invalid(key, format!("{name} is listed twice")));
        }
        groups.push(group);
    }
    Ok(groups)
}

fn parse_tls(t: RawTls, path: &Path) -> Result<Option<TlsServerConfig>, WebConfigError> {
    let invalid = |key: &str, reason: String| WebConfigError::Invalid {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let cert = pem_source(t.cert_file, t.cert, "cert_file", "cert", &invalid)?;
    let key = pem_source(t.key_file, t.key, "key_file", "key", &invalid)?;
    let client_ca = pem_source(
        t.client_ca_file,
        t.client_ca,
        "client_ca_file",
        "client_ca",
        &invalid,
    )?;
    let auth_name = t.client_auth_type.unwrap_or_default();
    let client_auth = ClientAuth::parse(&auth_name).ok_or_else(|| {
        invalid(
            "tls_server_config.client_auth_type",
            format!("unknown value \"{auth_name}\": expected NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
        )
    })?;

    // exporter-toolkit's rule: TLS is on when a certificate, key, CA or client auth type is
    // given. Other TLS options alone would be ignored there; here they are an error.
    let enabled = cert.is_some()
        || key.is_some()
        || client_ca.is_some()
        || client_auth != ClientAuth::NoClientCert;
    if !enabled {
        let others = [
            ("client_allowed_sans", t.client_allowed_sans.is_some()),
            ("min_version", t.min_version.is_some()),
            ("max_version", t.max_version.is_some()),
            ("cipher_suites", t.cipher_suites.is_some()),
            ("curve_preferences", t.curve_preferences.is_some()),
            (
                "prefer_server_cipher_suites",
                t.prefer_server_cipher_suites.is_some(),
            ),
        ];
        if let Some((name, _)) = others.iter().find(|(_, set)| *set) {
            return Err(invalid(
                &format!("tls_server_config.{name}"),
                "set without cert_file and key_file, so TLS would be off and this option ignored: add the certificate and key, or remove the option".into(),
            ));
        }
        return Ok(None);
    }
    let cert = cert.ok_or_else(|| {
        invalid(
            "tls_server_config.cert_file",
            "missing: TLS needs cert_file (or inline cert) and key_file (or inline key)".into(),
        )
    })?;
    let key = key.ok_or_else(|| {
        invalid(
            "tls_server_config.key_file",
            "missing: TLS needs cert_file (or inline cert) and key_file (or inline key)".into(),
        )
    })?;
    if client_auth.verifies() && client_ca.is_none() {
        return Err(invalid(
            "tls_server_config.client_ca_file",
            format!(
                "missing: client_auth_type {auth_name} verifies client certificates against it"
            ),
        ));
    }
    if client_auth == ClientAuth::NoClientCert && client_ca.is_some() {
        return Err(invalid(
            "tls_server_config.client_auth_type",
            "a client CA is configured but no client certificate is asked for: set client_auth_type (RequireAndVerifyClientCert to authenticate clients)".into(),
        ));
    }
    let client_allowed_sans = t.client_allowed_sans.unwrap_or_default();
    if !client_allowed_sans.is_empty()
        && !matches!(
            client_auth,
            ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
        )
    {
        return Err(invalid(
            "tls_server_config.client_allowed_sans",
            "requires client_auth_type RequireAndVerifyClientCert (or RequireAnyClientCert): with other types a client may send no certificate, leaving nothing to match".into(),
        ));
    }
    let min_version = parse_version(
        "tls_server_config.min_version",
        t.min_version.as_deref(),
        TlsVersion::Tls12,
        &invalid,
    )?;
    let max_version = parse_version(
        "tls_server_config.max_version",
        t.max_version.as_deref(),
        TlsVersion::Tls13,
        &invalid,
    )?;
    if min_version > max_version {
        return Err(invalid(
            "tls_server_config.min_version",
            "TLS13 is above max_version TLS12".into(),
        ));
    }
    let cipher_suites = parse_suites(&t.cipher_suites.unwrap_or_default(), &invalid)?;
    if !cipher_suites.is_empty() {
        let usable = cipher_suites.iter().any(|s| match s.version() {
            v if v == &rustls::version::TLS13 => max_version == TlsVersion::Tls13,
            _ => min_version == TlsVersion::Tls12,
        });
        if !usable {
            return Err(invalid(
                "tls_server_config.cipher_suites",
                "none of the listed suites is usable between min_version and max_version".into(),
            ));
        }
    }
    let curve_preferences = parse_curves(&t.curve_preferences.unwrap_or_default(), &invalid)?;
    Ok(Some(TlsServerConfig {
        cert,
        key,
        client_auth,
        client_ca,
        client_allowed_sans,
        min_version,
        max_version,
        cipher_suites,
        curve_preferences,
        prefer_server_cipher_suites: t.prefer_server_cipher_suites.unwrap_or(true),
        config_path: path.to_path_buf(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testcerts::{Dir, KeyKind};
    use crate::web_config::tls::tests::{client_trusting, handshake};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    const PATH: &str = "/etc/pushprox/web.yml";

    fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(text, Path::new(PATH))
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    /// exporter-toolkit's docs/web-config.yml, the example node_exporter's README points to.
    const DOCUMENTED_EXAMPLE: &str = "\
# Minimal TLS configuration example. Additionally, a certificate and a key file
# are needed.
tls_server_config:
  cert_file: server.crt
  key_file: server.key

# Usernames and passwords required to connect to Prometheus.
# Passwords are hashed with bcrypt: https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md#about-bcrypt
basic_auth_users:
  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze
  bob: $2y$10$hLqFl9jSjoAAy95Z/zw8Ye8wkdMBM8c5Bn1ptYqP/AXyV0.oy0S8m
";

    #[test]
    fn the_documented_example_parses() {
        let config = parse(DOCUMENTED_EXAMPLE).unwrap();
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(tls.cert, PemSource::File("server.crt".into()));
        assert_eq!(tls.key, PemSource::File("server.key".into()));
        assert_eq!(tls.client_auth, ClientAuth::NoClientCert);
        assert_eq!(
            (tls.min_version, tls.max_version),
            (TlsVersion::Tls12, TlsVersion::Tls13)
        );
        assert!(tls.prefer_server_cipher_suites);
        assert_eq!(config.users.as_ref().unwrap().len(), 2);
        assert!(config.headers.is_empty());
        assert_eq!(
            config.files(),
            [
                PathBuf::from(PATH),
                PathBuf::from("/etc/pushprox/server.crt"),
                PathBuf::from("/etc/pushprox/server.key")
            ]
        );
    }

    #[test]
    fn every_option_parses() {
        let config = parse(
            "tls_server_config:
  cert_file: /abs/server.crt
  key_file: keys/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
  client_allowed_sans: [prometheus.example.com, 10.0.0.1]
  min_version: TLS12
  max_version: TLS13
  cipher_suites:
    - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    - TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
  curve_preferences: [X25519, CurveP256]
  prefer_server_cipher_suites: false
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
rate_limit:
  interval: 0s
",
        )
        .unwrap();
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(tls.client_ca, Some(PemSource::File("ca.pem".into())));
        assert_eq!(
            tls.client_allowed_sans,
            ["prometheus.example.com", "10.0.0.1"]
        );
        let suites: Vec<String> = tls.cipher_suites.iter().map(suite_name).collect();
        assert_eq!(
            suites,
            [
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
            ]
        );
        let curves: Vec<_> = tls.curve_preferences.iter().map(|g| g.name()).collect();
        assert_eq!(
            curves,
            [rustls::NamedGroup::X25519, rustls::NamedGroup::secp256r1]
        );
        assert!(!tls.prefer_server_cipher_suites);
        assert_eq!(
            config.headers,
            [
                (
                    "Strict-Transport-Security".to_string(),
                    "max-age=31536000".to_string()
                ),
                ("X-Frame-Options".to_string(), "deny".to_string())
            ]
        );
        assert!(config.users.is_none());
        assert_eq!(
            config.files(),
            [
                PathBuf::from(PATH),
                PathBuf::from("/abs/server.crt"),
                PathBuf::from("/etc/pushprox/keys/server.key"),
                PathBuf::from("/etc/pushprox/ca.pem")
            ]
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = parse(
            "tls_server_config:\n  cert: CERT-TEXT\n  key: KEY-TEXT\nbasic_auth_users:\n  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze\n",
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(debug.contains("key: Inline(<8 bytes>)"), "{debug}");
        assert!(
            !debug.contains("KEY-TEXT") && !debug.contains("mDwo"),
            "{debug}"
        );
    }

    #[test]
    fn empty_files_and_sections_mean_no_tls_and_no_users() {
        for text in [
            "",
            "# nothing\n",
            "tls_server_config:\nbasic_auth_users: {}\n",
        ] {
            let config = parse(text).unwrap();
            assert!(config.tls.is_none() && config.users.is_none(), "{text:?}");
            assert!(config.server_config().unwrap().is_none());
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        assert_eq!(
            error("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth: x\n"),
            "web config file /etc/pushprox/web.yml: unknown field `client_auth`, expected one of cert, key, client_ca, cert_file, key_file, client_auth_type, client_ca_file, client_allowed_sans, min_version, max_version, cipher_suites, curve_preferences, prefer_server_cipher_suites at line 4, column 3"
        );
        assert_eq!(
            error("tls_config:\n  cert_file: a\n"),
            "web config file /etc/pushprox/web.yml: unknown field `tls_config`, expected one of tls_server_config, http_server_config, basic_auth_users, rate_limit at line 1, column 1"
        );
        assert_eq!(
            error("http_server_config:\n  header: {}\n"),
            "web config file /etc/pushprox/web.yml: unknown field `header`, expected one of http2, headers at line 2, column 3"
        );
        assert_eq!(
            error("basic_auth_users:\n  a: x\n  a: y\n"),
            "web config file /etc/pushprox/web.yml: duplicate mapping key: a at line 3, column 3"
        );
        assert_eq!(
            error("tls_server_config:\n  cert_file: [1]\n"),
            "web config file /etc/pushprox/web.yml: expected string scalar at line 2, column 14"
        );
    }

    const TLS: &str = "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n";

    #[test]
    fn versions() {
        let with = |extra: &str| error(&format!("{TLS}{extra}"));
        assert_eq!(
            with("  min_version: TLS11\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.min_version: TLS11 is not supported: rustls implements TLS 1.2 and 1.3 only (TLS12, TLS13)"
        );
        assert_eq!(
            with("  max_version: TLS10\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.max_version: TLS10 is not supported: rustls implements TLS 1.2 and 1.3 only (TLS12, TLS13)"
        );
        assert_eq!(
            with("  min_version: TLS1.2\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.min_version: unknown TLS version \"TLS1.2\": expected TLS12 or TLS13"
        );
        assert_eq!(
            with("  min_version: TLS13\n  max_version: TLS12\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.min_version: TLS13 is above max_version TLS12"
        );
        let only13 = parse(&format!("{TLS}  min_version: TLS13\n")).unwrap();
        assert_eq!(only13.tls.unwrap().min_version, TlsVersion::Tls13);
    }

    #[test]
    fn client_auth_rules() {
        let with = |extra: &str| error(&format!("{TLS}{extra}"));
        for mode in ["VerifyClientCertIfGiven", "RequireAndVerifyClientCert"] {
            assert_eq!(
                with(&format!("  client_auth_type: {mode}\n")),
                format!("web config file /etc/pushprox/web.yml: tls_server_config.client_ca_file: missing: client_auth_type {mode} verifies client certificates against it")
            );
        }
        assert_eq!(
            with("  client_auth_type: RequireClientCertificate\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.client_auth_type: unknown value \"RequireClientCertificate\": expected NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        );
        assert_eq!(
            with("  client_ca_file: ca.pem\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.client_auth_type: a client CA is configured but no client certificate is asked for: set client_auth_type (RequireAndVerifyClientCert to authenticate clients)"
        );
        assert_eq!(
            with("  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n  client_allowed_sans: [a]\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.client_allowed_sans: requires client_auth_type RequireAndVerifyClientCert (or RequireAnyClientCert): with other types a client may send no certificate, leaving nothing to match"
        );
        assert_eq!(
            with("  client_ca_file: ca.pem\n  client_ca: \"-----BEGIN CERTIFICATE-----\"\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.client_ca: give either client_ca (inline PEM) or client_ca_file, not both"
        );
        // The old name exporter-toolkit still accepts.
        let old = parse(&format!("{TLS}  client_auth_type: RequireClientCert\n")).unwrap();
        assert_eq!(
            old.tls.unwrap().client_auth,
            ClientAuth::RequireAnyClientCert
        );
    }

    #[test]
    fn incomplete_tls_sections() {
        assert_eq!(
            error("tls_server_config:\n  cert_file: c.pem\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.key_file: missing: TLS needs cert_file (or inline cert) and key_file (or inline key)"
        );
        assert_eq!(
            error("tls_server_config:\n  key: secret\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.cert_file: missing: TLS needs cert_file (or inline cert) and key_file (or inline key)"
        );
        assert_eq!(
            error("tls_server_config:\n  min_version: TLS13\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.min_version: set without cert_file and key_file, so TLS would be off and this option ignored: add the certificate and key, or remove the option"
        );
        assert_eq!(
            error(&format!("{TLS}  cert: inline\n")),
            "web config file /etc/pushprox/web.yml: tls_server_config.cert: give either cert (inline PEM) or cert_file, not both"
        );
    }

    #[test]
    fn suites_and_curves_rustls_lacks() {
        let with = |extra: &str| error(&format!("{TLS}{extra}"));
        let available = "TLS13_AES_256_GCM_SHA384, TLS13_AES_128_GCM_SHA256, TLS13_CHACHA20_POLY1305_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256";
        assert_eq!(
            with("  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n"),
            format!("web config file /etc/pushprox/web.yml: tls_server_config.cipher_suites: TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is a Go cipher suite rustls does not implement (no CBC, RC4, 3DES or RSA key exchange); the suites available are: {available}")
        );
        assert_eq!(
            with("  cipher_suites: [TLS_FOO]\n"),
            format!("web config file /etc/pushprox/web.yml: tls_server_config.cipher_suites: unknown cipher suite \"TLS_FOO\"; the suites available are: {available}")
        );
        assert_eq!(
            with("  min_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.cipher_suites: none of the listed suites is usable between min_version and max_version"
        );
        assert_eq!(
            with("  curve_preferences: [CurveP521]\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.curve_preferences: CurveP521 is not implemented by rustls' crypto provider (ring); use X25519, CurveP256 or CurveP384"
        );
        assert_eq!(
            with("  curve_preferences: [P256]\n"),
            "web config file /etc/pushprox/web.yml: tls_server_config.curve_preferences: unknown curve \"P256\": expected X25519, CurveP256 or CurveP384"
        );
    }

    #[test]
    fn http_options_and_users() {
        assert_eq!(
            error("http_server_config:\n  http2: true\n"),
            "web config file /etc/pushprox/web.yml: http_server_config.http2: pushprox-proxy speaks HTTP/1.1 only (what Prometheus and the clients use); remove the line or set it to false"
        );
        assert_eq!(
            error("http_server_config:\n  headers:\n    Server: x\n"),
            "web config file /etc/pushprox/web.yml: http_server_config.headers.Server: this header cannot be configured; the ones that can: Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy"
        );
        assert_eq!(
            error("http_server_config:\n  headers:\n    X-Frame-Options: allow\n"),
            "web config file /etc/pushprox/web.yml: http_server_config.headers.X-Frame-Options: \"allow\" is not one of: deny, sameorigin"
        );
        assert_eq!(
            error("http_server_config:\n  headers:\n    Content-Security-Policy: \"a\\r\\nSet-Cookie: x\"\n"),
            "web config file /etc/pushprox/web.yml: http_server_config.headers.Content-Security-Policy: the value contains a control character (a line break?)"
        );
        for off in [
            "rate_limit:\n  interval: 0\n",
            "rate_limit:\n  interval: 0s\n  burst: 0\n",
        ] {
            assert!(parse(off).is_ok(), "{off}");
        }
        assert_eq!(
            error("rate_limit:\n  interval: 1s\n  burst: 20\n"),
            "web config file /etc/pushprox/web.yml: rate_limit: not supported by pushprox-proxy (a scrape is never refused for arriving too often); remove it"
        );
        assert_eq!(
            error("basic_auth_users:\n  prom: secret\n"),
            "web config file /etc/pushprox/web.yml: basic_auth_users.prom: not a bcrypt hash (it must start with $2y$, $2b$ or $2a$); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
        );
    }

    /// A directory with a CA, a server certificate for localhost, and client certificates.
    struct Pki {
        dir: Dir,
        ca: (PathBuf, PathBuf),
    }

    impl Pki {
        fn new(name: &str) -> Pki {
            let dir = Dir::new(name);
            let ca = dir.ca("ca");
            let key = dir.key("server.key", KeyKind::P256Pkcs8);
            dir.leaf("server.crt", &key, &ca, "proxy", &["DNS:localhost"]);
            Pki { dir, ca }
        }

        /// A client configuration presenting a certificate for `sans` from `ca`.
        fn client(
            &self,
            name: &str,
            ca: &(PathBuf, PathBuf),
            sans: &[&str],
        ) -> rustls::ClientConfig {
            let key = self.dir.key(&format!("{name}.key"), KeyKind::Ed25519);
            let cert = self.dir.leaf(&format!("{name}.pem"), &key, ca, name, sans);
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(&key).unwrap();
            let plain = client_trusting(&self.ca.0);
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                pushprox_daemon::tls::provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(root_store(&self.ca.0))
            .with_client_auth_cert(chain, key)
            .unwrap();
            config.alpn_protocols = plain.alpn_protocols;
            config
        }

        fn server(&self, tls_lines: &str) -> Arc<TlsSetup> {
            let path = self.dir.write(
                "web.yml",
                &format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{tls_lines}"),
            );
            let config = WebConfig::load(&path).unwrap();
            config.server_config().unwrap().unwrap()
        }
    }

    fn root_store(ca: &Path) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    }

    #[test]
    fn client_auth_types_in_handshakes() {
        let pki = Pki::new("clientauth");
        let other_ca = pki.dir.ca("other-ca");
        let good = pki.client("good", &pki.ca.clone(), &["DNS:prometheus.example.com"]);
        let stranger = pki.client("stranger", &other_ca, &["DNS:prometheus.example.com"]);
        let anonymous = client_trusting(&pki.ca.0);
        let ok = |server: &Arc<TlsSetup>, client: &rustls::ClientConfig| {
            handshake(server.clone(), client.clone(), "localhost")
                .map(|(_, s)| s.peer_certificates().map(|c| c.len()).unwrap_or(0))
        };

        let none = pki.server("");
        assert_eq!(ok(&none, &anonymous).unwrap(), 0);
        // A client certificate is not asked for, so not sent.
        assert_eq!(ok(&none, &good).unwrap(), 0);

        let request = pki.server("  client_auth_type: RequestClientCert\n");
        assert_eq!(ok(&request, &anonymous).unwrap(), 0);
        assert_eq!(ok(&request, &stranger).unwrap(), 1, "not verified");

        let require_any = pki.server("  client_auth_type: RequireAnyClientCert\n");
        assert!(ok(&require_any, &anonymous).is_err());
        assert_eq!(ok(&require_any, &stranger).unwrap(), 1, "not verified");

        let ca_lines = "  client_ca_file: ca.pem\n";
        let if_given = pki.server(&format!(
            "  client_auth_type: VerifyClientCertIfGiven\n{ca_lines}"
        ));
        assert_eq!(ok(&if_given, &anonymous).unwrap(), 0);
        assert_eq!(ok(&if_given, &good).unwrap(), 1);
        assert!(ok(&if_given, &stranger).is_err());

        let verify = pki.server(&format!(
            "  client_auth_type: RequireAndVerifyClientCert\n{ca_lines}"
        ));
        assert_eq!(ok(&verify, &good).unwrap(), 1);
        assert!(ok(&verify, &anonymous).is_err());
        let err = ok(&verify, &stranger).unwrap_err();
        assert_eq!(err.to_string(), "invalid peer certificate: UnknownIssuer");

        let sans = pki.server(&format!(
            "  client_auth_type: RequireAndVerifyClientCert\n{ca_lines}  client_allowed_sans: [prometheus.example.com]\n"
        ));
        assert_eq!(ok(&sans, &good).unwrap(), 1);
        let other_name = pki.client(
            "other",
            &pki.ca.clone(),
            &["DNS:other.example.com", "IP:10.0.0.9"],
        );
        let err = ok(&sans, &other_name).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid peer certificate: Other(OtherError(the client certificate's SANs (other.example.com, 10.0.0.9) include none of tls_server_config.client_allowed_sans))"
        );
    }

    #[test]
    fn versions_suites_and_inline_pem_in_handshakes() {
        let pki = Pki::new("versions");
        let client = client_trusting(&pki.ca.0);
        let only13 = pki.server("  min_version: TLS13\n");
        let (_, server) = handshake(only13, client.clone(), "localhost").unwrap();
        assert_eq!(
            server.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        let only12 = pki.server(
            "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]\n",
        );
        let (_, server) = handshake(only12, client.clone(), "localhost").unwrap();
        assert_eq!(
            server.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        assert_eq!(
            server.negotiated_cipher_suite().map(|s| s.suite()),
            Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
        );

        // Inline certificate and key, indented as YAML block scalars.
        let indent = |file: &str| {
            std::fs::read_to_string(pki.dir.path(file))
                .unwrap()
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        };
        let path = pki.dir.write(
            "inline.yml",
            &format!(
                "tls_server_config:\n  cert: |\n{}  key: |\n{}",
                indent("server.crt"),
                indent("server.key")
            ),
        );
        let config = WebConfig::load(&path).unwrap();
        let server = config.server_config().unwrap().unwrap();
        handshake(server, client, "localhost").unwrap();
    }

    #[test]
    fn tls_file_errors_name_the_key_and_file() {
        let pki = Pki::new("tlsfiles");
        let d = pki.dir.0.display();
        let path = pki.dir.write(
            "web.yml",
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
        );
        let err = WebConfig::load(&path).unwrap().server_config().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("web config file {d}/web.yml: cannot read tls_server_config.cert_file {d}/missing.crt: No such file or directory (os error 2)")
        );
        pki.dir.key("other.key", KeyKind::P256Sec1);
        let path = pki.dir.write(
            "web.yml",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
        );
        let err = WebConfig::load(&path).unwrap().server_config().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("web config file {d}/web.yml: the private key of tls_server_config.key_file {d}/other.key does not belong to the first certificate of tls_server_config.cert_file {d}/server.crt: the first certificate must be the one issued for that key (compare `openssl x509 -noout -pubkey -in CERT` with `openssl pkey -pubout -in KEY`)")
        );
        let path = pki.dir.write(
            "web.yml",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca: |\n    not a certificate\n",
        );
        let err = WebConfig::load(&path).unwrap().server_config().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("web config file {d}/web.yml: tls_server_config.client_ca in {d}/web.yml: cannot use it to verify client certificates (no PEM \"-----BEGIN CERTIFICATE-----\" block: expected the certificates of the CAs that issue client certificates)")
        );
        let err = WebConfig::load(&pki.dir.path("nope.yml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot read --web.config.file {d}/nope.yml: No such file or directory (os error 2)")
        );
    }
}
