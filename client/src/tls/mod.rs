//! TLS settings of the agents. For the proxies: the CA certificates to trust (`--tls.cacert`,
//! else the system's CA bundle) and the `--tls.cert`/`--tls.key` client certificate. For https
//! scrapes the same, as in Go, unless `--scrape.tls.cacert` names other CAs or
//! `--scrape.tls.insecure-skip-verify` turns the check off.

mod ca;
mod hint;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use pushprox_daemon::tls::{certified_key, provider, Origin, Pem, PemError};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use crate::config::Config;
use crate::error::StartupError;
use ca::{system_roots, Trusted, TARGET_TRUSTED, TRUSTED};

pub use hint::hint;

/// The TLS configurations the flags ask for, built at start.
#[derive(Debug, Default)]
pub struct TlsConfigs {
    /// For the proxies: `None` when no proxy URL is https and no TLS flag is given.
    pub proxy: Option<TlsConfig>,
    /// For https targets: `None` when it is built at the first https scrape
    /// ([`target_default`]).
    pub target: Option<TlsConfig>,
}

/// The TLS configurations from the flags. Without --tls.cacert the client trusts the system's
/// CA certificates, as the Go client does; ureq's compiled-in Mozilla roots are left out of
/// the binary. An https proxy URL with no CA certificate found stops the start.
pub fn tls_configs(config: &Config) -> Result<TlsConfigs, StartupError> {
    tls_configs_with(
        config,
        std::env::var_os("SSL_CERT_FILE").map(PathBuf::from),
        std::env::var_os("SSL_CERT_DIR"),
    )
}

/// [`tls_configs`] with the values of `SSL_CERT_FILE` and `SSL_CERT_DIR`.
fn tls_configs_with(
    config: &Config,
    env_file: Option<PathBuf>,
    env_dirs: Option<std::ffi::OsString>,
) -> Result<TlsConfigs, StartupError> {
    let flags = &config.flags;
    let client_cert = match (&flags.tls_cert, &flags.tls_key) {
        (Some(cert), Some(key)) => {
            let cert = read_pem("--tls.cert", cert)?;
            let key = read_pem("--tls.key", key)?;
            // ureq builds its rustls configuration at the first TLS connection and panics,
            // instead of returning an error, when the certificate does not fit its key (a v1
            // certificate, a key of another certificate, an unsupported key type): checked
            // here the way the proxy checks its own pair, so a bad pair stops the start.
            certified_key(&cert, &key, &provider()).map_err(StartupError::Tls)?;
            let chain = der_certificates(&cert)?;
            let private = PrivateKey::from_pem(&key.text).map_err(|e| {
                StartupError::Tls(PemError::Pem {
                    origin: key.origin.clone(),
                    reason: e.to_string(),
                })
            })?;
            Some(ClientCert::new_with_certs(&chain, private))
        }
        _ => None,
    };
    let proxy = if needed_at_start(config) {
        let roots = match &flags.tls_cacert {
            Some(path) => ca_file("--tls.cacert", path, &TRUSTED)?,
            None => match system_roots_recorded(env_file, env_dirs) {
                Ok(roots) => roots,
                Err(looked) => {
                    let https = flags.proxy_urls.iter().find(|u| u.starts_with("https:"));
                    if let Some(url) = https {
                        let url = url.clone();
                        return Err(StartupError::NoCaCertificates { url, looked });
                    }
                    warn_no_roots(&looked);
                    Vec::new()
                }
            },
        };
        Some(trusting(&roots, client_cert.clone()))
    } else {
        None
    };
    let target = if flags.scrape_insecure {
        log::warn!(
            "--scrape.tls.insecure-skip-verify: the certificates of https scrapes (_scheme=https) are not checked; anyone between this client and a target can read and change its metrics (the proxy's certificate is still checked)"
        );
        Some(
            builder()
                .disable_verification(true)
                .client_cert(client_cert)
                .build(),
        )
    } else if let Some(path) = &flags.scrape_tls_cacert {
        let roots = ca_file("--scrape.tls.cacert", path, &TARGET_TRUSTED)?;
        Some(trusting(&roots, client_cert))
    } else {
        proxy.clone()
    };
    Ok(TlsConfigs { proxy, target })
}

/// A builder with our crypto provider (the proxy's: ring).
fn builder() -> ureq::tls::TlsConfigBuilder {
    TlsConfig::builder().unversioned_rustls_crypto_provider(Arc::new(provider()))
}

/// Trusts `roots`, and presents `client_cert` when the server asks for one.
fn trusting(roots: &[Certificate<'static>], client_cert: Option<ClientCert>) -> TlsConfig {
    builder()
        .root_certs(RootCerts::new_with_certs(roots))
        .client_cert(client_cert)
        .build()
}

/// The system's CA certificates, with where they came from recorded for the hints; or what
/// was looked at (recorded too) when there are none.
fn system_roots_recorded(
    env_file: Option<PathBuf>,
    env_dirs: Option<std::ffi::OsString>,
) -> Result<Vec<Certificate<'static>>, String> {
    match system_roots(env_file, env_dirs) {
        Ok((source, roots)) => {
            log::debug!(
                "trusting {} CA certificates of {source} (--tls.cacert would replace them)",
                roots.len()
            );
            let _ = TRUSTED.set(Trusted::System(source));
            Ok(roots)
        }
        Err(looked) => {
            let _ = TRUSTED.set(Trusted::Nothing(looked.clone()));
            Err(looked)
        }
    }
}

