//! The web config's YAML cases: what parses, what is refused and how it is said, and the
//! TLS configurations the parsed files make in handshakes.

use super::parse::suite_name;
use super::*;
use crate::web_config::tls::tests::{client_trusting, handshake};
use pushprox_test_support::{KeyKind, TempDir};
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
    dir: TempDir,
    ca: (PathBuf, PathBuf),
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = TempDir::new(name);
        let ca = dir.ca("ca");
        let key = dir.key("server.key", KeyKind::P256Pkcs8);
        dir.leaf("server.crt", &key, &ca, "proxy", &["DNS:localhost"]);
        Pki { dir, ca }
    }

    /// A client configuration presenting a certificate for `sans` from `ca`.
    fn client(&self, name: &str, ca: &(PathBuf, PathBuf), sans: &[&str]) -> rustls::ClientConfig {
        let key = self.dir.key(&format!("{name}.key"), KeyKind::Ed25519);
        let cert = self.dir.leaf(&format!("{name}.pem"), &key, ca, name, sans);
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let plain = client_trusting(&self.ca.0);
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(pushprox_daemon::tls::provider()))
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
            &format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{tls_lines}"
            ),
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
        format!(
            "cannot read --web.config.file {d}/nope.yml: No such file or directory (os error 2)"
        )
    );
}
