//! Keys and certificates made in Rust (rcgen on ring), in the PEM files `openssl` would write,
//! so that tests need no `openssl` command. The methods live on [`TempDir`], whose files they
//! write.
//!
//! ring cannot make RSA keys: every RSA key is the one fixed test key in
//! `testdata/rsa-2048.pem` (made once by `openssl genrsa -traditional 2048`), written in the
//! file format asked for.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, SigningKey,
};

use crate::TempDir;

/// The key types the binaries accept, each in the PEM form `openssl` writes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `BEGIN RSA PRIVATE KEY`
    RsaPkcs1,
    /// `BEGIN PRIVATE KEY`
    RsaPkcs8,
    /// `BEGIN EC PRIVATE KEY`, P-256
    P256Sec1,
    /// `BEGIN PRIVATE KEY`, P-256
    P256Pkcs8,
    /// `BEGIN EC PRIVATE KEY`, P-384
    P384Sec1,
    /// `BEGIN PRIVATE KEY`, P-384
    P384Pkcs8,
    /// `BEGIN PRIVATE KEY`
    Ed25519,
}

pub const ALL_KEYS: [KeyKind; 7] = [
    KeyKind::RsaPkcs1,
    KeyKind::RsaPkcs8,
    KeyKind::P256Sec1,
    KeyKind::P256Pkcs8,
    KeyKind::P384Sec1,
    KeyKind::P384Pkcs8,
    KeyKind::Ed25519,
];

/// What a certificate may be used for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

/// A certificate to make: subject CN, subject alternative names in openssl's notation
/// (`DNS:x`, `IP:x`, `email:x`, `URI:x`), serial (a fresh one when `None`), and either a
/// usage (`CA:FALSE` and that extended key usage) or `None`: `CA:TRUE`, as `openssl req -x509`
/// makes a self-signed certificate.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    pub cn: &'a str,
    pub sans: &'a [&'a str],
    pub serial: Option<u64>,
    pub usage: Option<Usage>,
}

