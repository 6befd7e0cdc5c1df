//! The system's CA certificates, found as Go's crypto/x509 finds them on Linux, and a record of
//! what the client trusts, for the hints of TLS failures.

use std::path::PathBuf;
use std::sync::OnceLock;

use ureq::tls::Certificate;

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

/// What the client trusts, in words, once the TLS configuration is built; for the hints.
pub static TRUSTED: OnceLock<Trusted> = OnceLock::new();

/// What the client trusts for https scrapes when `--scrape.tls.cacert` differs from [`TRUSTED`].
pub static TARGET_TRUSTED: OnceLock<Trusted> = OnceLock::new();

/// Where the trusted CA certificates came from.
#[derive(Debug)]
pub enum Trusted {
    /// `--tls.cacert FILE`.
    Flag(String),
    /// The system's bundle or directories, by path.
    System(String),
    /// No CA certificate anywhere: what was looked at, for the message that asks for one.
    Nothing(String),
}

/// The system's CA certificates, as Go's crypto/x509 finds them on Linux: the file
/// `SSL_CERT_FILE` or else the first of [`SYSTEM_CA_FILES`] that exists, plus every file in the
/// directories of `SSL_CERT_DIR` (colon-separated), or else of [`SYSTEM_CA_DIRS`] when no
/// bundle was found. Returns where they came from, or what was looked at when there were none.
pub fn system_roots(
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

/// The certificates of a PEM bundle, as ureq takes them; other items and broken ones are
/// skipped, as Go does.
pub fn pem_certificates(bytes: &[u8]) -> impl Iterator<Item = Certificate<'static>> + '_ {
    pushprox_daemon::tls::bundle_certificates(bytes)
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushprox_test_support::TempDir;

    /// A self-signed certificate, PEM; its contents do not matter to the loader.
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn system_roots_follow_ssl_cert_file_and_dir() {
        let temp = TempDir::new("client-roots");
        let dir = &temp.0;
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
    }
}
