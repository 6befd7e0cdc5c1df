//! The rustls server configuration of the proxy's listener, built in one place
//! ([`from_web_config`]) from a web config's `tls_server_config` or from `--tls.cert`/`--tls.key`
//! ([`from_files`], the same with defaults).
//!
//! Everything is checked here, before the listener starts: the PEM files, the key type, and
//! that the key belongs to the certificate. Each problem is a [`TlsConfigError`] naming the
//! flag or web config key and the file, so a bad pair fails at start and never at the first
//! handshake. PEM files, keys and the crypto provider are the daemon crate's
//! (`pushprox_daemon::tls`), which the client uses too.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pushprox_daemon::tls::{certified_key, provider, Origin, Pem, PemError};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, ServerConfig, WebPkiClientVerifier};
use rustls::sign::SingleCertAndKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName};

use super::{ClientAuth, PemSource, TlsServerConfig, TlsVersion};
use crate::auth::cert_names;
use crate::http::TlsSetup;

/// The one ALPN protocol the proxy speaks.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why a TLS configuration cannot be built. Each names the flag or key and the file.
#[derive(Debug)]
pub enum TlsConfigError {
    /// A certificate or key file (or inline PEM) cannot be used.
    File(PemError),
    /// The client CA bundle holds no usable certificate.
    BadClientCa { origin: Origin, reason: String },
    /// A web config option rustls cannot honour, or that contradicts another.
    Setting { key: &'static str, reason: String },
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::File(e) => e.fmt(f),
            TlsConfigError::BadClientCa { origin, reason } => {
                write!(
                    f,
                    "{origin}: cannot use it to verify client certificates ({reason})"
                )
            }
            TlsConfigError::Setting { key, reason } => write!(f, "{key}: {reason}"),
        }
    }
}

impl std::error::Error for TlsConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsConfigError::File(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PemError> for TlsConfigError {
    fn from(e: PemError) -> Self {
        TlsConfigError::File(e)
    }
}

/// The server configuration of `--tls.cert`/`--tls.key`: TLS 1.3 and 1.2, no client
/// certificates, ALPN `http/1.1`; the files are named by their flags in errors.
pub fn from_files(cert: &Path, key: &Path) -> Result<Arc<TlsSetup>, TlsConfigError> {
    let config = TlsServerConfig {
        cert: PemSource::File(cert.to_path_buf()),
        key: PemSource::File(key.to_path_buf()),
        client_auth: ClientAuth::NoClientCert,
        client_ca: None,
        client_allowed_sans: Vec::new(),
        min_version: TlsVersion::Tls12,
        max_version: TlsVersion::Tls13,
        cipher_suites: Vec::new(),
        curve_preferences: Vec::new(),
        prefer_server_cipher_suites: false,
        config_path: PathBuf::new(),
    };
    from_web_config(&config, Path::new("."))
}

/// The server configuration of a web config's `tls_server_config`; relative paths are
/// resolved against `base_dir` (the config file's directory).
pub fn from_web_config(
    config: &TlsServerConfig,
    base_dir: &Path,
) -> Result<Arc<TlsSetup>, TlsConfigError> {
    let cert = read_pem(config, base_dir, &config.cert, ["cert_file", "cert"])?;
    let key = read_pem(config, base_dir, &config.key, ["key_file", "key"])?;

    let mut provider = provider();
    if !config.cipher_suites.is_empty() {
        // As in Go, cipher_suites chooses among TLS 1.2 suites; TLS 1.3 suites stay all on
        // unless some are listed too.
        let mut suites = config.cipher_suites.clone();
        if !suites
            .iter()
            .any(|s| s.version() == &rustls::version::TLS13)
        {
            suites.extend(
                provider
                    .cipher_suites
                    .iter()
                    .filter(|s| s.version() == &rustls::version::TLS13),
            );
        }
        provider.cipher_suites = suites;
    }
    if !config.curve_preferences.is_empty() {
        provider.kx_groups = config.curve_preferences.clone();
    }
    let provider = Arc::new(provider);
    let certified = certified_key(&cert, &key, &provider)?;

    let versions: &[&'static rustls::SupportedProtocolVersion] =
        match (config.min_version, config.max_version) {
            (TlsVersion::Tls12, TlsVersion::Tls12) => &[&rustls::version::TLS12],
            (TlsVersion::Tls13, _) => &[&rustls::version::TLS13],
            (TlsVersion::Tls12, TlsVersion::Tls13) => {
                &[&rustls::version::TLS13, &rustls::version::TLS12]
            }
        };
    let verifier = client_verifier(config, base_dir, &provider)?;
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| TlsConfigError::Setting {
            key: "tls_server_config.cipher_suites",
            reason: format!("no cipher suite left for the TLS versions allowed ({e})"),
        })?
        .with_client_cert_verifier(Arc::clone(&verifier))
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    server.ignore_client_order = config.prefer_server_cipher_suites;
    server.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(TlsSetup {
        config: Arc::new(server),
        verifier,
    }))
}

