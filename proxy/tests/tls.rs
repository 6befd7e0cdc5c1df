//! Issue 8: the TLS listener on rustls 0.23: every usual key type and file format, and
//! handshakes that stall hold only their own connection.

mod common;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// openssl arguments that make a P-256 key in a SEC1 file (`EC PRIVATE KEY`).
const P256_SEC1: &[&str] = &[
    "ecparam",
    "-name",
    "prime256v1",
    "-genkey",
    "-noout",
    "-out",
    "key.pem",
];

/// Makes `key.pem` with `genkey` (openssl arguments) and a self-signed `cert.pem` for
/// 127.0.0.1 from it.
fn key_and_cert(dir: &CertDir, genkey: &[&str]) -> (String, String) {
    dir.openssl(genkey);
    dir.openssl(&[
        "req",
        "-x509",
        "-key",
        "key.pem",
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-out",
        "cert.pem",
    ]);
    (dir.path("cert.pem"), dir.path("key.pem"))
}

/// `curl --cacert CA URL`: status and body; (0, error) when it failed.
fn curl(ca: &str, url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "--noproxy",
            "*",
            "--cacert",
            ca,
            "-w",
            "\n%{http_code}",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("curl is missing: install the Debian package curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    match code.trim().parse() {
        Ok(code) if code != 0 => (code, body.to_string()),
        _ => (0, String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// A TLS proxy on a free port, started once its log says it listens.
fn tls_proxy(cert: &str, key: &str) -> (Proc, u16) {
    let port = free_port();
    let args: Vec<String> = [
        "-l",
        &format!("127.0.0.1:{port}"),
        "--tls.cert",
        cert,
        "--tls.key",
        key,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut proc = Proc::spawn(&format!("tls-proxy-{port}"), &proxy_bin(), &args);
    let listening = format!("listening address=127.0.0.1:{port} scheme=https");
    let up = wait_until(Duration::from_secs(10), || proc.log_contains(&listening));
    assert!(up && proc.exited().is_none(), "{}", proc.log_tail(20));
    (proc, port)
}

#[test]
fn rsa_ecdsa_and_ed25519_keys_in_every_usual_file_format() {
    for (name, genkey) in [
        (
            "rsa-pkcs1",
            &["genrsa", "-traditional", "-out", "key.pem", "2048"][..],
        ),
        (
            "rsa-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "key.pem",
            ],
        ),
        ("p256-sec1", P256_SEC1),
        (
            "p384-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                "key.pem",
            ],
        ),
        (
            "ed25519-pkcs8",
            &["genpkey", "-algorithm", "ED25519", "-out", "key.pem"],
        ),
    ] {
        let dir = CertDir::new("tls", name);
        let (cert, key) = key_and_cert(&dir, genkey);
        let first = std::fs::read_to_string(&key).unwrap_or_default();
        let (_proxy, port) = tls_proxy(&cert, &key);
        let answer = curl(&cert, &format!("https://127.0.0.1:{port}/-/healthy"));
        assert_eq!(
            answer,
            (200, "OK\n".to_string()),
            "{name} ({})",
            first.lines().next().unwrap_or("")
        );
    }
}

#[test]
fn stalled_handshakes_do_not_delay_a_real_client() {
    let dir = CertDir::new("tls", "stalled");
    let (cert, key) = key_and_cert(&dir, P256_SEC1);
    let (mut proxy, port) = tls_proxy(&cert, &key);
    let silent: Vec<TcpStream> = (0..50)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert_eq!(silent.len(), 50);
    let started = Instant::now();
    let answer = curl(&cert, &format!("https://127.0.0.1:{port}/-/healthy"));
    let took = started.elapsed();
    assert_eq!(answer, (200, "OK\n".to_string()));
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    drop(silent);
    assert!(proxy.exited().is_none(), "{}", proxy.log_tail(20));
}
