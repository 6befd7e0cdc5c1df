//! TLS files as both daemons read them: PEM certificates and private keys (checked, size-bounded,
//! every problem a [`PemError`] naming the flag or config key and the file), the pair checked to
//! belong together, and the crypto provider (*ring*, so one crypto library ships). The proxy
//! builds its server configuration on this, the client its client certificate and CA roots.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// PEM files above this size are refused: certificates, keys and CA bundles are a few KiB,
/// and a path mistaken for another file (a log, `/dev/zero`) must not fill memory.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Where PEM text came from, as said in messages: `--tls.cert file /etc/proxy/cert.pem`,
/// `tls_server_config.cert_file /etc/proxy/cert.pem`, `tls_server_config.cert in web.yml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// A file named by a command-line flag.
    pub fn flag(flag: &str, path: &Path) -> Origin {
        Origin(format!("{flag} file {}", path.display()))
    }

    /// A file named by a key of a web config file.
    pub fn config_file(key: &str, path: &Path) -> Origin {
        Origin(format!("{key} {}", path.display()))
    }

    /// PEM text written inline under a key of the web config file `config`.
    pub fn inline(key: &str, config: &Path) -> Origin {
        Origin(format!("{key} in {}", config.display()))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a certificate or key file cannot be used. Each names the flag or key and the file.
#[derive(Debug)]
pub enum PemError {
    /// The file cannot be read.
    Read {
        origin: Origin,
        error: std::io::Error,
    },
    /// The file is larger than any PEM file a daemon expects.
    TooLarge { origin: Origin },
    /// A PEM block is malformed (no END line, bad base64, ...).
    Pem { origin: Origin, reason: String },
    /// No `BEGIN CERTIFICATE` block.
    NoCertificate { origin: Origin },
    /// No private key block; `encrypted` when there is an encrypted one.
    NoKey { origin: Origin, encrypted: bool },
    /// A key rustls cannot sign with (a DSA key, an unsupported curve, a short RSA key, ...).
    UnsupportedKey { origin: Origin, reason: String },
    /// The first certificate cannot be parsed.
    BadCertificate { origin: Origin, reason: String },
    /// The key does not belong to the first certificate.
    KeyMismatch { cert: Origin, key: Origin },
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemError::Read { origin, error } => write!(f, "cannot read {origin}: {error}"),
            PemError::TooLarge { origin } => write!(
                f,
                "{origin} is larger than {} KiB: not a PEM certificate or key file; check the path",
                MAX_PEM_BYTES / 1024
            ),
            PemError::Pem { origin, reason } => write!(
                f,
                "{origin} is not valid PEM ({reason}); check it with `openssl storeutl -noout -text FILE`"
            ),
            PemError::NoCertificate { origin } => write!(
                f,
                "{origin} holds no certificate: expected PEM \"-----BEGIN CERTIFICATE-----\" blocks, the server's certificate first, then its intermediates (a DER file converts with `openssl x509 -inform der -in FILE -out FILE.pem`)"
            ),
            PemError::NoKey { origin, encrypted: true } => write!(
                f,
                "{origin} holds an encrypted private key, which the proxy cannot decrypt: write it unencrypted with `openssl pkey -in KEY -out KEY.plain` (and keep that file mode 0600)"
            ),
            PemError::NoKey { origin, encrypted: false } => write!(
                f,
                "{origin} holds no private key: expected a PEM \"-----BEGIN PRIVATE KEY-----\" (PKCS#8), \"-----BEGIN RSA PRIVATE KEY-----\" or \"-----BEGIN EC PRIVATE KEY-----\" block"
            ),
            PemError::UnsupportedKey { origin, reason } => write!(
                f,
                "{origin}: the private key cannot be used ({reason}); use an RSA (2048 bits or more), ECDSA P-256 or P-384, or Ed25519 key"
            ),
            PemError::BadCertificate { origin, reason } => write!(
                f,
                "{origin}: the first certificate cannot be parsed ({reason}); it must be an X.509 v3 certificate (`openssl x509 -req` makes v1 unless given -extfile): check it with `openssl x509 -noout -text -in FILE`"
            ),
            PemError::KeyMismatch { cert, key } => write!(
                f,
                "the private key of {key} does not belong to the first certificate of {cert}: the first certificate must be the one issued for that key (compare `openssl x509 -noout -pubkey -in CERT` with `openssl pkey -pubout -in KEY`)"
            ),
        }
    }
}

