//! The client's security flags against the REAL proxy binary: `--auth.token-file` with the
//! proxy's `--auth.client-tokens`, `--scrape.allow`, and `--tls.cacert` with the proxy's TLS
//! listener. The proxy is the sibling of the client binary in the same target directory: run
//! `cargo build --workspace` first. Everything listens on 127.0.0.1; every wait is bounded;
//! every process is killed on drop. Certificates are made in Rust (the test-support crate).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use pushprox_protocol::Response;
use pushprox_test_support::*;

const TARGET_BODY: &str = "# TYPE up gauge\nup{job=\"security\"} 1\n";

/// The real proxy on 127.0.0.1.
struct Proxy {
    process: Proc,
    port: u16,
}

impl Proxy {
    /// Starts it with `args`; with `tls` it is ready when it accepts a connection, else when
    /// /-/healthy answers 200.
    fn start(args: &[&str], tls: bool) -> Proxy {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec!["-l", &listen, "--log.level", "debug"];
        all.extend_from_slice(args);
        let process = Proc::spawn(&format!("proxy-{port}"), &proxy_bin(), &all);
        let mut proxy = Proxy { process, port };
        let ready = wait_until(WAIT, || {
            if tls {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            } else {
                request(
                    port,
                    "GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .starts_with(b"HTTP/1.1 200")
            }
        });
        let alive = proxy.process.exited().is_none();
        assert!(
            ready && alive,
            "the proxy did not start on {listen}:\n{}",
            proxy.process.log_text()
        );
        proxy
    }

    /// Waits until the proxy has seen a poll for `fqdn`.
    fn wait_registered(&self, fqdn: &str) {
        self.process.wait_for_line(
            "saying the client registered",
            &["client registered", &format!("fqdn={fqdn} ")],
        );
    }
}

/// The client binary, with FQDN 127.0.0.1 and a free metrics port.
fn start_client(proxy_url: &str, extra: &[&str]) -> Proc {
    let mut args = client_flags(proxy_url, "debug");
    args.extend([
        "--proxy.retry.initial-wait",
        "200ms",
        "--proxy.retry.max-wait",
        "1s",
    ]);
    args.extend_from_slice(extra);
    Proc::spawn("client", &client_bin(), &args)
}

/// A scrape as Prometheus sends it to its proxy_url: absolute form, with a deadline.
fn scrape_request(url: &str, timeout: &str) -> String {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("");
    format!(
        "GET {url} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: security-test\r\n\
         X-Prometheus-Scrape-Timeout-Seconds: {timeout}\r\nConnection: close\r\n\r\n"
    )
}

/// Scrapes `url` through the plain-http proxy on `port`.
fn scrape(port: u16, url: &str, timeout: &str) -> Response {
    parse_answer(&request(port, &scrape_request(url, timeout)))
}

fn parse_answer(bytes: &[u8]) -> Response {
    Response::from_bytes(bytes, 64 * 1024, None).unwrap_or_else(|e| {
        panic!(
            "the scrape's answer is not an HTTP response ({e}): {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
        )
    })
}

fn body_text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// A target on 127.0.0.1 that answers every request with [`TARGET_BODY`] and counts them.
struct Target {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    /// The request line and Host header of each request.
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the target");
        let addr = listener.local_addr().expect("target address");
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped, record) =
            (Arc::clone(&requests), Arc::clone(&stop), Arc::clone(&seen));
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let _ = conn.set_read_timeout(Some(WAIT));
                if let Some(head) = read_head(&mut conn) {
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let line = head.lines().next().unwrap_or("").to_string();
                    let host = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Host: ").or(l.strip_prefix("host: ")))
                        .unwrap_or("")
                        .to_string();
                    if let Ok(mut seen) = record.lock() {
                        seen.push(format!("{line} host={host}"));
                    }
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{TARGET_BODY}",
                    TARGET_BODY.len()
                );
            }
        });
        Target {
            addr,
            requests,
            seen,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

// ---------------------------------------------------------------------------------------------
// --auth.token-file

#[test]
fn right_token_file_lets_a_scrape_through_the_proxy() {
    let dir = TempDir::new("token-ok");
    let tokens = dir.write_arg(
        "client-tokens",
        "# test\n127.0.0.1 tok-right-1234\n*.example other-token\n",
    );
    // White space around the token is ignored.
    let token_file = dir.write_arg("token", "  tok-right-1234\n\n");
    let proxy = Proxy::start(&["--auth.client-tokens", &tokens], false);
    let target = Target::start();
    let client = start_client(
        &format!("http://127.0.0.1:{}/", proxy.port),
        &["--auth.token-file", &token_file],
    );
    proxy.wait_registered("127.0.0.1");

    let answer = scrape(proxy.port, &target.url(), "5");
    assert_eq!(
        (answer.head.status, body_text(&answer).as_str()),
        (200, TARGET_BODY),
        "client log:\n{}",
        client.log_text()
    );
    assert!(
        !client.log_text().contains("tok-right-1234")
            && !proxy.process.log_text().contains("tok-right-1234"),
        "a log shows the token"
    );
}

#[test]
fn wrong_token_is_logged_as_refused_and_the_scrape_gets_the_proxys_504() {
    let dir = TempDir::new("token-wrong");
    let tokens = dir.write_arg("client-tokens", "127.0.0.1 tok-right-1234\n");
    let token_file = dir.write_arg("token", "tok-WRONG-5678\n");
    let proxy = Proxy::start(&["--auth.client-tokens", &tokens], false);
    let target = Target::start();
    let client = start_client(
        &format!("http://127.0.0.1:{}/", proxy.port),
        &["--auth.token-file", &token_file],
    );
    let line = client.wait_for_line(
        "saying the proxy refused the token",
        &["refused the bearer token", "fqdn 127.0.0.1"],
    );
    assert!(
        line.contains(&format!("--auth.token-file {token_file}"))
            && line.contains("403 Forbidden")
            && line.contains("--auth.client-tokens")
            && line.contains("polling again in"),
        "{line}"
    );

    let answer = scrape(proxy.port, &target.url(), "1");
    assert_eq!(answer.head.status, 504, "{}", body_text(&answer));
    assert!(
        body_text(&answer).contains("no client polled for 127.0.0.1"),
        "{}",
        body_text(&answer)
    );
    assert_eq!(target.requests.load(Ordering::SeqCst), 0);
    let log = client.log_text();
    assert!(
        !log.contains("tok-WRONG-5678"),
        "the client log shows the token:\n{log}"
    );
    // Refusals back off like other poll errors: a handful, not a flood, in the second above.
    let refusals = log.matches("refused the bearer token").count();
    assert!((1..=20).contains(&refusals), "{refusals} refusals:\n{log}");
}

#[test]
fn client_without_a_token_is_told_which_flag_to_use() {
    let dir = TempDir::new("token-missing");
    let tokens = dir.write_arg("client-tokens", "* tok-any-1234\n");
    let proxy = Proxy::start(&["--auth.client-tokens", &tokens], false);
    let client = start_client(&format!("http://127.0.0.1:{}/", proxy.port), &[]);
    let line = client.wait_for_line(
        "saying a token is needed",
        &[
            "wants a bearer token for fqdn 127.0.0.1",
            "401 Unauthorized",
        ],
    );
    assert!(line.contains("with --auth.token-file"), "{line}");
}

#[test]
fn empty_or_missing_token_file_stops_the_start_with_exit_1() {
    let dir = TempDir::new("token-empty");
    let empty = dir.write_arg("token", " \n");
    let missing = dir.arg("no-such-token");
    for (file, why) in [(&empty, "empty"), (&missing, "No such file")] {
        let mut client = start_client("http://127.0.0.1:1/", &["--auth.token-file", file]);
        assert_eq!(
            client.wait_exit(WAIT).and_then(|s| s.code()),
            Some(1),
            "{}",
            client.log_text()
        );
        let log = client.log_text();
        assert!(
            log.contains(&format!("--auth.token-file {file}")) && log.contains(why),
            "{log}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// --scrape.allow

#[test]
fn scrape_of_a_port_not_in_scrape_allow_gets_a_403_naming_the_flag() {
    let proxy = Proxy::start(&[], false);
    let target = Target::start();
    let allowed = if target.addr.port() == 9100 {
        "9101"
    } else {
        "9100"
    };
    let mut client = start_client(
        &format!("http://127.0.0.1:{}/", proxy.port),
        &["--scrape.allow", allowed],
    );
    proxy.wait_registered("127.0.0.1");

    let answer = scrape(proxy.port, &target.url(), "5");
    let text = body_text(&answer);
    assert_eq!(answer.head.status, 403, "{text}");
    let port = target.addr.port();
    assert_eq!(
        text,
        format!(
            "scrape of {} refused: port {port} is not in --scrape.allow ({allowed}); add it there to allow it",
            target.url()
        )
    );
    assert_eq!(
        target.requests.load(Ordering::SeqCst),
        0,
        "the target was scraped"
    );
    let line = client.wait_for_line("warning of the refusal", &["--scrape.allow", "scrape_id="]);
    assert!(
        line.contains(" level=warn ") && line.contains("fqdn=127.0.0.1"),
        "{line}"
    );
    let metrics = client_metrics(&mut client);
    assert!(
        metrics.contains("pushprox_client_scrapes_total{outcome=\"refused\"} 1\n"),
        "{metrics}"
    );
}

/// The client's /metrics, from the port its start-up log names.
fn client_metrics(client: &mut Proc) -> String {
    let line = client.wait_for_line(
        "naming the metrics address",
        &["serving metrics on http://"],
    );
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.trim_end_matches('"').strip_suffix("/metrics"))
        .unwrap_or_default()
        .to_string();
    let port: u16 = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let answer = request(port, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    String::from_utf8_lossy(&answer).into_owned()
}

// ---------------------------------------------------------------------------------------------
// TLS to the proxy

/// A self-signed certificate for 127.0.0.1, `cert.pem` and `key.pem` in `dir`. CA:FALSE:
/// rustls refuses a server certificate that says it is a CA.
fn self_signed_cert(dir: &TempDir) {
    self_signed_cert_for(dir, &["IP:127.0.0.1"]);
}

/// A self-signed certificate (`cert.pem`, P-256 `key.pem` in `dir`) with the given subject
/// alternative names.
fn self_signed_cert_for(dir: &TempDir, sans: &[&str]) {
    let key = dir.key("key.pem", KeyKind::P256Pkcs8);
    dir.issue("cert.pem", &key, None, &Spec::leaf("127.0.0.1", sans));
}

/// A proxy that requires client certificates refuses a client without one at the TLS layer
/// (an alert, or with TLS 1.3 often only a broken pipe on the first write): the client's
/// warning says to give --tls.cert and --tls.key, not to fix a token.
#[test]
fn a_proxy_requiring_client_certificates_gets_a_hint_naming_tls_cert() {
    let dir = TempDir::new("tls-client-cert-required");
    self_signed_cert(&dir);
    let cert = dir.arg("cert.pem");
    let web = dir.write_arg(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {cert}\n",
            dir.arg("key.pem")
        ),
    );
    let proxy = Proxy::start(&["--web.config.file", &web], true);
    let client = start_client(
        &format!("https://127.0.0.1:{}/", proxy.port),
        &["--tls.cacert", &cert],
    );
    let line = client.wait_for_line(
        "warning of the refused poll",
        &["poll of https://", "failed"],
    );
    assert!(
        line.contains(" level=warn ") && line.contains("--tls.cert and --tls.key"),
        "{line}"
    );
    assert!(!line.contains("--auth."), "{line}");
}

#[test]
fn client_reaches_the_proxys_tls_listener_with_tls_cacert() {
    let dir = TempDir::new("tls");
    self_signed_cert(&dir);
    let (cert, key) = (dir.arg("cert.pem"), dir.arg("key.pem"));
    let tokens = dir.write_arg("client-tokens", "127.0.0.1 tok-tls-1234\n");
    let token_file = dir.write_arg("token", "tok-tls-1234\n");
    let proxy = Proxy::start(
        &[
            "--tls.cert",
            &cert,
            "--tls.key",
            &key,
            "--auth.client-tokens",
            &tokens,
        ],
        true,
    );
    let target = Target::start();
    let client = start_client(
        &format!("https://127.0.0.1:{}/", proxy.port),
        &["--tls.cacert", &cert, "--auth.token-file", &token_file],
    );
    proxy.wait_registered("127.0.0.1");
    assert!(
        !client.log_text().contains("over plain http"),
        "{}",
        client.log_text()
    );

    // Prometheus with proxy_url: https://...: the scrape goes over TLS too.
    let proxy_url = format!("https://127.0.0.1:{}", proxy.port);
    let answer = curl(&[
        "--proxy",
        &proxy_url,
        "--proxy-cacert",
        &cert,
        "-H",
        "X-Prometheus-Scrape-Timeout-Seconds: 5",
        &target.url(),
    ]);
    assert_eq!(
        (answer.0, answer.1.as_str()),
        (200, TARGET_BODY),
        "client log:\n{}",
        client.log_text()
    );
}

// ---------------------------------------------------------------------------------------------
// Never leaving the allowed target

/// A target that answers every request with a `302` to `location`.
fn redirecting_target(location: String) -> Server {
    Server::start(Arc::new(AtomicBool::new(false)), move |mut conn| {
        let _ = conn.set_read_timeout(Some(WAIT));
        if read_head(&mut conn).is_some() {
            let _ = write!(
                conn,
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            );
        }
    })
}

#[test]
fn a_targets_redirect_goes_back_to_the_scraper_and_is_never_followed() {
    let proxy = Proxy::start(&[], false);
    let elsewhere = Target::start();
    let redirecting = redirecting_target(elsewhere.url());
    let _client = start_client(
        &format!("http://127.0.0.1:{}/", proxy.port),
        &["--scrape.allow", &redirecting.addr.port().to_string()],
    );
    proxy.wait_registered("127.0.0.1");

    let answer = scrape(
        proxy.port,
        &format!("http://{}/metrics", redirecting.addr),
        "5",
    );
    assert_eq!(answer.head.status, 302, "{}", body_text(&answer));
    assert_eq!(
        answer.head.headers.get("Location"),
        Some(elsewhere.url().as_str())
    );
    // The scrape is over, so a followed redirect would have reached the other port by now.
    assert_eq!(
        elsewhere.requests.load(Ordering::SeqCst),
        0,
        "the client followed the redirect to a port outside --scrape.allow"
    );
}

#[test]
fn a_scrape_url_with_a_password_is_refused_with_400_and_the_password_never_logged() {
    let proxy = Proxy::start(&[], false);
    let target = Target::start();
    let client = start_client(&format!("http://127.0.0.1:{}/", proxy.port), &[]);
    proxy.wait_registered("127.0.0.1");

    let url = format!("http://scraper:s3cr3t@{}/metrics", target.addr);
    let answer = scrape(proxy.port, &url, "5");
    let text = body_text(&answer);
    assert_eq!(answer.head.status, 400, "{text}");
    assert!(text.contains("user name or password"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
    assert_eq!(
        target.requests.load(Ordering::SeqCst),
        0,
        "the target was scraped"
    );
    client.wait_for_line("warning of the refusal", &["user name or password"]);
    assert!(
        !client.log_text().contains("s3cr3t"),
        "the client logged the password:\n{}",
        client.log_text()
    );
}

// ---------------------------------------------------------------------------------------------
// --scrape.target-host

/// The client binary with `--fqdn fqdn` and `extra`.
fn start_client_for(name: &str, proxy_url: &str, fqdn: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "--proxy-url",
        proxy_url,
        "--fqdn",
        fqdn,
        "--metrics-addr",
        "127.0.0.1:0",
        "--log.level",
        "debug",
        "--proxy.retry.initial-wait",
        "200ms",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(name, &client_bin(), &args)
}

#[test]
fn scrape_target_host_connects_there_for_an_fqdn_that_does_not_resolve() {
    let proxy = Proxy::start(&[], false);
    let target = Target::start();
    let proxy_url = format!("http://127.0.0.1:{}/", proxy.port);
    let url = format!(
        "http://nothing.invalid:{}/metrics?module=x&a=1",
        target.addr.port()
    );

    // Without the flag the client tries to resolve nothing.invalid, and fails.
    let without = start_client_for("without.log", &proxy_url, "nothing.invalid", &[]);
    proxy.wait_registered("nothing.invalid");
    let answer = scrape(proxy.port, &url, "5");
    let text = body_text(&answer);
    assert_eq!(answer.head.status, 500, "{text}");
    assert!(
        text.starts_with(&format!("scrape of {url} failed: ")),
        "{text}"
    );
    assert_eq!(target.requests.load(Ordering::SeqCst), 0);
    drop(without);

    let with = start_client_for(
        "with.log",
        &proxy_url,
        "nothing.invalid",
        &["--scrape.target-host", "127.0.0.1"],
    );
    let line = with.wait_for_line("saying how targets are written", &["msg=\"serving:"]);
    let (_, after_ts) = line.split_once(' ').unwrap_or_default();
    assert_eq!(
        after_ts,
        format!(
            "level=info msg=\"serving: Prometheus targets must be written \
             nothing.invalid:PORT, with proxy_url http://127.0.0.1:{}/; scrapes connect to \
             127.0.0.1 (--scrape.target-host)\" fqdn=nothing.invalid",
            proxy.port
        )
    );
    // The newer client's polls supersede the stopped one's.
    let ok = wait_until(WAIT, || {
        let answer = scrape(proxy.port, &url, "5");
        answer.head.status == 200
    });
    assert!(ok, "no scrape through the new client:\n{}", with.log_text());
    let answer = scrape(proxy.port, &url, "5");
    assert_eq!(
        (answer.head.status, body_text(&answer).as_str()),
        (200, TARGET_BODY),
        "client log:\n{}",
        with.log_text()
    );
    let seen = target.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let port = target.addr.port();
    assert!(!seen.is_empty());
    for request in &seen {
        assert_eq!(
            request,
            &format!("GET /metrics?module=x&a=1 HTTP/1.1 host=nothing.invalid:{port}")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// https targets with a self-signed certificate: --scrape.tls.insecure-skip-verify and
// --scrape.tls.cacert

const NGINX_BODY: &str = "# TYPE up gauge\nup{job=\"nginx-self-signed\"} 1\n";

/// Debian's nginx serving NGINX_BODY over https on a free 127.0.0.1 port, with a self-signed
/// certificate made by openssl (`cert.pem` in `dir`) for the FQDNs the test's clients serve,
/// not for 127.0.0.1 where they connect: `--scrape.target-host` keeps the TLS name the FQDN's.
/// Killed by PID on drop.
struct Nginx {
    _process: Proc,
    port: u16,
}

impl Nginx {
    fn start(dir: &TempDir) -> Nginx {
        self_signed_cert_for(
            dir,
            &[
                "DNS:plain.invalid",
                "DNS:insecure.invalid",
                "DNS:cacert.invalid",
            ],
        );
        let port = free_port();
        let d = dir.0.display();
        std::fs::create_dir_all(dir.0.join("temp")).expect("nginx temp dir");
        let conf = dir.write_arg(
            "nginx.conf",
            &format!(
                "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/temp/body;\n\
                   proxy_temp_path {d}/temp/proxy;\n  fastcgi_temp_path {d}/temp/fastcgi;\n\
                   uwsgi_temp_path {d}/temp/uwsgi;\n  scgi_temp_path {d}/temp/scgi;\n\
                   server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {d}/cert.pem;\n\
                     ssl_certificate_key {d}/key.pem;\n\
                     location = /metrics {{ default_type \"text/plain; version=0.0.4\"; return 200 \"{}\"; }}\n\
                     location / {{ return 404; }}\n  }}\n}}\n",
                NGINX_BODY.replace('\n', "\\n").replace('"', "\\\"")
            ),
        );
        let nginx = Path::new("/usr/sbin/nginx");
        assert!(
            nginx.exists(),
            "this test needs Debian's nginx (apt-get install nginx)"
        );
        let process = Proc::spawn(
            "nginx",
            nginx,
            &["-c", &conf, "-p", &dir.arg(""), "-e", &dir.arg("error.log")],
        );
        let mut nginx = Nginx {
            _process: process,
            port,
        };
        let up = wait_until(WAIT, || TcpStream::connect(("127.0.0.1", port)).is_ok());
        let alive = nginx._process.exited().is_none();
        assert!(
            up && alive,
            "nginx did not listen on 127.0.0.1:{port}: {}{}",
            nginx._process.log_text(),
            std::fs::read_to_string(dir.0.join("error.log")).unwrap_or_default()
        );
        nginx
    }
}

#[test]
fn https_target_with_a_self_signed_certificate_is_refused_unless_a_scrape_tls_flag_allows_it() {
    let dir = TempDir::new("nginx-self-signed");
    let proxy = Proxy::start(&[], false);
    let nginx = Nginx::start(&dir);
    let proxy_url = format!("http://127.0.0.1:{}/", proxy.port);
    let cert = dir.arg("cert.pem");
    // One client per case, each with an FQDN of its own, named in the certificate; all connect
    // to 127.0.0.1, which is not.
    let cases: [(&str, Vec<&str>); 3] = [
        ("plain.invalid", vec![]),
        (
            "insecure.invalid",
            vec!["--scrape.tls.insecure-skip-verify"],
        ),
        ("cacert.invalid", vec!["--scrape.tls.cacert", &cert]),
    ];
    let clients: Vec<Proc> = cases
        .iter()
        .map(|(fqdn, flags)| {
            let mut extra = vec!["--scrape.target-host", "127.0.0.1"];
            extra.extend(flags.iter().copied());
            start_client_for(&format!("{fqdn}.log"), &proxy_url, fqdn, &extra)
        })
        .collect();
    for (fqdn, _) in &cases {
        proxy.wait_registered(fqdn);
    }
    let url = |fqdn: &str| format!("http://{fqdn}:{}/metrics?_scheme=https", nginx.port);

    let refused = scrape(proxy.port, &url("plain.invalid"), "5");
    let text = body_text(&refused);
    assert_eq!(refused.head.status, 500, "{text}");
    let prefix = format!(
        "scrape of https://plain.invalid:{}/metrics failed: io: invalid peer certificate: UnknownIssuer; \
         the target's certificate is not signed by a CA ",
        nginx.port
    );
    assert!(text.starts_with(&prefix), "{text}");
    let logged = clients[0].wait_for_line("logging the refusal", &["scrape_id=", "UnknownIssuer"]);
    assert!(logged.contains(&prefix), "{logged}");

    let insecure = scrape(proxy.port, &url("insecure.invalid"), "5");
    assert_eq!(
        (insecure.head.status, body_text(&insecure).as_str()),
        (200, NGINX_BODY),
        "client log:\n{}",
        clients[1].log_text()
    );
    let warning = clients[1].wait_for_line(
        "warning of the flag",
        &["--scrape.tls.insecure-skip-verify"],
    );
    assert!(warning.contains(" level=warn "), "{warning}");

    let trusted = scrape(proxy.port, &url("cacert.invalid"), "5");
    assert_eq!(
        (trusted.head.status, body_text(&trusted).as_str()),
        (200, NGINX_BODY),
        "client log:\n{}",
        clients[2].log_text()
    );
    assert!(
        !clients[2].log_text().contains("insecure-skip-verify"),
        "{}",
        clients[2].log_text()
    );
}
