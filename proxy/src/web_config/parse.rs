//! Reading a web config file: the YAML as written (every struct refuses unknown keys), then
//! each value checked, with messages naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustls::crypto::SupportedKxGroup;
use rustls::SupportedCipherSuite;
use serde::Deserialize;

use super::{ClientAuth, PemSource, TlsServerConfig, TlsVersion, WebConfig, WebConfigError};
use crate::auth::Users;

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

        let users = raw
            .basic_auth_users
            .filter(|map| !map.is_empty())
            .map(Users::from_bcrypt_map)
            .transpose()
            .map_err(|e| invalid(&format!("basic_auth_users.{}", e.user), e.reason))?;

        let tls = raw.tls_server_config.map(|t| parse_tls(t, path, &invalid));
        let tls = tls.transpose()?.flatten();

        Ok(WebConfig {
            path: path.to_path_buf(),
            tls,
            headers,
            users,
        })
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

// The helpers below say why a value cannot be used; `parse_tls` names the key.

fn pem_source(
    file: Option<String>,
    inline: Option<String>,
    file_key: &str,
    inline_key: &str,
) -> Result<Option<PemSource>, String> {
    let file = file.filter(|f| !f.is_empty());
    let inline = inline.filter(|t| !t.is_empty());
    match (file, inline) {
        (Some(_), Some(_)) => Err(format!(
            "give either {inline_key} (inline PEM) or {file_key}, not both"
        )),
        (Some(f), None) => Ok(Some(PemSource::File(PathBuf::from(f)))),
        (None, Some(t)) => Ok(Some(PemSource::Inline(t))),
        (None, None) => Ok(None),
    }
}

fn parse_version(value: Option<&str>, default: TlsVersion) -> Result<TlsVersion, String> {
    match value {
        None => Ok(default),
        Some("TLS12") => Ok(TlsVersion::Tls12),
        Some("TLS13") => Ok(TlsVersion::Tls13),
        Some(old @ ("TLS10" | "TLS11")) => Err(format!(
            "{old} is not supported: rustls implements TLS 1.2 and 1.3 only (TLS12, TLS13)"
        )),
        Some(other) => Err(format!(
            "unknown TLS version \"{other}\": expected TLS12 or TLS13"
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
pub(super) fn suite_name(suite: &SupportedCipherSuite) -> String {
    format!("{:?}", suite.suite())
}

fn parse_suites(names: &[String]) -> Result<Vec<SupportedCipherSuite>, String> {
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
        match available.iter().find(|s| suite_name(s) == *name) {
            Some(s) if !suites.contains(s) => suites.push(*s),
            Some(_) => return Err(format!("{name} is listed twice")),
            None if GO_SUITES_RUSTLS_LACKS.contains(&name.as_str()) => {
                return Err(format!("{name} is a Go cipher suite rustls does not implement (no CBC, RC4, 3DES or RSA key exchange); the suites available are: {}", list()))
            }
            None => {
                return Err(format!("unknown cipher suite \"{name}\"; the suites available are: {}", list()))
            }
        }
    }
    Ok(suites)
}

fn parse_curves(names: &[String]) -> Result<Vec<&'static dyn SupportedKxGroup>, String> {
    use rustls::crypto::ring::kx_group;
    let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in names {
        let group = match name.as_str() {
            "CurveP256" => kx_group::SECP256R1,
            "CurveP384" => kx_group::SECP384R1,
            "X25519" => kx_group::X25519,
            "CurveP521" => {
                return Err("CurveP521 is not implemented by rustls' crypto provider (ring); use X25519, CurveP256 or CurveP384".into())
            }
            other => {
                return Err(format!(
                    "unknown curve \"{other}\": expected X25519, CurveP256 or CurveP384"
                ))
            }
        };
        if groups.iter().any(|g| g.name() == group.name()) {
            return Err(format!("{name} is listed twice"));
        }
        groups.push(group);
    }
    Ok(groups)
}

fn parse_tls(
    t: RawTls,
    path: &Path,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Option<TlsServerConfig>, WebConfigError> {
    // A value of `tls_server_config` that cannot be used, and why.
    let invalid = |key: &str, reason: String| invalid(&format!("tls_server_config.{key}"), reason);
    let pem = |file, inline, file_key, inline_key| {
        pem_source(file, inline, file_key, inline_key).map_err(|r| invalid(inline_key, r))
    };
    let cert = pem(t.cert_file, t.cert, "cert_file", "cert")?;
    let key = pem(t.key_file, t.key, "key_file", "key")?;
    let client_ca = pem(t.client_ca_file, t.client_ca, "client_ca_file", "client_ca")?;
    let auth_name = t.client_auth_type.unwrap_or_default();
    let client_auth = ClientAuth::parse(&auth_name).ok_or_else(|| {
        invalid(
            "client_auth_type",
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
                name,
                "set without cert_file and key_file, so TLS would be off and this option ignored: add the certificate and key, or remove the option".into(),
            ));
        }
        return Ok(None);
    }
    let missing = |key: &str| {
        let both = "missing: TLS needs cert_file (or inline cert) and key_file (or inline key)";
        invalid(key, both.into())
    };
    let cert = cert.ok_or_else(|| missing("cert_file"))?;
    let key = key.ok_or_else(|| missing("key_file"))?;
    if client_auth.verifies() && client_ca.is_none() {
        return Err(invalid(
            "client_ca_file",
            format!(
                "missing: client_auth_type {auth_name} verifies client certificates against it"
            ),
        ));
    }
    if client_auth == ClientAuth::NoClientCert && client_ca.is_some() {
        return Err(invalid(
            "client_auth_type",
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
            "client_allowed_sans",
            "requires client_auth_type RequireAndVerifyClientCert (or RequireAnyClientCert): with other types a client may send no certificate, leaving nothing to match".into(),
        ));
    }
    let min_version = parse_version(t.min_version.as_deref(), TlsVersion::Tls12)
        .map_err(|r| invalid("min_version", r))?;
    let max_version = parse_version(t.max_version.as_deref(), TlsVersion::Tls13)
        .map_err(|r| invalid("max_version", r))?;
    if min_version > max_version {
        return Err(invalid(
            "min_version",
            "TLS13 is above max_version TLS12".into(),
        ));
    }
    let cipher_suites = parse_suites(&t.cipher_suites.unwrap_or_default())
        .map_err(|r| invalid("cipher_suites", r))?;
    if !cipher_suites.is_empty() {
        let usable = cipher_suites.iter().any(|s| match s.version() {
            v if v == &rustls::version::TLS13 => max_version == TlsVersion::Tls13,
            _ => min_version == TlsVersion::Tls12,
        });
        if !usable {
            return Err(invalid(
                "cipher_suites",
                "none of the listed suites is usable between min_version and max_version".into(),
            ));
        }
    }
    let curve_preferences = parse_curves(&t.curve_preferences.unwrap_or_default())
        .map_err(|r| invalid("curve_preferences", r))?;
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