impl std::error::Error for PemError {}

/// PEM text and where it came from.
#[derive(Clone)]
pub struct Pem {
    pub origin: Origin,
    pub text: Vec<u8>,
}

// The text may be a private key: `{:?}` shows only where it came from and its size.
impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pem({}, {} bytes)", self.origin, self.text.len())
    }
}

impl Pem {
    /// Reads a PEM file (at most 1 MiB).
    pub fn read(path: &Path, origin: Origin) -> Result<Pem, PemError> {
        let unreadable = |error| PemError::Read {
            origin: origin.clone(),
            error,
        };
        let file = std::fs::File::open(path).map_err(unreadable)?;
        let mut text = Vec::new();
        file.take(MAX_PEM_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(unreadable)?;
        if text.len() as u64 > MAX_PEM_BYTES {
            return Err(PemError::TooLarge { origin });
        }
        Ok(Pem { origin, text })
    }

    /// PEM text given inline.
    pub fn inline(text: &str, origin: Origin) -> Pem {
        Pem {
            origin,
            text: text.as_bytes().to_vec(),
        }
    }

    /// The PEM sections of the text, in order; sections of kinds rustls does not know
    /// (`ENCRYPTED PRIVATE KEY`, `DSA PRIVATE KEY`, ...) are skipped.
    fn sections(&self) -> Result<Vec<(SectionKind, Vec<u8>)>, PemError> {
        <(SectionKind, Vec<u8>)>::pem_slice_iter(&self.text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PemError::Pem {
                origin: self.origin.clone(),
                reason: pem_reason(&e),
            })
    }

    /// Every certificate of the text, in order; at least one.
    pub fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, PemError> {
        let certs: Vec<CertificateDer<'static>> = self
            .sections()?
            .into_iter()
            .filter(|(kind, _)| *kind == SectionKind::Certificate)
            .map(|(_, der)| CertificateDer::from(der))
            .collect();
        if certs.is_empty() {
            return Err(PemError::NoCertificate {
                origin: self.origin.clone(),
            });
        }
        Ok(certs)
    }

    /// The first private key of the text: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>, PemError> {
        for (kind, der) in self.sections()? {
            match kind {
                SectionKind::PrivateKey => return Ok(PrivateKeyDer::Pkcs8(der.into())),
                SectionKind::RsaPrivateKey => return Ok(PrivateKeyDer::Pkcs1(der.into())),
                SectionKind::EcPrivateKey => return Ok(PrivateKeyDer::Sec1(der.into())),
                _ => {}
            }
        }
        let text = String::from_utf8_lossy(&self.text);
        Err(PemError::NoKey {
            origin: self.origin.clone(),
            encrypted: text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
                || text.contains("Proc-Type: 4,ENCRYPTED"),
        })
    }
}

/// The certificates of a CA bundle (a system's `ca-certificates.crt`, a file of a
/// certificate directory), other items and broken blocks skipped, as Go reads such bundles.
pub fn bundle_certificates(bytes: &[u8]) -> impl Iterator<Item = CertificateDer<'static>> + '_ {
    CertificateDer::pem_slice_iter(bytes).filter_map(Result::ok)
}

/// pki-types' PEM errors in words (its `Display` prints the marker as a byte array).
fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "a block has no \"-----END {}-----\" line",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => format!(
            "malformed BEGIN line \"{}\"",
            String::from_utf8_lossy(line).trim()
        ),
        Error::Base64Decode(why) => format!("a block is not base64: {why}"),
        other => other.to_string(),
    }
}

/// The crypto provider of the proxy: *ring*, with its default cipher suites and groups.
pub fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The certificate chain of `cert` with the key of `key`, checked to belong together.
pub fn certified_key(
    cert: &Pem,
    key: &Pem,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, PemError> {
    let chain = cert.certificates()?;
    let key_der = key.private_key()?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| PemError::UnsupportedKey {
            origin: key.origin.clone(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key cannot tell its public half (not so for ring's keys); the
        // handshake would then fail, not start with a wrong key.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(PemError::KeyMismatch {
                cert: cert.origin.clone(),
                key: key.origin.clone(),
            })
        }
        Err(e) => Err(PemError::BadCertificate {
            origin: cert.origin.clone(),
            reason: e.to_string(),
        }),
    }
}
