//! TLS settings of the agents: `--tls.cacert` roots and the `--tls.cert`/`--tls.key` client
//! certificate, for the proxy connection and for https scrapes alike.

use std::path::Path;

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
            lock_file: None,
        }
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
