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

/// The serial of the certificate served at a new handshake, as `openssl s_client` sees it
/// (`serial=...`), without checking it.
fn served_serial(port: u16) -> String {
    let connect = format!("127.0.0.1:{port}");
    let out = Command::new("sh")
        .args([
            "-c",
            "timeout 5 openssl s_client -connect \"$1\" </dev/null 2>/dev/null | openssl x509 -noout -serial",
            "sh",
            &connect,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("sh and openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Issue 19: `--tls.cert`/`--tls.key` are followed like the web config (they never reloaded):
/// a certificate written over the file is served from the first handshake after the check.
#[test]
fn a_rotated_tls_cert_file_is_served_without_a_restart() {
    let dir = CertDir::new("tls", "rotate-flags");
    let (cert, key) = key_and_cert(&dir, P256_SEC1);
    let self_signed = |serial: &str, out: &str| {
        dir.openssl(&[
            "req",
            "-x509",
            "-key",
            "key.pem",
            "-days",
            "1",
            "-set_serial",
            serial,
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-out",
            out,
        ])
    };
    self_signed("0x1111", "cert.pem");
    let (mut proxy, port) = tls_proxy(&cert, &key);
    assert_eq!(served_serial(port), "serial=1111");
    self_signed("0x2222", "cert.new");
    std::fs::rename(dir.path("cert.new"), &cert).expect("rename the new certificate");
    // The files are checked every 5 s.
    let rotated = wait_until(Duration::from_secs(15), || {
        served_serial(port) == "serial=2222"
    });
    assert!(rotated, "{}", proxy.log_tail(20));
    assert!(
        proxy.log_contains(&format!("reloaded settings after a change of {cert}")),
        "{}",
        proxy.log_tail(20)
    );
    assert_eq!(
        curl(&cert, &format!("https://127.0.0.1:{port}/-/healthy")),
        (200, "OK\n".to_string())
    );
    assert!(proxy.exited().is_none(), "{}", proxy.log_tail(20));
}

/// Issue 17: plain HTTP on the TLS port is answered `400` with Go's words, not a handshake
/// failure, and the port goes on serving TLS.
#[test]
fn plain_http_on_the_tls_port_is_answered_400() {
    let dir = CertDir::new("tls", "plain-http");
    let (cert, key) = key_and_cert(&dir, P256_SEC1);
    let (mut proxy, port) = tls_proxy(&cert, &key);
    let (status, body) = curl(&cert, &format!("http://127.0.0.1:{port}/-/healthy"));
    assert_eq!(
        (status, body.as_str()),
        (400, "Client sent an HTTP request to an HTTPS server.\n"),
        "{}",
        proxy.log_tail(10)
    );
    assert_eq!(
        curl(&cert, &format!("https://127.0.0.1:{port}/-/healthy")),
        (200, "OK\n".to_string())
    );
    assert!(proxy.exited().is_none(), "{}", proxy.log_tail(20));
}