fn warn_no_roots(looked: &str) {
    log::warn!(
        "no CA certificates found ({looked}): https scrapes will fail; give --tls.cacert FILE or set SSL_CERT_FILE"
    );
}

/// Whether the proxies' TLS configuration is needed at start: an https proxy, or TLS flags to
/// check. Otherwise https scrapes build theirs at the first one ([`target_default`]): the
/// system's CA certificates take about 1 MiB of memory that an http-only client never needs.
pub fn needed_at_start(config: &Config) -> bool {
    let flags = &config.flags;
    flags.tls_cacert.is_some()
        || flags.tls_cert.is_some()
        || flags.proxy_urls.iter().any(|u| u.starts_with("https:"))
}

/// The TLS configuration for https scrapes of a client started without TLS flags and with
/// http proxies only, built at its first https scrape: the system's CA certificates, or none
/// (with a warning, so the scrape fails naming --tls.cacert).
pub fn target_default() -> TlsConfig {
    let roots = system_roots_recorded(
        std::env::var_os("SSL_CERT_FILE").map(PathBuf::from),
        std::env::var_os("SSL_CERT_DIR"),
    )
    .unwrap_or_else(|looked| {
        warn_no_roots(&looked);
        Vec::new()
    });
    trusting(&roots, None)
}

/// Reads a PEM file named by `flag` (at most 1 MiB), as the proxy reads its own.
fn read_pem(flag: &'static str, path: &Path) -> Result<Pem, StartupError> {
    Pem::read(path, Origin::flag(flag, path)).map_err(StartupError::Tls)
}

/// The certificates of `pem`, in order, as ureq takes them; at least one.
fn der_certificates(pem: &Pem) -> Result<Vec<Certificate<'static>>, StartupError> {
    let certs = pem.certificates().map_err(StartupError::Tls)?;
    Ok(certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect())
}

/// The CA certificates of the PEM file named by `flag`, recorded in `trusted` for the hints.
fn ca_file(
    flag: &'static str,
    path: &Path,
    trusted: &OnceLock<Trusted>,
) -> Result<Vec<Certificate<'static>>, StartupError> {
    let _ = trusted.set(Trusted::Flag(format!("{flag} {}", path.display())));
    der_certificates(&read_pem(flag, path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_cacert(path: &str) -> Config {
        use clap::Parser;
        let cacert = format!("--tls.cacert={path}");
        crate::config::Flags::try_parse_from([
            "pushprox-client",
            "--proxy-url=http://proxy",
            "--fqdn=host",
            &cacert,
        ])
        .unwrap()
        .into_config()
    }

    #[test]
    fn an_https_proxy_without_any_ca_certificate_stops_the_start() {
        let mut config = config_with_cacert("unused");
        config.flags.tls_cacert = None;
        let nowhere = || {
            (
                Some(PathBuf::from("/nonexistent/ca.pem")),
                Some("/nonexistent/certs".into()),
            )
        };
        let (file, dirs) = nowhere();
        assert!(tls_configs_with(&config, file, dirs).is_ok(), "http only");
        config.flags.proxy_urls.push("https://proxy:8080".into());
        let (file, dirs) = nowhere();
        let err = tls_configs_with(&config, file, dirs)
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
        let err = tls_configs(&config_with_cacert("/nonexistent/ca.pem"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--tls.cacert") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );

        let dir = pushprox_test_support::TempDir::new("client-empty-ca");
        let path = dir.write("empty.pem", "not a certificate\n");
        let err = tls_configs(&config_with_cacert(path.to_str().unwrap()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("BEGIN CERTIFICATE"), "{err}");
        assert!(err.contains(path.to_str().unwrap()), "{err}");
    }

    #[test]
    fn scrape_tls_flags_make_the_target_configuration_only() {
        let mut config = config_with_cacert("unused");
        config.flags.tls_cacert = None;
        config.flags.scrape_insecure = true;
        let tls = tls_configs(&config).unwrap();
        assert!(tls.proxy.is_none(), "http proxies need no TLS");
        assert!(tls.target.as_ref().unwrap().disable_verification());

        config.flags.scrape_insecure = false;
        config.flags.scrape_tls_cacert = Some("/nonexistent/targets-ca.pem".into());
        let err = tls_configs(&config).err().unwrap().to_string();
        assert!(
            err.starts_with("cannot read --scrape.tls.cacert file /nonexistent/targets-ca.pem: "),
            "{err}"
        );

        // Without the scrape flags, targets are checked as the proxy is.
        config.flags.scrape_tls_cacert = None;
        config.flags.proxy_urls = vec!["https://proxy:8443".into()];
        let (file, dirs) = (
            Some(PathBuf::from("/nonexistent/ca.pem")),
            Some("/nonexistent/certs".into()),
        );
        assert!(
            tls_configs_with(&config, file, dirs).is_err(),
            "no CA for the proxy"
        );
    }
}
