//! TLS settings of the agents: the CA certificates to trust (`--tls.cacert`, else the system's
//! CA bundle) and the `--tls.cert`/`--tls.key` client certificate, for the proxy connection and
//! for https scrapes alike.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use crate::config::Config;
use crate::error::StartupError;

/// The CA bundles of Linux distributions, in the order Go's crypto/x509 tries them.
const SYSTEM_CA_FILES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Gentoo, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL 6
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/pki/tls/cacert.pem",            // OpenELEC
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
    "/etc/ssl/cert.pem",                  // Alpine
];

/// Directories of single certificates, read when none of [`SYSTEM_CA_FILES`] exists.
const SYSTEM_CA_DIRS: [&str; 2] = ["/etc/ssl/certs", "/etc/pki/tls/certs"];

/// What the client trusts, in words, once [`tls_config`] has run; for [`hint`].
static TRUSTED: OnceLock<Trusted> = OnceLock::new();

/// Where the trusted CA certificates came from.
#[derive(Debug)]
enum Trusted {
    /// `--tls.cacert FILE`.
    Flag(String),
    /// The system's bundle or directories, by path.
    System(String),
    /// No CA certificate anywhere: what was looked at, for the message that asks for one.
    Nothing(String),
}

/// The TLS configuration from the flags. Without --tls.cacert the client trusts the system's
/// CA certificates, as the Go client does; ureq's compiled-in Mozilla roots are left out of
/// the binary. An https proxy URL with no CA certificate found stops the start.
pub fn tls_config(config: &Config) -> Result<TlsConfig, StartupError> {
    tls_config_with(
        config,
        std::env::var_os("SSL_CERT_FILE").map(PathBuf::from),
        std::env::var_os("SSL_CERT_DIR"),
    )
}

/// [`tls_config`] with the values of `SSL_CERT_FILE` and `SSL_CERT_DIR`.
fn tls_config_with(
    config: &Config,
    env_file: Option<PathBuf>,
    env_dirs: Option<std::ffi::OsString>,
) -> Result<TlsConfig, StartupError> {
    let mut builder = TlsConfig::builder()
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()));
    let roots = match &config.tls_cacert {
        Some(path) => {
            let _ = TRUSTED.set(Trusted::Flag(format!("--tls.cacert {}", path.display())));
            certificates("--tls.cacert", path)?
        }
        None => match system_roots(env_file, env_dirs) {
            Ok((source, roots)) => {
                log::debug!(
                    "trusting {} CA certificates of {source} (--tls.cacert would replace them)",
                    roots.len()
                );
                let _ = TRUSTED.set(Trusted::System(source));
                roots
            }
            Err(looked) => {
                if let Some(url) = config.proxy_urls.iter().find(|u| u.starts_with("https:")) {
                    return Err(StartupError::NoCaCertificates {
                        url: url.clone(),
                        looked,
                    });
                }
                log::warn!(
                    "no CA certificates found ({looked}): https scrapes will fail; give --tls.cacert FILE or set SSL_CERT_FILE"
                );
                let _ = TRUSTED.set(Trusted::Nothing(looked));
                Vec::new()
            }
        },
    };
    builder = builder.root_certs(RootCerts::new_with_certs(&roots));
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        let chain = certificates("--tls.cert", cert)?;
        let key = private_key("--tls.key", key)?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(builder.build())
}

/// Whether the TLS configuration is needed at start: an https proxy, or TLS flags to check.
/// Otherwise it is built at the first https scrape ([`system_tls_config`]): the system's CA
/// certificates take about 1 MiB of memory that an http-only client never needs.
pub fn needed_at_start(config: &Config) -> bool {
    config.tls_cacert.is_some()
        || config.tls_cert.is_some()
        || config.proxy_urls.iter().any(|u| u.starts_with("https:"))
}

/// The TLS configuration of a client started without TLS flags and with http proxies only,
/// built at its first https scrape: the system's CA certificates, or none (with a warning,
/// so the scrape fails naming --tls.cacert).
pub fn system_tls_config() -> TlsConfig {
    let roots = match system_roots(
        std::env::var_os("SSL_CERT_FILE").map(PathBuf::from),
        std::env::var_os("SSL_CERT_DIR"),
    ) {
        Ok((source, roots)) => {
            log::debug!(
                "trusting {} CA certificates of {source} for https scrapes",
                roots.len()
            );
            let _ = TRUSTED.set(Trusted::System(source));
            roots
        }
        Err(looked) => {
            log::warn!(
                "no CA certificates found ({looked}): https scrapes will fail; give --tls.cacert FILE or set SSL_CERT_FILE"
            );
            let _ = TRUSTED.set(Trusted::Nothing(looked));
            Vec::new()
        }
    };
    TlsConfig::builder()
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(RootCerts::new_with_certs(&roots))
        .build()
}

/// Name of the thread that performs [`check_client_cert`]; a panic there is about the files.
pub const CHECK_THREAD: &str = "tls-check";