/// The PEM of `source`, named in errors by its key in the web config (`file_key`, or
/// `inline_key` for inline PEM), or by its flag when `config` is `--tls.cert`/`--tls.key`'s.
fn read_pem(
    config: &TlsServerConfig,
    base_dir: &Path,
    source: &PemSource,
    [file_key, inline_key]: [&str; 2],
) -> Result<Pem, PemError> {
    match source {
        // An empty config path: the flags' files, named by their flags.
        PemSource::File(path) if config.config_path.as_os_str().is_empty() => {
            let flag = if file_key == "cert_file" {
                "--tls.cert"
            } else {
                "--tls.key"
            };
            Pem::read(path, Origin::flag(flag, path))
        }
        PemSource::File(path) => {
            let path = base_dir.join(path);
            let origin = Origin::config_file(&format!("tls_server_config.{file_key}"), &path);
            Pem::read(&path, origin)
        }
        PemSource::Inline(text) => Ok(Pem::inline(
            text,
            Origin::inline(
                &format!("tls_server_config.{inline_key}"),
                &config.config_path,
            ),
        )),
    }
}

/// The verifier of `client_auth_type`, with the `client_allowed_sans` check in it.
fn client_verifier(
    config: &TlsServerConfig,
    base_dir: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsConfigError> {
    let (chain, mandatory) = match config.client_auth {
        ClientAuth::NoClientCert => return Ok(Arc::new(rustls::server::NoClientAuth)),
        ClientAuth::RequestClientCert => (None, false),
        ClientAuth::RequireAnyClientCert => (None, true),
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let Some(source) = &config.client_ca else {
                return Err(TlsConfigError::Setting {
                    key: "tls_server_config.client_ca_file",
                    reason:
                        "missing: this client_auth_type verifies client certificates against it"
                            .into(),
                });
            };
            let ca = read_pem(config, base_dir, source, ["client_ca_file", "client_ca"])?;
            let certs = ca.certificates().map_err(|e| match e {
                PemError::NoCertificate { origin } => TlsConfigError::BadClientCa {
                    origin,
                    reason: "no PEM \"-----BEGIN CERTIFICATE-----\" block: expected the certificates of the CAs that issue client certificates".into(),
                },
                other => other.into(),
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs {
                roots.add(cert).map_err(|e| TlsConfigError::BadClientCa {
                    origin: ca.origin.clone(),
                    reason: format!("a certificate cannot be a trust anchor: {e}"),
                })?;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if config.client_auth == ClientAuth::VerifyClientCertIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            let chain = builder.build().map_err(|e| TlsConfigError::BadClientCa {
                origin: ca.origin.clone(),
                reason: format!("{e:?}"),
            })?;
            let mandatory = chain.client_auth_mandatory();
            (Some(chain), mandatory)
        }
    };
    Ok(Arc::new(ClientCerts {
        chain,
        mandatory,
        schemes: provider.signature_verification_algorithms,
        allowed_sans: config.client_allowed_sans.clone(),
    }))
}

/// What a client certificate must be: the `client_auth_type` asking for one, and the
/// `client_allowed_sans` it must then carry.
#[derive(Debug)]
struct ClientCerts {
    /// The chain check of `VerifyClientCertIfGiven` and `RequireAndVerifyClientCert`.
    ///
    /// `None`: `RequestClientCert` and `RequireAnyClientCert`, as Go does them: the client is
    /// asked for a certificate (and with `mandatory` must send one), and its handshake
    /// signature must verify with the certificate's key, so the client holds that key. Nothing
    /// else is checked: not the issuer, not the dates, not the usage. Anyone can make such a
    /// certificate, so it proves nothing about who the client is; `RequireAndVerifyClientCert`
    /// does.
    chain: Option<Arc<dyn ClientCertVerifier>>,
    /// Whether a client must send a certificate.
    mandatory: bool,
    schemes: rustls::crypto::WebPkiSupportedAlgorithms,
    /// `client_allowed_sans` (none: any): once the certificate is accepted, it must also carry
    /// one of the listed SANs (DNS, e-mail, IP or URI, exact match as exporter-toolkit compares
    /// them).
    allowed_sans: Vec<String>,
}

/// The handshake error when no SAN is allowed; its text reaches the proxy's log (rustls
/// prints it with `Debug`, hence the hand-written one).
struct SansRefused {
    presented: Vec<String>,
}

impl fmt::Debug for SansRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SansRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the client certificate's SANs ({}) include none of tls_server_config.client_allowed_sans",
            if self.presented.is_empty() {
                "none".to_string()
            } else {
                self.presented.join(", ")
            }
        )
    }
}

