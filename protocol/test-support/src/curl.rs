//! The real `curl` as the tests' TLS client (Debian package curl).

use std::process::{Command, Stdio};

/// `curl` without the proxy variables of the environment (the tests talk to loopback, or
/// through the proxy they name with `--proxy`).
fn command() -> Command {
    let mut curl = Command::new("curl");
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
        "no_proxy",
        "NO_PROXY",
    ] {
        curl.env_remove(var);
    }
    curl.stdin(Stdio::null());
    curl
}

/// `curl -sS --max-time 10 ARGS`: status and body; (0, curl's error) when no answer came.
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = command()
        .args(["-sS", "--max-time", "10"])
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is missing: install the Debian package curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    match code.trim().parse() {
        Ok(code) if code != 0 => (code, body.to_string()),
        _ => (0, String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// The serial of the certificate served on `127.0.0.1:port` at a new handshake, without
/// checking it, as `serial=HEX` (`openssl x509 -noout -serial`'s form); `extra` are curl
/// arguments (a client certificate). Empty when no handshake completed.
pub fn served_serial(port: u16, extra: &[&str]) -> String {
    let url = format!("https://127.0.0.1:{port}/-/healthy");
    let out = command()
        .args(["-sk", "--max-time", "5", "-o", "/dev/null"])
        .args(["-w", "%{certs}"])
        .args(extra)
        .arg(&url)
        .output()
        .expect("curl is missing: install the Debian package curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Serial Number:"))
        .map(|s| format!("serial={}", s.trim().replace(':', "").to_uppercase()))
        .unwrap_or_default()
}