/// `--tls.cert FILE with --tls.key FILE`, for the panic hook's message.
pub static CHECKED_FILES: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// ureq builds its rustls configuration at the first TLS connection and panics, instead of
/// returning an error, when the client certificate does not fit its key (a v1 certificate, a
/// key of another certificate, an unsupported key type). Build it now, with a connection to a
/// socket of our own, so that a bad pair stops the start with a message instead of killing a
/// poll later. The panic hook turns the panic into that message and exit 1.
pub fn check_client_cert(config: &Config, tls: &TlsConfig) -> Result<(), StartupError> {
    if tls.client_cert().is_none() {
        return Ok(());
    }
    let _ = CHECKED_FILES.set(format!(
        "--tls.cert {} with --tls.key {}",
        config
            .tls_cert
            .as_deref()
            .unwrap_or(Path::new(""))
            .display(),
        config.tls_key.as_deref().unwrap_or(Path::new("")).display()
    ));
    let failed = |reason: String| StartupError::TlsFile {
        flag: "--tls.cert",
        path: config.tls_cert.clone().unwrap_or_default(),
        reason,
    };
    let listener = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| failed(format!("cannot check it against a local socket: {e}")))?;
    let url = match listener.local_addr() {
        Ok(addr) => format!("https://{addr}/"),
        Err(e) => {
            return Err(failed(format!(
                "cannot check it against a local socket: {e}"
            )))
        }
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls.clone())
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent();
    let probe = std::thread::Builder::new()
        .name(CHECK_THREAD.into())
        .stack_size(crate::run::THREAD_STACK)
        .spawn(move || {
            // The handshake fails (we hang up); only the configuration matters.
            let _ = agent.get(url).call();
        })
        .map_err(|e| failed(format!("cannot start the check: {e}")))?;
    // Accept the probe's connection and hang up at once, so its handshake ends quickly.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && !probe.is_finished() {
        match listener.accept() {
            Ok((conn, _)) => drop(conn),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    probe
        .join()
        .map_err(|_| failed("the TLS library refused the certificate and key".into()))
}

/// The system's CA certificates, as Go's crypto/x509 finds them on Linux: the file
/// `SSL_CERT_FILE` or else the first of [`SYSTEM_CA_FILES`] that exists, plus every file in the
/// directories of `SSL_CERT_DIR` (colon-separated), or else of [`SYSTEM_CA_DIRS`] when no
/// bundle was found. Returns where they came from, or what was looked at when there were none.
fn system_roots(
    env_file: Option<PathBuf>,
    env_dirs: Option<std::ffi::OsString>,
) -> Result<(String, Vec<Certificate<'static>>), String> {
    let files: Vec<PathBuf> = match &env_file {
        Some(f) => vec![f.clone()],
        None => SYSTEM_CA_FILES.iter().map(PathBuf::from).collect(),
    };
    let mut roots = Vec::new();
    let mut sources = Vec::new();
    for file in &files {
        if let Ok(bytes) = std::fs::read(file) {
            roots.extend(pem_certificates(&bytes));
            sources.push(file.display().to_string());
            break;
        }
    }
    let dirs: Vec<PathBuf> = match &env_dirs {
        Some(d) => std::env::split_paths(d).collect(),
        None if roots.is_empty() => SYSTEM_CA_DIRS.iter().map(PathBuf::from).collect(),
        None => Vec::new(),
    };
    for dir in &dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let before = roots.len();
        for entry in entries.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                roots.extend(pem_certificates(&bytes));
            }
        }
        if roots.len() > before {
            sources.push(dir.display().to_string());
        }
    }
    if !roots.is_empty() {
        return Ok((sources.join(" and "), roots));
    }
    let files = match &env_file {
        Some(f) => format!("SSL_CERT_FILE={}", f.display()),
        None => format!(
            "SSL_CERT_FILE is not set, none in {}",
            SYSTEM_CA_FILES.join(", ")
        ),
    };
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(format!(
        "{files}; none in the directories {}",
        dirs.join(", ")
    ))
}

/// The certificates of a PEM bundle; other items and broken ones are skipped, as Go does.
fn pem_certificates(bytes: &[u8]) -> impl Iterator<Item = Certificate<'static>> + '_ {
    ureq::tls::parse_pem(bytes).filter_map(|item| match item {
        Ok(PemItem::Certificate(c)) => Some(c),
        _ => None,
    })
}

/// What to check for a TLS failure whose words (from rustls) an operator may not know; empty
/// for the others. `peer` is "proxy" or "target".
pub fn hint(error: &str, peer: &str) -> String {
    if error.contains("CaUsedAsEndEntity") {
        format!(
            "; the {peer}'s certificate is marked as a CA certificate, which rustls refuses for \
             a server: `openssl req -x509` makes such a certificate unless given \
             `-addext basicConstraints=critical,CA:FALSE`"
        )
    } else if error.contains("UnknownIssuer") {
        match TRUSTED.get() {
            Some(Trusted::Nothing(looked)) => format!(
                "; this client has no CA certificates to check the {peer}'s certificate with \
                 ({looked}): give --tls.cacert FILE or set SSL_CERT_FILE"
            ),
            Some(Trusted::Flag(flag)) => {
                format!("; the {peer}'s certificate is not signed by a CA in {flag}")
            }
            Some(Trusted::System(source)) => format!(
                "; the {peer}'s certificate is not signed by a CA of the system's ({source}); \
                 give the CA's PEM file with --tls.cacert or SSL_CERT_FILE"
            ),
            None => format!(
                "; the {peer}'s certificate is not signed by a CA in --tls.cacert or the system's \
                 CA bundle"
            ),
        }
    } else if error.contains("NotValidForName") {
        format!(
            "; the {peer}'s certificate does not name the host of its URL in its subjectAltName"
        )
    } else {
        String::new()
    }
}