impl std::error::Error for SansRefused {}

impl ClientCertVerifier for ClientCerts {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.as_ref().map_or(&[], |c| c.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = match &self.chain {
            Some(chain) => chain.verify_client_cert(end_entity, intermediates, now)?,
            None => {
                // It must at least be a certificate, so the signature checks below have a key.
                ParsedCertificate::try_from(end_entity)?;
                ClientCertVerified::assertion()
            }
        };
        if self.allowed_sans.is_empty() {
            return Ok(verified);
        }
        let presented = cert_names::parse(end_entity)
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            ))?
            .sans();
        if presented.iter().any(|san| self.allowed_sans.contains(san)) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(SansRefused { presented })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.schemes)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.schemes)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes.supported_schemes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pushprox_test_support::{KeyKind, TempDir, ALL_KEYS};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};

    /// A client trusting the CA certificate `ca`, with ALPN `http/1.1`.
    pub fn client_trusting(ca: &Path) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    /// A handshake in memory, at most 10 round trips; both sides after it.
    pub fn handshake(
        server: Arc<TlsSetup>,
        client: ClientConfig,
        name: &str,
    ) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name)?;
        let mut s = ServerConnection::new(Arc::clone(&server.config))?;
        for _ in 0..10 {
            let mut wire = Vec::new();
            c.write_tls(&mut wire).unwrap();
            s.read_tls(&mut &wire[..]).unwrap();
            let server_result = s.process_new_packets();
            wire.clear();
            s.write_tls(&mut wire).unwrap();
            c.read_tls(&mut &wire[..]).unwrap();
            server_result?;
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok((c, s));
            }
        }
        panic!("no handshake after 10 round trips");
    }

    #[test]
    fn every_key_type_completes_a_handshake() {
        let dir = TempDir::new("keytypes");
        let ca = dir.ca("ca");
        for kind in ALL_KEYS {
            let key = dir.key(&format!("{kind:?}.key"), kind);
            let cert = dir.leaf(
                &format!("{kind:?}.pem"),
                &key,
                &ca,
                "proxy",
                &["DNS:localhost"],
            );
            let config = from_files(&cert, &key).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            let (_, server) = handshake(config, client_trusting(&ca.0), "localhost")
                .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]), "{kind:?}");
        }
    }

    #[test]
    fn a_chain_is_sent_whole() {
        let dir = TempDir::new("chain");
        let ca = dir.ca("root");
        let key = dir.key("leaf.key", KeyKind::P256Sec1);
        let leaf = dir.leaf("leaf.pem", &key, &ca, "proxy", &["DNS:localhost"]);
        let chain = format!(
            "{}{}",
            std::fs::read_to_string(&leaf).unwrap(),
            std::fs::read_to_string(&ca.0).unwrap()
        );
        let chain = dir.write("chain.pem", &chain);
        let (client, server) = handshake(
            from_files(&chain, &key).unwrap(),
            client_trusting(&ca.0),
            "localhost",
        )
        .unwrap();
        assert_eq!(server.peer_certificates(), None);
        assert_eq!(client.peer_certificates().map(|p| p.len()), Some(2));
    }

    #[test]
    fn a_mismatched_pair_names_both_files() {
        let dir = TempDir::new("mismatch");
        let ca = dir.ca("ca");
        let key = dir.key("a.key", KeyKind::P256Pkcs8);
        let other = dir.key("b.key", KeyKind::P256Pkcs8);
        let cert = dir.leaf("a.pem", &key, &ca, "proxy", &["DNS:localhost"]);
        let err = from_files(&cert, &other).unwrap_err();
        let d = dir.0.display();
        assert_eq!(
            err.to_string(),
            format!("the private key of --tls.key file {d}/b.key does not belong to the first certificate of --tls.cert file {d}/a.pem: the first certificate must be the one issued for that key (compare `openssl x509 -noout -pubkey -in CERT` with `openssl pkey -pubout -in KEY`)")
        );
        // An RSA key for an ECDSA certificate: also a mismatch, not an obscure failure.
        let rsa = dir.key("rsa.key", KeyKind::RsaPkcs8);
        assert!(matches!(
            from_files(&cert, &rsa),
            Err(TlsConfigError::File(PemError::KeyMismatch { .. }))
        ));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = TempDir::new("badfiles");
        let ca = dir.ca("ca");
        let key = dir.key("k.key", KeyKind::Ed25519);
        let cert = dir.leaf("c.pem", &key, &ca, "proxy", &["DNS:localhost"]);
        let empty = dir.write("empty.pem", "");
        let garbage = dir.write("garbage.pem", "hello\x00world\n");
        let d = dir.0.display();

        let err = from_files(&empty, &key).unwrap_err();
        assert_eq!(err.to_string(), format!("--tls.cert file {d}/empty.pem holds no certificate: expected PEM \"-----BEGIN CERTIFICATE-----\" blocks, the server's certificate first, then its intermediates (a DER file converts with `openssl x509 -inform der -in FILE -out FILE.pem`)"));
        assert!(matches!(
            from_files(&garbage, &key),
            Err(TlsConfigError::File(PemError::NoCertificate { .. }))
        ));

        let err = from_files(&cert, &empty).unwrap_err();
        assert_eq!(err.to_string(), format!("--tls.key file {d}/empty.pem holds no private key: expected a PEM \"-----BEGIN PRIVATE KEY-----\" (PKCS#8), \"-----BEGIN RSA PRIVATE KEY-----\" or \"-----BEGIN EC PRIVATE KEY-----\" block"));
        // A certificate given as the key.
        assert!(matches!(
            from_files(&cert, &cert),
            Err(TlsConfigError::File(PemError::NoKey {
                encrypted: false,
                ..
            }))
        ));

        let err = from_files(&dir.path("missing.pem"), &key).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot read --tls.cert file {d}/missing.pem: No such file or directory (os error 2)")
        );

        let truncated = dir.write("truncated.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
        let err = from_files(&truncated, &key).unwrap_err();
        assert_eq!(err.to_string(), format!("--tls.cert file {d}/truncated.pem is not valid PEM (a block has no \"-----END CERTIFICATE-----\" line); check it with `openssl storeutl -noout -text FILE`"));

        let bad_der = dir.write(
            "bad-der.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        );
        let err = from_files(&bad_der, &key).unwrap_err();
        assert_eq!(err.to_string(), format!("--tls.cert file {d}/bad-der.pem: the first certificate cannot be parsed (invalid peer certificate: BadEncoding); it must be an X.509 v3 certificate (`openssl x509 -req` makes v1 unless given -extfile): check it with `openssl x509 -noout -text -in FILE`"));

        let bad_key = dir.write(
            "bad.key",
            "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n",
        );
        let err = from_files(&cert, &bad_key).unwrap_err();
        assert_eq!(err.to_string(), format!("--tls.key file {d}/bad.key: the private key cannot be used (unexpected error: failed to parse private key as RSA, ECDSA, or EdDSA); use an RSA (2048 bits or more), ECDSA P-256 or P-384, or Ed25519 key"));

        // The PEM label of `openssl pkcs8 -topk8 -passout pass:...` output is what says the
        // key is encrypted; its contents are never read.
        let encrypted = dir.write(
            "enc.key",
            &pushprox_test_support::certs::pem_block("ENCRYPTED PRIVATE KEY", &dir.der(&key)),
        );
        let err = from_files(&cert, &encrypted).unwrap_err();
        assert_eq!(err.to_string(), format!("--tls.key file {d}/enc.key holds an encrypted private key, which the proxy cannot decrypt: write it unencrypted with `openssl pkey -in KEY -out KEY.plain` (and keep that file mode 0600)"));
    }
}
