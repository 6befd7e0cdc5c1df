//! Issue 8: the TLS listener on rustls 0.23: every usual key type and file format, and
//! handshakes that stall hold only their own connection.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use pushprox_test_support::*;

/// Makes `key.pem` of `kind` and a self-signed `cert.pem` for 127.0.0.1 from it (as
/// `openssl req -x509` makes it: `CA:TRUE`).
fn key_and_cert(dir: &TempDir, kind: KeyKind) -> (String, String) {
    let key = dir.key("key.pem", kind);
    self_signed(dir, &key, 0x1111, "cert.pem");
    (dir.arg("cert.pem"), dir.arg("key.pem"))
}

/// A self-signed certificate `file` for 127.0.0.1 with `serial`, for the key in `key`.
fn self_signed(dir: &TempDir, key: &std::path::Path, serial: u64, file: &str) {
    dir.issue(
        file,
        key,
        None,
        &Spec::ca("127.0.0.1", &["IP:127.0.0.1"]).serial(serial),
    );
}

/// `curl --cacert CA URL`: status and body; (0, error) when it failed.
fn curl_ca(ca: &str, url: &str) -> (u16, String) {
    curl(&["--cacert", ca, url])
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
    for (name, kind) in [
        ("rsa-pkcs1", KeyKind::RsaPkcs1),
        ("rsa-pkcs8", KeyKind::RsaPkcs8),
        ("p256-sec1", KeyKind::P256Sec1),
        ("p384-pkcs8", KeyKind::P384Pkcs8),
        ("ed25519-pkcs8", KeyKind::Ed25519),
    ] {
        let dir = TempDir::new(&format!("tls-{name}"));
        let (cert, key) = key_and_cert(&dir, kind);
        let first = std::fs::read_to_string(&key).unwrap_or_default();
        let (_proxy, port) = tls_proxy(&cert, &key);
        let answer = curl_ca(&cert, &format!("https://127.0.0.1:{port}/-/healthy"));
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
    let dir = TempDir::new("tls-stalled");
    let (cert, key) = key_and_cert(&dir, KeyKind::P256Sec1);
    let (mut proxy, port) = tls_proxy(&cert, &key);
    let silent: Vec<TcpStream> = (0..50)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert_eq!(silent.len(), 50);
    let started = Instant::now();
    let answer = curl_ca(&cert, &format!("https://127.0.0.1:{port}/-/healthy"));
    let took = started.elapsed();
    assert_eq!(answer, (200, "OK\n".to_string()));
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    drop(silent);
    assert!(proxy.exited().is_none(), "{}", proxy.log_tail(20));
}

/// Issue 19: `--tls.cert`/`--tls.key` are followed like the web config (they never reloaded):
/// a certificate written over the file is served from the first handshake after the check.
#[test]
fn a_rotated_tls_cert_file_is_served_without_a_restart() {
    let dir = TempDir::new("tls-rotate-flags");
    let (cert, key) = key_and_cert(&dir, KeyKind::P256Sec1);
    let (mut proxy, port) = tls_proxy(&cert, &key);
    assert_eq!(served_serial(port, &[]), "serial=1111");
    self_signed(&dir, std::path::Path::new(&key), 0x2222, "cert.new");
    std::fs::rename(dir.path("cert.new"), &cert).expect("rename the new certificate");
    // The files are checked every 5 s.
    let rotated = wait_until(Duration::from_secs(15), || {
        served_serial(port, &[]) == "serial=2222"
    });
    assert!(rotated, "{}", proxy.log_tail(20));
    assert!(
        proxy.log_contains(&format!("reloaded settings after a change of {cert}")),
        "{}",
        proxy.log_tail(20)
    );
    assert_eq!(
        curl_ca(&cert, &format!("https://127.0.0.1:{port}/-/healthy")),
        (200, "OK\n".to_string())
    );
    assert!(proxy.exited().is_none(), "{}", proxy.log_tail(20));
}

/// Issue 17: plain HTTP on the TLS port is answered `400` with Go's words, not a handshake
/// failure, and the port goes on serving TLS.
#[test]
fn plain_http_on_the_tls_port_is_answered_400() {
    let dir = TempDir::new("tls-plain-http");
    let (cert, key) = key_and_cert(&dir, KeyKind::P256Sec1);
    let (mut proxy, port) = tls_proxy(&cert, &key);
    let (status, body) = curl_ca(&cert, &format!("http://127.0.0.1:{port}/-/healthy"));
    assert_eq!(
        (status, body.as_str()),
        (400, "Client sent an HTTP request to an HTTPS server.\n"),
        "{}",
        proxy.log_tail(10)
    );
    assert_eq!(
        curl_ca(&cert, &format!("https://127.0.0.1:{port}/-/healthy")),
        (200, "OK\n".to_string())
    );
    assert!(proxy.exited().is_none(), "{}", proxy.log_tail(20));
}