fn pem_items(flag: &'static str, path: &Path) -> Result<Vec<PemItem<'static>>, StartupError> {
    let fail = |reason: String| StartupError::TlsFile {
        flag,
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    ureq::tls::parse_pem(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not valid PEM: {e}")))
}

fn certificates(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<Certificate<'static>>, StartupError> {
    let certs: Vec<_> = pem_items(flag, path)?
        .into_iter()
        .filter_map(|item| match item {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(StartupError::TlsFile {
            flag,
            path: path.to_path_buf(),
            reason: "no \"BEGIN CERTIFICATE\" block found".into(),
        });
    }
    Ok(certs)
}

fn private_key(flag: &'static str, path: &Path) -> Result<PrivateKey<'static>, StartupError> {
    pem_items(flag, path)?
        .into_iter()
        .find_map(|item| match item {
            PemItem::PrivateKey(k) => Some(k),
            _ => None,
        })
        .ok_or_else(|| StartupError::TlsFile {
            flag,
            path: path.to_path_buf(),
            reason: "no private key block (\"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\") found".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_cacert(path: &str) -> Config {
        Config {
            proxy_urls: vec!["http://proxy".into()],
            fqdn: "host".into(),
            tls_cacert: Some(path.into()),
            tls_cert: None,
            tls_key: None,
            metrics_addr: crate::config::ListenAddr {
                host: None,
                port: 9369,
                text: ":9369".into(),
            },
            retry_initial_wait: std::time::Duration::from_secs(1),
            retry_max_wait: std::time::Duration::from_secs(5),
            max_polls: 4,
            lock_file: None,
            token_file: None,
            scrape_allow: Vec::new(),
        }
    }

    #[test]
    fn hints_for_rustls_words() {
        assert!(hint(
            "io: invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
            "proxy"
        )
        .contains("CA:FALSE"));
        assert!(hint("invalid peer certificate: UnknownIssuer", "proxy").contains("--tls.cacert"));
        assert!(hint("invalid peer certificate: NotValidForName", "target")
            .contains("target's certificate does not name"));
        assert_eq!(hint("Connection refused", "proxy"), "");
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pushprox-client-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A self-signed certificate, PEM; its contents do not matter to the loader.
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn system_roots_follow_ssl_cert_file_and_dir() {
        let dir = temp_dir("roots");
        let bundle = dir.join("bundle.pem");
        std::fs::write(&bundle, format!("junk\n{CERT}{CERT}")).unwrap();
        let (source, roots) =
            system_roots(Some(bundle.clone()), Some("/nonexistent".into())).unwrap();
        assert_eq!(roots.len(), 2);
        assert_eq!(source, bundle.display().to_string());

        let certs = dir.join("certs");
        std::fs::create_dir(&certs).unwrap();
        std::fs::write(certs.join("a.pem"), CERT).unwrap();
        std::fs::write(certs.join("README"), "not a certificate").unwrap();
        let (source, roots) =
            system_roots(Some(dir.join("missing.pem")), Some(certs.clone().into())).unwrap();
        assert_eq!(roots.len(), 1);
        assert_eq!(source, certs.display().to_string());

        let err =
            system_roots(Some(dir.join("missing.pem")), Some(dir.join("none").into())).unwrap_err();
        assert!(
            err.contains("SSL_CERT_FILE=") && err.contains("missing.pem"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_https_proxy_without_any_ca_certificate_stops_the_start() {
        let mut config = config_with_cacert("unused");
        config.tls_cacert = None;
        let nowhere = || {
            (
                Some(PathBuf::from("/nonexistent/ca.pem")),
                Some("/nonexistent/certs".into()),
            )
        };
        let (file, dirs) = nowhere();
        assert!(tls_config_with(&config, file, dirs).is_ok(), "http only");
        config.proxy_urls.push("https://proxy:8080".into());
        let (file, dirs) = nowhere();
        let err = tls_config_with(&config, file, dirs)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("https://proxy:8080")
                && err.contains("--tls.cacert")
                && err.contains("SSL_CERT_FILE=/nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn unreadable_or_empty_files_name_the_flag_and_the_file() {
        let err = tls_config(&config_with_cacert("/nonexistent/ca.pem"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--tls.cacert") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );

        let path =
            std::env::temp_dir().join(format!("pushprox-client-empty-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = tls_config(&config_with_cacert(path.to_str().unwrap()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("BEGIN CERTIFICATE"), "{err}");
        let _ = std::fs::remove_file(&path);
    }
}
