//! Integration tests: the real `pushprox-client` binary against a fake proxy and a fake target,
//! both tiny servers on loopback in this process. Every wait is bounded; children are killed
//! on drop.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use pushprox_protocol::Response;
use pushprox_test_support::*;

// ---------------------------------------------------------------------------------------------
// The fake proxy's answers

fn http_response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    raw_response(status, &format!("Content-Type: {content_type}\r\n"), body)
}

/// A poll answer handing out a scrape of `url`, in proxy form.
fn scrape_answer(url: &str, id: &str, timeout: Option<&str>) -> Vec<u8> {
    scrape_answer_with(url, id, timeout, "Content-Type: text/plain\r\n")
}

/// [`scrape_answer`] with the answer's header `fields` (each line ending in CRLF).
fn scrape_answer_with(url: &str, id: &str, timeout: Option<&str>, fields: &str) -> Vec<u8> {
    let host = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let mut req = format!(
        "GET {url} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Prometheus/2.42.0\r\n\
         Accept: text/plain;version=0.0.4\r\nAccept-Encoding: gzip\r\nId: {id}\r\n"
    );
    if let Some(t) = timeout {
        req.push_str(&format!("X-Prometheus-Scrape-Timeout-Seconds: {t}\r\n"));
    }
    req.push_str("\r\n");
    raw_response(200, fields, req.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// The client process

/// The running binary; killed on drop. Its stderr is collected line by line.
struct ClientProcess {
    child: ChildGuard,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl ClientProcess {
    fn start(args: &[&str]) -> ClientProcess {
        let mut child = command(env!("CARGO_BIN_EXE_pushprox-client"))
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        ClientProcess {
            child: ChildGuard(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// A client with the usual flags for `proxy`, FQDN 127.0.0.1 and any free metrics port.
    fn for_proxy(proxy: &FakeProxy, extra: &[&str]) -> ClientProcess {
        let url = proxy.url();
        let mut args = client_flags(&url, "debug");
        args.extend_from_slice(extra);
        ClientProcess::start(&args)
    }

    /// Waits for a log line that satisfies `pred`, and returns it.
    fn wait_for_log(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return line.clone();
        }
        let until = Instant::now() + WAIT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line {what} within {WAIT:?}; stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < until,
                "the client did not exit within {WAIT:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// All of stderr, once the process has exited.
    fn stderr_after_exit(&mut self) -> String {
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// The metrics port, from the start-up log line.
    fn metrics_addr(&mut self) -> String {
        let line = self.wait_for_log("serving metrics", |l| l.contains("serving metrics on"));
        let url = line.split("http://").nth(1).unwrap();
        // logfmt: msg="serving metrics on http://ADDR/metrics"
        url.trim_end_matches('"')
            .trim_end_matches("/metrics")
            .to_string()
    }
}

/// The next push's request headers and body, skipping polls.
fn next_push_and_headers(proxy: &FakeProxy) -> (pushprox_protocol::Headers, Vec<u8>) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match proxy.next_event_within(until.saturating_duration_since(Instant::now())) {
            Some(ProxyEvent::Push { headers, body, .. }) => return (headers, body),
            Some(ProxyEvent::Poll(_)) => continue,
            None => panic!("no push reached the fake proxy within 10 s"),
        }
    }
}

fn parse_push(bytes: &[u8]) -> Response {
    Response::from_bytes(bytes, 64 * 1024, None).unwrap_or_else(|e| {
        panic!(
            "push body is not an HTTP response ({e}): {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        )
    })
}

/// The push's head as text, with the varying remaining-time value replaced by `*`.
fn push_head_text(bytes: &[u8]) -> String {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    String::from_utf8(bytes[..end].to_vec())
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("X-Prometheus-Scrape-Timeout: ") {
                "X-Prometheus-Scrape-Timeout: *".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn scrape_result_is_pushed_with_status_id_and_identical_body() {
    let body = b"# HELP up test\n# TYPE up gauge\nup 1\n";
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    let target = FakeTarget::start(response, Duration::ZERO);
    let proxy = FakeProxy::start(vec![scrape_answer(&target.url(), "id-1", Some("5"))]);
    let _client = ClientProcess::for_proxy(&proxy, &[]);

    let poll_body = proxy.next_poll().body;
    assert_eq!(poll_body, b"127.0.0.1");

    let seen = target.next_request();
    assert!(seen.starts_with("GET /metrics HTTP/1.1\r\n"), "{seen}");
    assert!(seen.contains("accept-encoding: gzip\r\n"), "{seen}");
    assert!(seen.contains("user-agent: Prometheus/2.42.0\r\n"), "{seen}");
    assert!(!seen.to_ascii_lowercase().contains("\r\nid:"), "{seen}");

    let (headers, push) = next_push_and_headers(&proxy);
    assert_eq!(
        push_head_text(&push),
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nId: id-1\r\n\
             X-Prometheus-Scrape-Timeout: *\r\nContent-Length: {}\r\n",
            body.len()
        )
    );
    // A body of known length makes a push of known length, as the Go client's.
    assert_eq!(
        headers.get("Content-Length"),
        Some(push.len().to_string().as_str())
    );
    assert_eq!(headers.get("Transfer-Encoding"), None);
    assert!(push.ends_with(body));
    assert_eq!(parse_push(&push).body, body);
}

#[test]
fn gzip_body_of_unknown_length_is_pushed_chunked_and_untouched() {
    // gzip magic, then bytes that look like framing, and enough of them for several chunks.
    let mut body = vec![0x1f, 0x8b, 0x08, 0x00, b'\r', b'\n', b'0', b'\r', b'\n', 0];
    body.extend((0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8));
    let mut response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                         Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for part in body.chunks(7000) {
        response.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        response.extend_from_slice(part);
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(b"0\r\n\r\n");
    let target = FakeTarget::start(response, Duration::ZERO);
    let proxy = FakeProxy::start(vec![scrape_answer(&target.url(), "id-gz", Some("5"))]);
    let _client = ClientProcess::for_proxy(&proxy, &[]);

    let (headers, push) = next_push_and_headers(&proxy);
    assert_eq!(
        push_head_text(&push),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Encoding: gzip\r\n\
         Id: id-gz\r\nX-Prometheus-Scrape-Timeout: *\r\nTransfer-Encoding: chunked\r\n"
    );
    // Of unknown length, the push is chunked too.
    assert_eq!(headers.get("Transfer-Encoding"), Some("chunked"));
    assert_eq!(headers.get("Content-Length"), None);
    let parsed = parse_push(&push);
    assert_eq!(parsed.head.status, 200);
    assert!(parsed.body == body, "the body changed on the way");
}

/// Polls and pushes keep their connections alive, to our proxy and to Go's alike: the proxy
/// parks a poll as its socket alone, so nothing is gained by closing it.
#[test]
fn polls_and_pushes_keep_their_connections_alive() {
    let body = b"up 1\n";
    let ok = raw_response(200, "Content-Type: text/plain\r\n", body);
    for (ours, delay) in [
        (true, Duration::from_millis(1200)),
        (true, Duration::ZERO),
        (false, Duration::from_millis(1200)),
    ] {
        let target = FakeTarget::start(ok.clone(), Duration::ZERO);
        let fields = if ours {
            "Content-Type: text/plain\r\nX-PushProx-Max-Polls: 8\r\n"
        } else {
            "Content-Type: text/plain\r\n"
        };
        let answer = scrape_answer_with(&target.url(), "id-idle", Some("5"), fields);
        let proxy = FakeProxy::start_delayed(vec![answer], delay);
        let _client = ClientProcess::for_proxy(&proxy, &[]);
        let case = format!("our proxy: {ours}, first poll answered after {delay:?}");
        let (first, push, second) = proxy.closes_of_two_polls_and_a_push();
        assert!(!first, "{case}: the first poll asked to close");
        assert!(!push, "{case}: the push asked to close");
        assert!(!second, "{case}: the second poll asked to close");
    }
}

#[test]
fn poll_answered_408_is_followed_by_an_immediate_repoll() {
    let proxy = FakeProxy::start(vec![http_response(408, "text/plain", b"superseded")]);
    // A back-off would wait 5 s: a quick second poll shows there was none.
    let _client = ClientProcess::for_proxy(&proxy, &["--proxy.retry.initial-wait", "5s"]);
    let first = proxy.next_poll().at;
    let second = proxy.next_poll().at;
    assert!(
        second - first < Duration::from_secs(1),
        "second poll came {:?} after the first",
        second - first
    );
}

#[test]
fn html_502_poll_answer_is_logged_with_status_type_and_body() {
    let page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\r\n";
    let proxy = FakeProxy::start(vec![http_response(502, "text/html", page)]);
    let mut client = ClientProcess::for_proxy(&proxy, &[]);
    // Match the status phrase, not a bare "502": timestamps contain digit runs like "735027".
    let line = client.wait_for_log("about the 502", |l| l.contains("status 502"));
    assert!(line.contains(" level=warn "), "{line}");
    assert!(line.contains("<html"), "{line}");
    assert!(line.contains("text/html"), "{line}");
    assert!(line.contains(&proxy.addr().to_string()), "{line}");
    assert!(!line.contains('\r'), "{line:?}");
}

#[test]
fn wrong_host_is_answered_with_a_500_naming_the_fqdn() {
    let proxy = FakeProxy::start(vec![scrape_answer(
        "http://other.example:9100/metrics",
        "id-host",
        Some("5"),
    )]);
    let mut client = ClientProcess::for_proxy(&proxy, &[]);
    let push = parse_push(&proxy.next_push());
    assert_eq!(push.head.status, 500);
    assert_eq!(push.head.headers.get("Id"), Some("id-host"));
    let text = String::from_utf8(push.body).unwrap();
    assert!(text.contains("other.example"), "{text}");
    assert!(text.contains("\"127.0.0.1\""), "{text}");
    assert!(text.contains("--fqdn"), "{text}");

    let metrics = http_get(&client.metrics_addr(), "/metrics");
    assert!(
        metrics.contains("pushprox_client_scrapes_total{outcome=\"refused\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pushprox_client_scrape_errors_total 1\n"),
        "{metrics}"
    );
}

#[test]
fn unreachable_target_is_answered_with_a_500() {
    // A port that was free a moment ago: nothing listens there.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let proxy = FakeProxy::start(vec![scrape_answer(&url, "id-down", Some("5"))]);
    let mut client = ClientProcess::for_proxy(&proxy, &[]);
    let push = parse_push(&proxy.next_push());
    assert_eq!(push.head.status, 500);
    assert_eq!(push.head.headers.get("Id"), Some("id-down"));
    let text = String::from_utf8(push.body).unwrap();
    assert!(text.contains(&url) && text.contains("refused"), "{text}");
    let metrics = http_get(&client.metrics_addr(), "/metrics");
    assert!(
        metrics.contains("pushprox_client_scrapes_total{outcome=\"target_error\"} 1\n"),
        "{metrics}"
    );
    // A target that is down needs the operator: WARN, not INFO.
    let line = client.wait_for_log("about the target", |l| {
        l.contains("scrape_id=id-down") && l.contains("refused")
    });
    assert!(line.contains(" level=warn "), "{line}");
}

#[test]
fn a_late_push_is_counted_apart_from_push_errors_and_logged_at_info() {
    let target = FakeTarget::start(http_response(200, "text/plain", b"up 1\n"), Duration::ZERO);
    let proxy = FakeProxy::start(vec![scrape_answer(&target.url(), "late-1", Some("5"))]);
    let mut client = ClientProcess::for_proxy(&proxy, &[]);
    let push = parse_push(&proxy.next_push());
    assert_eq!(push.head.status, 200);
    let line = client.wait_for_log("about the late push", |l| {
        l.contains("scrape_id=late-1") && l.contains("too late")
    });
    assert!(
        line.contains(" level=info ") && line.contains("too late"),
        "{line}"
    );
    let metrics = http_get(&client.metrics_addr(), "/metrics");
    for want in [
        "pushprox_client_late_pushes_total 1\n",
        "pushprox_client_push_errors_total 0\n",
    ] {
        assert!(metrics.contains(want), "{want}{metrics}");
    }
}

#[test]
fn missing_deadline_header_is_answered_with_a_500() {
    let target = FakeTarget::start(http_response(200, "text/plain", b"up 1\n"), Duration::ZERO);
    let proxy = FakeProxy::start(vec![scrape_answer(&target.url(), "id-nodl", None)]);
    let _client = ClientProcess::for_proxy(&proxy, &[]);
    let push = parse_push(&proxy.next_push());
    assert_eq!(push.head.status, 500);
    let text = String::from_utf8(push.body).unwrap();
    assert!(
        text.contains("X-Prometheus-Scrape-Timeout-Seconds"),
        "{text}"
    );
}

#[test]
fn slow_target_is_answered_with_a_500_at_the_deadline() {
    let target = FakeTarget::start(
        http_response(200, "text/plain", b"up 1\n"),
        Duration::from_secs(3),
    );
    let proxy = FakeProxy::start(vec![scrape_answer(&target.url(), "id-slow", Some("0.5"))]);
    let _client = ClientProcess::for_proxy(&proxy, &[]);
    let started = Instant::now();
    let push = parse_push(&proxy.next_push());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(push.head.status, 500);
    let text = String::from_utf8(push.body).unwrap();
    assert!(text.contains("timed out"), "{text}");
}

#[test]
fn sigterm_lets_the_scrape_in_flight_finish_and_exits_0() {
    let target = FakeTarget::start(
        http_response(200, "text/plain", b"up 1\n"),
        Duration::from_millis(1500),
    );
    let proxy = FakeProxy::start(vec![scrape_answer(&target.url(), "id-term", Some("5"))]);
    let mut client = ClientProcess::for_proxy(&proxy, &[]);
    target.next_request();
    let killed = Command::new("kill")
        .args(["-TERM", &client.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let push = parse_push(&proxy.next_push());
    assert_eq!(push.head.status, 200);
    assert_eq!(push.body, b"up 1\n");
    let status = client.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", client.stderr_after_exit());
}

#[test]
fn metrics_and_health_endpoints_answer() {
    let proxy = FakeProxy::start(vec![]);
    let mut client = ClientProcess::for_proxy(&proxy, &[]);
    let addr = client.metrics_addr();
    let health = http_get(&addr, "/-/healthy");
    assert!(
        health.starts_with("HTTP/1.0 200") && health.ends_with("\r\n\r\nOK"),
        "{health}"
    );
    let metrics = http_get(&addr, "/metrics");
    assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "pushprox_client_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );
    assert!(http_get(&addr, "/nope").starts_with("HTTP/1.0 404"));
}

#[test]
fn second_copy_with_the_same_lock_file_exits_0() {
    let dir = TempDir::new("client-it-lock");
    let lock = dir.arg("client.lock");
    let lock = lock.as_str();
    let proxy = FakeProxy::start(vec![]);
    let mut first = ClientProcess::for_proxy(&proxy, &["--lock-file", lock]);
    first.wait_for_log("at start", |l| l.contains("starting pushprox-client"));
    // From cron, every minute: quiet at the default level, and says why at debug.
    let mut second = ClientProcess::start(&[
        "--proxy-url",
        &proxy.url(),
        "--metrics-addr",
        "127.0.0.1:0",
        "--lock-file",
        lock,
    ]);
    let status = second.wait_exit();
    let stderr = second.stderr_after_exit();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr, "",
        "a copy that finds the lock held writes nothing at info"
    );
    let mut third = ClientProcess::for_proxy(&proxy, &["--lock-file", lock]);
    let status = third.wait_exit();
    let stderr = third.stderr_after_exit();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("level=debug msg=\"another pushprox-client holds --lock-file"),
        "{stderr}"
    );
    drop(first);
    let _ = std::fs::remove_file(lock);
}

#[test]
fn bad_retry_max_wait_exits_2_naming_the_flag() {
    let mut client = ClientProcess::start(&[
        "--proxy-url",
        "http://127.0.0.1:1/",
        "--proxy.retry.max-wait",
        "5",
    ]);
    let status = client.wait_exit();
    let stderr = client.stderr_after_exit();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--proxy.retry.max-wait"), "{stderr}");
    assert!(stderr.contains("15s"), "{stderr}");
}

#[test]
fn unbindable_metrics_address_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut client = ClientProcess::start(&[
        "--proxy-url",
        "http://127.0.0.1:1/",
        "--metrics-addr",
        &addr,
    ]);
    let status = client.wait_exit();
    let stderr = client.stderr_after_exit();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&addr) && stderr.contains("in use"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// TLS, with certificates and a server from the openssl command line (these tests fail without
// it: CI installs it)

/// A CA, a server certificate for 127.0.0.1, a v3 client certificate and a v1 one (which
/// rustls refuses), in a fresh directory.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn make(name: &str) -> Pki {
        let dir = TempDir::new(&format!("client-it-{name}"));
        let ca = dir.ca_files("ca.pem", "ca.key");
        let server_key = dir.key("server.key", KeyKind::P256Pkcs8);
        let server = Spec {
            usage: Some(Usage::Server),
            ..Spec::leaf("127.0.0.1", &["IP:127.0.0.1"])
        };
        dir.issue("server.pem", &server_key, Some(&ca), &server);
        let client_key = dir.key("client.key", KeyKind::P256Pkcs8);
        let client = Spec {
            usage: Some(Usage::Client),
            ..Spec::leaf("client", &[])
        };
        dir.issue("client.pem", &client_key, Some(&ca), &client);
        dir.v1("client-v1.pem", &client_key, &ca, "client");
        Pki { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.arg(file)
    }
}

/// A TLS target requiring a client certificate signed by the PKI's CA, answering `up 1`.
fn start_tls_target(pki: &Pki) -> TlsTarget {
    TlsTarget::start(
        &pki.dir.path("server.pem"),
        &pki.dir.path("server.key"),
        &pki.dir.path("ca.pem"),
        "up 1\n",
    )
}

#[test]
fn https_scrape_with_scheme_parameter_and_client_certificate() {
    let pki = Pki::make("https");
    let server = start_tls_target(&pki);
    let port = server.port;
    let url = format!("http://127.0.0.1:{port}/metrics?_scheme=https");
    let proxy = FakeProxy::start(vec![scrape_answer(&url, "id-tls", Some("5"))]);
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    let _client = ClientProcess::for_proxy(
        &proxy,
        &["--tls.cacert", &ca, "--tls.cert", &cert, "--tls.key", &key],
    );
    let push = parse_push(&proxy.next_push());
    assert_eq!(
        (
            push.head.status,
            String::from_utf8_lossy(&push.body).as_ref()
        ),
        (200, "up 1\n")
    );
}

#[test]
fn v1_client_certificate_stops_the_start_with_exit_1() {
    let pki = Pki::make("v1");
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client-v1.pem"),
        pki.path("client.key"),
    );
    let mut client = ClientProcess::start(&[
        "--proxy-url",
        "https://127.0.0.1:1/",
        "--metrics-addr",
        "127.0.0.1:0",
        "--tls.cacert",
        &ca,
        "--tls.cert",
        &cert,
        "--tls.key",
        &key,
    ]);
    let status = client.wait_exit();
    let stderr = client.stderr_after_exit();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&cert) && stderr.contains("v3"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// High availability, large bodies, the environment

#[test]
fn every_proxy_is_polled_and_each_scrape_is_pushed_to_the_proxy_that_sent_it() {
    let body = b"up 1\n";
    let target = FakeTarget::start(http_response(200, "text/plain", body), Duration::ZERO);
    let idle = FakeProxy::start(vec![]);
    let busy = FakeProxy::start(vec![scrape_answer(&target.url(), "id-ha", Some("5"))]);
    let (idle_url, busy_url) = (idle.url(), busy.url());
    let _client =
        ClientProcess::for_proxy(&idle, &["--proxy-url", &busy_url, "--proxy-url", &idle_url]);
    assert_eq!(idle.next_poll().body, b"127.0.0.1");
    let push = parse_push(&busy.next_push());
    assert_eq!((push.head.status, push.body.as_slice()), (200, &body[..]));
    assert_eq!(push.head.headers.get("Id"), Some("id-ha"));
    // The idle proxy saw one poll (held), and no push.
    assert!(idle.next_event_within(Duration::from_millis(300)).is_none());
}

/// The peak resident memory of a process, from /proc (Linux).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn large_body_is_streamed_through_with_little_memory() {
    const SIZE: usize = 100 * 1024 * 1024;
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {SIZE}\r\n\r\n"
    )
    .into_bytes();
    response.extend((0..SIZE as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8));
    let target = FakeTarget::start(response, Duration::ZERO);
    let proxy = FakeProxy::start(vec![scrape_answer(&target.url(), "id-big", Some("30"))]);
    let client = ClientProcess::for_proxy(&proxy, &[]);
    let push = proxy.next_push_within(Duration::from_secs(60));
    let peak = peak_rss_kib(client.child.id());
    let parsed = parse_push(&push);
    assert_eq!(parsed.body.len(), SIZE);
    // Compare against the generator rather than keep another 100 MiB copy.
    assert!(parsed
        .body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == ((i as u32).wrapping_mul(2_654_435_761) >> 7) as u8));
    if let Some(kib) = peak {
        assert!(
            kib < 40 * 1024,
            "the client peaked at {kib} KiB for a 100 MiB body"
        );
    }
}

#[test]
fn no_proxy_exempts_the_proxy_from_http_proxy() {
    let proxy = FakeProxy::start(vec![]);
    let url = proxy.url();
    let child = Command::new(env!("CARGO_BIN_EXE_pushprox-client"))
        .args([
            "--proxy-url",
            &url,
            "--fqdn",
            "127.0.0.1",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        // A forward proxy that does not exist: polls only arrive if NO_PROXY is honoured.
        .env("HTTP_PROXY", "http://127.0.0.1:1")
        .env("HTTPS_PROXY", "http://127.0.0.1:1")
        .env("ALL_PROXY", "http://127.0.0.1:1")
        .env("NO_PROXY", "localhost,127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _client = ChildGuard(child);
    assert_eq!(proxy.next_poll().body, b"127.0.0.1");
}

// ---------------------------------------------------------------------------------------------
// --label and --sd.target

#[test]
fn a_bad_label_name_exits_2_naming_the_flag_and_the_rule() {
    let mut client = ClientProcess::start(&[
        "--proxy-url",
        "http://127.0.0.1:1/",
        "--label",
        "__meta_x=1",
    ]);
    let status = client.wait_exit();
    let stderr = client.stderr_after_exit();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'--label <NAME=VALUE>'")
            && stderr.contains("label name \"__meta_x\" starts with \"__\"")
            && stderr.contains("[a-zA-Z_][a-zA-Z0-9_]*"),
        "{stderr}"
    );
}
