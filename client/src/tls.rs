//! TLS settings of the agents: `--tls.cacert` roots and the `--tls.cert`/`--tls.key` client
//! certificate, for the proxy connection and for https scrapes alike.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use crate::config::Config;
use crate::error::StartupError;

/// The TLS configuration from the flags; without them, ureq's defaults (Mozilla roots, no
/// client certificate).
pub fn tls_config(config: &Config) -> Result<TlsConfig, StartupError> {
    let mut builder = TlsConfig::builder();
    if let Some(path) = &config.tls_cacert {
        let roots = certificates("--tls.cacert", path)?;
        builder = builder.root_certs(RootCerts::new_with_certs(&roots));
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        let chain = certificates("--tls.cert", cert)?;
        let key = private_key("--tls.key", key)?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(builder.build())
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

/// What to check for a TLS failure whose words (from rustls) an operator may not know; empty
/// for the others.
pub fn hint(error: &str) -> &'static str {
    if error.contains("CaUsedAsEndEntity") {
        "; the proxy's certificate is marked as a CA certificate, which rustls refuses for a \
         server: `openssl req -x509` makes such a certificate unless given \
         `-addext basicConstraints=critical,CA:FALSE`"
    } else if error.contains("UnknownIssuer") {
        "; the proxy's certificate is not signed by a CA in --tls.cacert (or the built-in roots)"
    } else if error.contains("NotValidForName") {
        "; the proxy's certificate does not name the host of --proxy-url in its subjectAltName"
    } else {
        ""
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
        assert!(
            hint("io: invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))")
                .contains("CA:FALSE")
        );
        assert!(hint("invalid peer certificate: UnknownIssuer").contains("--tls.cacert"));
        assert!(hint("invalid peer certificate: NotValidForName").contains("subjectAltName"));
        assert_eq!(hint("Connection refused"), "");
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
