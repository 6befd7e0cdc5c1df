//! Test support: keys and certificates made by the `openssl` command in a temporary directory
//! that is removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The key types the proxy accepts, each in the PEM form `openssl` writes for it.
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
    /// `BEGIN PRIVATE KEY`
    Ed25519,
}

pub const ALL_KEYS: [KeyKind; 6] = [
    KeyKind::RsaPkcs1,
    KeyKind::RsaPkcs8,
    KeyKind::P256Sec1,
    KeyKind::P256Pkcs8,
    KeyKind::P384Sec1,
    KeyKind::Ed25519,
];

/// Serial numbers of the certificates made, so that each is distinct.
static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(4242);

/// A temporary directory of test files.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(name: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("pushprox-webcfg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    pub fn write(&self, file: &str, contents: &str) -> PathBuf {
        let path = self.path(file);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Makes a key of `kind` in `file`.
    pub fn key(&self, file: &str, kind: KeyKind) -> PathBuf {
        let out = self.path(file);
        let o = out.to_str().unwrap();
        match kind {
            KeyKind::RsaPkcs1 => openssl(&["genrsa", "-traditional", "-out", o, "2048"]),
            KeyKind::RsaPkcs8 => openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                o,
            ]),
            KeyKind::P256Sec1 => openssl(&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                o,
            ]),
            KeyKind::P256Pkcs8 => openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                o,
            ]),
            KeyKind::P384Sec1 => openssl(&[
                "ecparam",
                "-name",
                "secp384r1",
                "-genkey",
                "-noout",
                "-out",
                o,
            ]),
            KeyKind::Ed25519 => openssl(&["genpkey", "-algorithm", "ED25519", "-out", o]),
        }
        out
    }

    /// A self-signed CA named `name`: (certificate, key).
    pub fn ca(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = self.key(&format!("{name}.key"), KeyKind::P256Pkcs8);
        let cert = self.path(&format!("{name}.pem"));
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            cert.to_str().unwrap(),
        ]);
        (cert, key)
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
        let csr = self.path(&format!("{file}.csr"));
        openssl(&[
            "req",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            csr.to_str().unwrap(),
        ]);
        let mut ext =
            "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n".to_string();
        if !sans.is_empty() {
            ext.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        let ext_file = self.write(&format!("{file}.ext"), &ext);
        let out = self.path(file);
        openssl(&[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            ca.0.to_str().unwrap(),
            "-CAkey",
            ca.1.to_str().unwrap(),
            "-set_serial",
            &SERIAL
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                .to_string(),
            "-days",
            "2",
            "-extfile",
            ext_file.to_str().unwrap(),
            "-out",
            out.to_str().unwrap(),
        ]);
        out
    }

    /// The DER bytes of the PEM certificate in `file`.
    pub fn der(&self, pem: &Path) -> Vec<u8> {
        let out = self.path("tmp.der");
        openssl(&[
            "x509",
            "-in",
            pem.to_str().unwrap(),
            "-outform",
            "der",
            "-out",
            out.to_str().unwrap(),
        ]);
        std::fs::read(out).unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