impl<'a> Spec<'a> {
    /// A leaf for servers and clients, `CA:FALSE`, a fresh serial.
    pub fn leaf(cn: &'a str, sans: &'a [&'a str]) -> Spec<'a> {
        Spec {
            cn,
            sans,
            serial: None,
            usage: Some(Usage::ServerAndClient),
        }
    }

    /// A certificate saying `CA:TRUE`, without a usage.
    pub fn ca(cn: &'a str, sans: &'a [&'a str]) -> Spec<'a> {
        Spec {
            usage: None,
            ..Spec::leaf(cn, sans)
        }
    }

    /// The same with serial `serial`.
    pub fn serial(self, serial: u64) -> Spec<'a> {
        Spec {
            serial: Some(serial),
            ..self
        }
    }
}

/// Serial numbers of the certificates made without one, so that each is distinct.
static SERIAL: AtomicU32 = AtomicU32::new(4242);

const RSA_PKCS1: &str = include_str!("../testdata/rsa-2048.pem");
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const RSA_ALGORITHM: &[u8] = &[
    0x30, 0x0D, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01, 0x05, 0x00,
];

impl TempDir {
    /// Makes a key of `kind` in `file`; its path.
    pub fn key(&self, file: &str, kind: KeyKind) -> PathBuf {
        let generate = |alg| {
            KeyPair::generate_for(alg)
                .unwrap_or_else(|e| panic!("cannot make a {kind:?} key: {e}"))
                .serialize_der()
        };
        let (label, der) = match kind {
            KeyKind::RsaPkcs1 => ("RSA PRIVATE KEY", rsa_pkcs1()),
            KeyKind::RsaPkcs8 => ("PRIVATE KEY", rsa_pkcs1_to_pkcs8(&rsa_pkcs1())),
            KeyKind::P256Pkcs8 => ("PRIVATE KEY", generate(&rcgen::PKCS_ECDSA_P256_SHA256)),
            KeyKind::P256Sec1 => (
                "EC PRIVATE KEY",
                ec_pkcs8_to_sec1(&generate(&rcgen::PKCS_ECDSA_P256_SHA256)),
            ),
            KeyKind::P384Sec1 => (
                "EC PRIVATE KEY",
                ec_pkcs8_to_sec1(&generate(&rcgen::PKCS_ECDSA_P384_SHA384)),
            ),
            KeyKind::P384Pkcs8 => ("PRIVATE KEY", generate(&rcgen::PKCS_ECDSA_P384_SHA384)),
            KeyKind::Ed25519 => ("PRIVATE KEY", generate(&rcgen::PKCS_ED25519)),
        };
        self.write(file, &pem_block(label, &der))
    }

    /// A self-signed CA named `name` (`NAME.pem`, P-256 key `NAME.key`): (certificate, key).
    pub fn ca(&self, name: &str) -> (PathBuf, PathBuf) {
        self.ca_files(&format!("{name}.pem"), &format!("{name}.key"))
    }

    /// A self-signed CA in `cert_file` and `key_file` (P-256), its CN the certificate file's
    /// name without extension: (certificate, key).
    pub fn ca_files(&self, cert_file: &str, key_file: &str) -> (PathBuf, PathBuf) {
        let key = self.key(key_file, KeyKind::P256Pkcs8);
        let cert = ca_params(&ca_name(Path::new(cert_file)))
            .self_signed(&read_key(&key))
            .unwrap_or_else(|e| panic!("cannot make CA {cert_file}: {e}"));
        (self.write(cert_file, &cert.pem()), key)
    }

    /// A certificate for `key` issued by `ca` with subject CN `cn` and the subject alternative
    /// names `sans` (e.g. `DNS:localhost`; none when empty), usable by servers and clients.
    pub fn leaf(
        &self,
        file: &str,
        key: &Path,
        ca: &(PathBuf, PathBuf),
        cn: &str,
        sans: &[&str],
    ) -> PathBuf {
        self.issue(file, key, Some(ca), &Spec::leaf(cn, sans))
    }

    /// Makes `file`, the certificate of `spec` for the key in `key`, issued by the CA `issuer`
    /// made by [`TempDir::ca`] (self-signed when `None`). Written beside and renamed into
    /// place, so that a reader never sees half a certificate.
    pub fn issue(
        &self,
        file: &str,
        key: &Path,
        issuer: Option<&(PathBuf, PathBuf)>,
        spec: &Spec,
    ) -> PathBuf {
        let subject_key = read_key(key);
        let params = params(spec);
        let cert = match issuer {
            None => params.self_signed(&subject_key),
            Some((ca_cert, ca_key)) => {
                // The CA's own parameters again: its subject and key are all an issuer needs.
                let ca = Issuer::new(ca_params(&ca_name(ca_cert)), read_key(ca_key));
                params.signed_by(&subject_key, &ca)
            }
        }
        .unwrap_or_else(|e| panic!("cannot make certificate {file}: {e}"));
        let tmp = self.write(&format!("{file}.new"), &cert.pem());
        let path = self.path(file);
        std::fs::rename(&tmp, &path)
            .unwrap_or_else(|e| panic!("cannot rename {} into place: {e}", path.display()));
        path
    }

    /// A version 1 certificate (no extensions) for `key` issued by `ca`, as `openssl x509 -req`
    /// makes one without `-extfile`: an X.509 v3 certificate made by rcgen, its version and
    /// extensions taken out and its body signed again by the CA.
    pub fn v1(&self, file: &str, key: &Path, ca: &(PathBuf, PathBuf), cn: &str) -> PathBuf {
        let v3 = self.issue(&format!("{file}.v3"), key, Some(ca), &Spec::leaf(cn, &[]));
        let der = self.der(&v3);
        let cert = elements(contents(&der));
        let tbs: Vec<u8> = elements(contents(cert[0]))
            .into_iter()
            .filter(|e| e[0] != 0xA0 && e[0] != 0xA3)
            .flatten()
            .copied()
            .collect();
        let tbs = tlv(0x30, &tbs);
        let signature = read_key(&ca.1)
            .sign(&tbs)
            .unwrap_or_else(|e| panic!("cannot sign {file}: {e}"));
        let mut bits = vec![0];
        bits.extend_from_slice(&signature);
        let mut body = tbs;
        body.extend_from_slice(cert[1]);
        body.extend_from_slice(&tlv(0x03, &bits));
        self.write(file, &pem_block("CERTIFICATE", &tlv(0x30, &body)))
    }

    /// The DER bytes of the (first) PEM certificate in `pem`.
    pub fn der(&self, pem: &Path) -> Vec<u8> {
        pem_contents(pem).1
    }
}

/// The name of the CA in `cert_file`: the file's name without extension.
fn ca_name(cert_file: &Path) -> String {
    cert_file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_else(|| panic!("a CA file name: {}", cert_file.display()))
        .to_string()
}

/// The parameters of a CA named `name` as [`TempDir::ca`] makes it, with the extensions of
/// `openssl req -x509 -addext basicConstraints=critical,CA:TRUE -addext
/// keyUsage=critical,keyCertSign,cRLSign`.
fn ca_params(name: &str) -> CertificateParams {
    let mut p = params(&Spec::ca(name, &[]));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn params(spec: &Spec) -> CertificateParams {
    let mut p = CertificateParams::default();
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(2);
    p.distinguished_name.push(DnType::CommonName, spec.cn);
    let serial = spec
        .serial
        .unwrap_or_else(|| u64::from(SERIAL.fetch_add(1, Ordering::SeqCst)));
    p.serial_number = Some(SerialNumber::from_slice(&minimal_be(serial)));
    p.is_ca = IsCa::ExplicitNoCa;
    p.extended_key_usages = match spec.usage {
        None => {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            Vec::new()
        }
        Some(Usage::Server) => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Some(Usage::Client) => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Some(Usage::ServerAndClient) => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    p.subject_alt_names = spec.sans.iter().map(|s| san(s)).collect();
    p
}

fn san(s: &str) -> SanType {
    let ia5 = |v: &str| {
        v.to_string()
            .try_into()
            .unwrap_or_else(|e| panic!("not an IA5 string: {v}: {e}"))
    };
    match s.split_once(':') {
        Some(("DNS", v)) => SanType::DnsName(ia5(v)),
        Some(("email", v)) => SanType::Rfc822Name(ia5(v)),
        Some(("URI", v)) => SanType::URI(ia5(v)),
        Some(("IP", v)) => SanType::IpAddress(
            v.parse()
                .unwrap_or_else(|e| panic!("not an IP address: {v}: {e}")),
        ),
        _ => panic!("a subject alternative name is DNS:, IP:, email: or URI:, not {s}"),
    }
}

/// The serial as a positive DER INTEGER's content: no leading zero bytes, one added when the
/// high bit is set.
fn minimal_be(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(7);
    let mut out = bytes[first..].to_vec();
    if out[0] & 0x80 != 0 {
        out.insert(0, 0);
    }
    out
}

/// The key pair in a PEM file of any of the [`KeyKind`] forms.
fn read_key(path: &Path) -> KeyPair {
    let (label, der) = pem_contents(path);
    let pkcs8 = match label.as_str() {
        "PRIVATE KEY" => der,
        "RSA PRIVATE KEY" => rsa_pkcs1_to_pkcs8(&der),
        "EC PRIVATE KEY" => ec_sec1_to_pkcs8(&der),
        other => panic!("{}: a {other} cannot sign", path.display()),
    };
    KeyPair::try_from(pkcs8.as_slice())
        .unwrap_or_else(|e| panic!("{}: not a usable key: {e}", path.display()))
}

/// The label and DER contents of the first PEM block in `path`.
fn pem_contents(path: &Path) -> (String, Vec<u8>) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let block = pem::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (block.tag().to_string(), block.into_contents())
}

/// A PEM block as openssl writes it (LF line ends, 64 columns).
pub fn pem_block(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn rsa_pkcs1() -> Vec<u8> {
    pem::parse(RSA_PKCS1)
        .map(pem::Pem::into_contents)
        .unwrap_or_else(|e| panic!("testdata/rsa-2048.pem: {e}"))
}

// DER, as much as the key forms need: PKCS#8 wraps PKCS#1 (RSA) and SEC1 (EC) keys.

/// A DER element: tag and contents.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = minimal_be(len as u64);
        let bytes: Vec<u8> = bytes.into_iter().skip_while(|&b| b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The elements of a DER SEQUENCE's (or any constructed element's) contents, each whole.
fn elements(mut der: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while der.len() >= 2 {
        let (header, len) = match der[1] {
            n if n < 0x80 => (2, usize::from(n)),
            n => {
                let k = usize::from(n & 0x7F);
                let len = der[2..2 + k]
                    .iter()
                    .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
                (2 + k, len)
            }
        };
        out.push(&der[..header + len]);
        der = &der[header + len..];
    }
    out
}

/// The contents of one whole DER element.
fn contents(element: &[u8]) -> &[u8] {
    let header = match element[1] {
        n if n < 0x80 => 2,
        n => 2 + usize::from(n & 0x7F),
    };
    &element[header..]
}

fn rsa_pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(RSA_ALGORITHM);
    body.extend_from_slice(&tlv(0x04, pkcs1));
    tlv(0x30, &body)
}

/// ring's PKCS#8 EC key to the SEC1 `EC PRIVATE KEY` openssl writes, with the curve in
/// `[0] parameters`.
fn ec_pkcs8_to_sec1(pkcs8: &[u8]) -> Vec<u8> {
    let outer = elements(contents(pkcs8));
    let curve = elements(contents(outer[1]))[1];
    let inner = elements(contents(contents(outer[2])));
    let mut body = Vec::new();
    body.extend_from_slice(inner[0]);
    body.extend_from_slice(inner[1]);
    body.extend_from_slice(&tlv(0xA0, curve));
    for e in &inner[2..] {
        if e[0] != 0xA0 {
            body.extend_from_slice(e);
        }
    }
    tlv(0x30, &body)
}

/// A SEC1 key with its curve back to the PKCS#8 form ring reads.
fn ec_sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    let inner = elements(contents(sec1));
    let curve = inner
        .iter()
        .find(|e| e[0] == 0xA0)
        .map(|e| contents(e))
        .unwrap_or_else(|| panic!("an EC PRIVATE KEY without its curve"));
    let mut key = Vec::new();
    for e in &inner {
        if e[0] != 0xA0 {
            key.extend_from_slice(e);
        }
    }
    let mut alg = OID_EC_PUBLIC_KEY.to_vec();
    alg.extend_from_slice(curve);
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(&tlv(0x30, &alg));
    body.extend_from_slice(&tlv(0x04, &tlv(0x30, &key)));
    tlv(0x30, &body)
}
