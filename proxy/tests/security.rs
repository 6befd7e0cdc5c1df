//! The proxy's security flags on the real binary: TLS, client tokens, scrape users, size
//! limits and connection time-outs. Raw TCP requests, and curl for TLS.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pushprox_test_support::{curl, free_port, wait_until, KeyKind, Proxy, Spec, TempDir};

const TOKENS: &str = "# test clients\na.example tok-a\n*.b.example tok-b\n";

/// An answer read off a raw connection.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

fn parse_reply(bytes: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (text[..i].to_string(), bytes[i + 4..].to_vec()),
        None => (text.to_string(), Vec::new()),
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply { status, head, body }
}

/// Sends `request` and reads until the proxy closes, or 10 s.
fn raw(port: u16, request: &[u8]) -> Reply {
    raw_within(port, request, Duration::from_secs(10))
}

fn raw_within(port: u16, request: &[u8], within: Duration) -> Reply {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return parse_reply(b"");
    };
    let _ = stream.set_read_timeout(Some(within));
    let _ = stream.write_all(request);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    parse_reply(&out)
}

fn poll_request(fqdn: &str, auth: Option<&str>) -> Vec<u8> {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!(
        "POST /poll HTTP/1.1\r\nHost: proxy\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{fqdn}",
        fqdn.len()
    )
    .into_bytes()
}

fn push_request(id: &str, auth: Option<&str>, body: &str) -> Vec<u8> {
    let pushed = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nId: {id}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!(
        "POST /push HTTP/1.1\r\nHost: proxy\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{pushed}",
        pushed.len()
    )
    .into_bytes()
}

fn scrape_request(fqdn: &str, proxy_auth: Option<&str>) -> Vec<u8> {
    let auth = proxy_auth.map_or(String::new(), |a| format!("Proxy-Authorization: {a}\r\n"));
    format!(
        "GET http://{fqdn}:9100/metrics HTTP/1.1\r\nHost: {fqdn}:9100\r\n{auth}X-Prometheus-Scrape-Timeout-Seconds: 5\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The Id header of a scrape request handed to a poll.
fn scrape_id(poll: &Reply) -> String {
    poll.text()
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("id").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Id in poll answer {poll:?}"))
}

/// Holds a poll of `fqdn` with `auth` in a thread; returns it once the proxy counts it.
fn held_poll(proxy: &Proxy, fqdn: &str, auth: &str) -> thread::JoinHandle<Reply> {
    let before = proxy.metric("pushprox_polls_waiting").unwrap_or(0.0);
    let request = poll_request(fqdn, Some(auth));
    let port = proxy.port;
    let handle = thread::spawn(move || raw(port, &request));
    assert!(
        wait_until(Duration::from_secs(5), || {
            proxy.metric("pushprox_polls_waiting").unwrap_or(0.0) > before
        }),
        "poll of {fqdn} not held"
    );
    handle
}

/// A scrape of `fqdn` in a thread, and the Id its poll received.
fn scrape_through(proxy: &Proxy, fqdn: &str, token: &str) -> (thread::JoinHandle<Reply>, String) {
    let poll = held_poll(proxy, fqdn, token);
    let port = proxy.port;
    let request = scrape_request(fqdn, None);
    let scrape = thread::spawn(move || raw(port, &request));
    let poll = poll.join().expect("poll thread");
    assert_eq!(poll.status, 200, "{poll:?}");
    let id = scrape_id(&poll);
    (scrape, id)
}

#[test]
fn polls_without_or_with_a_wrong_token_are_refused_and_the_right_one_works() {
    let dir = TempDir::new("tokens");
    let tokens = dir.write_arg("tokens", TOKENS);
    let proxy = Proxy::start(&["--auth.client-tokens", &tokens]);

    let missing = raw(proxy.port, &poll_request("a.example", None));
    assert_eq!(missing.status, 401, "{missing:?}");
    assert_eq!(
        missing.header("WWW-Authenticate").as_deref(),
        Some("Bearer realm=\"pushprox\"")
    );
    assert!(missing.text().contains("Bearer"), "{missing:?}");

    let wrong = raw(
        proxy.port,
        &poll_request("a.example", Some("Bearer guess-me")),
    );
    assert_eq!(wrong.status, 403, "{wrong:?}");
    assert!(
        !wrong.text().contains("guess-me"),
        "token echoed: {wrong:?}"
    );
    assert_eq!(wrong.text().lines().count(), 1, "{wrong:?}");

    // A valid token of another FQDN may not register this one.
    let other = raw(proxy.port, &poll_request("a.example", Some("Bearer tok-b")));
    assert_eq!(other.status, 403, "{other:?}");
    assert!(!other.text().contains("tok-b"));

    // The right token: the poll is held, gets the scrape, and the push is relayed.
    let (scrape, id) = scrape_through(&proxy, "a.example", "Bearer tok-a");
    let push = raw(
        proxy.port,
        &push_request(&id, Some("Bearer tok-a"), "up 1\n"),
    );
    assert_eq!(push.status, 200, "{push:?}");
    let scraped = scrape.join().expect("scrape thread");
    assert_eq!((scraped.status, scraped.text().as_str()), (200, "up 1\n"));
    // A wildcard token works for a name under it.
    let (scrape, id) = scrape_through(&proxy, "host.b.example", "Bearer tok-b");
    let push = raw(proxy.port, &push_request(&id, Some("Bearer tok-b"), "b\n"));
    assert_eq!(push.status, 200, "{push:?}");
    assert_eq!(scrape.join().expect("scrape").status, 200);

    assert_eq!(
        proxy.metric("pushprox_auth_failures_total{reason=\"client_token_missing\"}"),
        Some(1.0)
    );
    assert_eq!(
        proxy.metric("pushprox_auth_failures_total{reason=\"client_token_wrong\"}"),
        Some(2.0)
    );
    assert!(!proxy.log_text().contains("guess-me"), "token in the log");
}

#[test]
fn push_with_the_token_of_another_fqdn_is_refused_even_with_a_valid_id() {
    let dir = TempDir::new("push");
    let tokens = dir.write_arg("tokens", TOKENS);
    let proxy = Proxy::start(&["--auth.client-tokens", &tokens]);
    let (scrape, id) = scrape_through(&proxy, "a.example", "Bearer tok-a");

    let missing = raw(proxy.port, &push_request(&id, None, "forged\n"));
    assert_eq!(missing.status, 401, "{missing:?}");
    assert_eq!(
        missing.header("WWW-Authenticate").as_deref(),
        Some("Bearer realm=\"pushprox\"")
    );
    let wrong = raw(
        proxy.port,
        &push_request(&id, Some("Bearer nope"), "forged\n"),
    );
    assert_eq!(wrong.status, 403, "{wrong:?}");
    let other = raw(
        proxy.port,
        &push_request(&id, Some("Bearer tok-b"), "forged\n"),
    );
    assert_eq!(other.status, 403, "{other:?}");
    assert!(other.text().contains("a.example"), "{other:?}");
    assert!(other.text().contains(&id), "{other:?}");

    // The scrape still waits for its own client.
    let push = raw(
        proxy.port,
        &push_request(&id, Some("Bearer tok-a"), "real\n"),
    );
    assert_eq!(push.status, 200, "{push:?}");
    let scraped = scrape.join().expect("scrape thread");
    assert_eq!((scraped.status, scraped.text().as_str()), (200, "real\n"));
}

fn users_file(dir: &TempDir) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushprox-proxy"))
        .args(["--hash-password", "prom"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run --hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret pw\n")
        .expect("write password");
    let out = child.wait_with_output().expect("--hash-password output");
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8(out.stdout).expect("utf-8");
    // bcrypt at cost 10, as `htpasswd -nBC 10 prom` prints it.
    assert!(line.starts_with("prom:$2y$10$"), "{line}");
    assert_eq!(line.trim_end().len(), "prom:".len() + 60, "{line}");
    assert!(!line.contains("s3cret"), "{line}");
    dir.write_arg("users", &format!("# scrapers\n{line}"))
}

/// A scrape refused before it reaches the scrape handler (for its credentials, or for a body
/// a scrape never has) is counted by the status written, like every scrape (issue 19).
#[test]
fn refused_scrapes_are_counted_by_the_status_written() {
    let dir = TempDir::new("users");
    let users = users_file(&dir);
    let proxy = Proxy::start(&["--auth.scrape-users", &users]);
    let counted = |code: u16| {
        proxy
            .metric(&format!(
                "pushproxy_proxied_requests_total{{code=\"{code}\"}}"
            ))
            .unwrap_or(0.0)
    };
    assert_eq!(counted(407), 0.0);
    for _ in 0..2 {
        let missing = raw(proxy.port, &scrape_request("nobody.example", None));
        assert_eq!(missing.status, 407, "{missing:?}");
    }
    let oversized = b"GET http://nobody.example:9100/metrics HTTP/1.1\r\nHost: nobody.example:9100\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n";
    let refused = raw(proxy.port, oversized);
    assert_eq!(refused.status, 413, "{refused:?}");
    assert_eq!(counted(407), 2.0, "{}", proxy.log_text());
    assert_eq!(counted(413), 1.0, "{}", proxy.log_text());
    // Not in the API's counter, which is for the proxy's own endpoints.
    assert_eq!(
        proxy.metric("pushprox_http_requests_total{code=\"407\",path=\"other\"}"),
        None
    );
}

#[test]
fn scrapes_need_proxy_credentials() {
    let dir = TempDir::new("users");
    let users = users_file(&dir);
    let proxy = Proxy::start(&[
        "--auth.scrape-users",
        &users,
        "--scrape.default-timeout",
        "1s",
    ]);
    let missing = raw(proxy.port, &scrape_request("nobody.example", None));
    assert_eq!(missing.status, 407, "{missing:?}");
    assert_eq!(
        missing.header("Proxy-Authenticate").as_deref(),
        Some("Basic realm=\"pushprox\"")
    );
    let wrong = format!("Basic {}", STANDARD.encode(b"prom:bad-guess-42"));
    let refused = raw(proxy.port, &scrape_request("nobody.example", Some(&wrong)));
    assert_eq!(refused.status, 407, "{refused:?}");
    assert!(!refused.text().contains("bad-guess-42"), "{refused:?}");

    // Good credentials get past the check and end where any scrape of an absent client does.
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let (code, body) = curl(&[
        "-x",
        &proxy_url,
        "-U",
        "prom:s3cret pw",
        "http://nobody.example:9100/metrics",
    ]);
    assert_eq!(code, 504, "{body}");
    assert!(
        body.contains("no client polled for nobody.example"),
        "{body}"
    );
    // The API stays open without --auth.protect-api.
    let clients = raw(
        proxy.port,
        b"GET /clients HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(clients.status, 200);
    assert_eq!(
        proxy.metric("pushprox_auth_failures_total{reason=\"scrape_credentials_missing\"}"),
        Some(1.0)
    );
    assert_eq!(
        proxy.metric("pushprox_auth_failures_total{reason=\"scrape_credentials_wrong\"}"),
        Some(1.0)
    );
}

#[test]
fn protect_api_needs_a_scrape_user_except_for_health() {
    let dir = TempDir::new("api");
    let users = users_file(&dir);
    let port_probe = Proxy::start(&["--auth.scrape-users", &users, "--auth.protect-api"]);
    let port = port_probe.port;
    for path in ["/clients", "/metrics", "/"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let refused = raw(port, request.as_bytes());
        assert_eq!(refused.status, 401, "{path}: {refused:?}");
        assert_eq!(
            refused.header("WWW-Authenticate").as_deref(),
            Some("Basic realm=\"pushprox\""),
            "{path}"
        );
        let url = format!("http://127.0.0.1:{port}{path}");
        let (code, _) = curl(&["-u", "prom:s3cret pw", &url]);
        assert_eq!(code, 200, "{path}");
        let (code, _) = curl(&["-u", "prom:nope", &url]);
        assert_eq!(code, 401, "{path}");
    }
    let healthy = raw(
        port,
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(healthy.status, 200);
}

/// Issue 19: `--auth.scrape-users` is followed like the web config (it never reloaded): a
/// user written over the file logs in without a restart, the one removed no longer does, and
/// a successful login cached before the change does not outlive it.
#[test]
fn the_scrape_users_file_is_reread() {
    let dir = TempDir::new("users-reload");
    let users = users_file(&dir);
    let proxy = Proxy::start(&["--auth.scrape-users", &users, "--auth.protect-api"]);
    let url = format!("http://127.0.0.1:{}/clients", proxy.port);
    assert_eq!(curl(&["-u", "prom:s3cret pw", &url]).0, 200);
    // Another user in place of prom (a hash of the same password, under another name),
    // written beside and renamed over, as an editor or a configuration tool does.
    let other_dir = TempDir::new("users-other");
    let other = std::fs::read_to_string(users_file(&other_dir)).expect("read the other file");
    let other = other.replace("prom:", "second:");
    let next = dir.write_arg("users.new", &other);
    std::fs::rename(&next, &users).expect("replace the users file");
    let reloaded = wait_until(Duration::from_secs(15), || {
        curl(&["-u", "second:s3cret pw", &url]).0 == 200
    });
    assert!(reloaded, "{}", proxy.log_text());
    assert_eq!(
        curl(&["-u", "prom:s3cret pw", &url]).0,
        401,
        "the removed user"
    );
    assert!(
        proxy
            .log_text()
            .contains(&format!("reloaded settings after a change of {users}")),
        "{}",
        proxy.log_text()
    );
}

#[test]
fn tls_listener_serves_https_with_a_generated_certificate() {
    let dir = TempDir::new("tls");
    let key = dir.key("key.pem", KeyKind::RsaPkcs8);
    let cert = dir.issue(
        "cert.pem",
        &key,
        None,
        &Spec::ca("localhost", &["IP:127.0.0.1"]),
    );
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let proxy = Proxy::start(&["--tls.cert", &cert_s, "--tls.key", &key_s]);
    let url = format!("https://127.0.0.1:{}/-/healthy", proxy.port);
    let ok = wait_until(Duration::from_secs(5), || {
        curl(&["--cacert", &cert_s, &url]) == (200, "OK\n".to_string())
    });
    assert!(ok, "{:?}", curl(&["--cacert", &cert_s, &url]));
    let clients = format!("https://127.0.0.1:{}/clients", proxy.port);
    assert_eq!(curl(&["--cacert", &cert_s, &clients]), (200, "[]\n".into()));
    assert!(
        proxy.log_text().contains("scheme=https"),
        "{}",
        proxy.log_text()
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = raw_within(
        proxy.port,
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    );
    assert_ne!(plain.status, 200);
}

fn exit_of(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pushprox-proxy"))
        .args(["-l", &format!("127.0.0.1:{}", free_port())])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run pushprox-proxy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_security_files_exit_1_naming_the_file() {
    let dir = TempDir::new("bad");
    let garbage = dir.write_arg("garbage.pem", "not a pem file\n");
    let missing = dir.0.join("missing.pem").display().to_string();
    let (code, err) = exit_of(&["--tls.cert", &missing, "--tls.key", &garbage]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("missing.pem"), "{err}");
    let (code, err) = exit_of(&["--tls.cert", &garbage, "--tls.key", &garbage]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("garbage.pem") && err.contains("--tls.cert"),
        "{err}"
    );
    let (code, err) = exit_of(&["--tls.cert", &garbage]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--tls.key"), "{err}");
    let tokens = dir.write_arg("tokens", "a.example secret-token extra\n");
    let (code, err) = exit_of(&["--auth.client-tokens", &tokens]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("tokens") && err.contains("line 1"), "{err}");
    assert!(!err.contains("secret-token"), "{err}");
    let (code, err) = exit_of(&["--auth.scrape-users", &missing]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("missing.pem"), "{err}");
}

#[test]
fn oversized_push_gets_413_and_its_scraper_502() {
    let dir = TempDir::new("size");
    let tokens = dir.write_arg("tokens", TOKENS);
    let proxy = Proxy::start(&["--auth.client-tokens", &tokens, "--push.max-body", "1KiB"]);
    let (scrape, id) = scrape_through(&proxy, "a.example", "Bearer tok-a");
    let push = raw(
        proxy.port,
        &push_request(&id, Some("Bearer tok-a"), &"x".repeat(4096)),
    );
    assert_eq!(push.status, 413, "{push:?}");
    assert!(push.text().contains("--push.max-body"), "{push:?}");
    let scraped = scrape.join().expect("scrape thread");
    assert_eq!(scraped.status, 502, "{scraped:?}");
    assert!(scraped.text().contains("--push.max-body"), "{scraped:?}");
}

#[test]
fn push_head_over_the_limit_gets_431() {
    let proxy = Proxy::start(&[]);
    let pushed = format!(
        "HTTP/1.1 200 OK\r\nId: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let request = format!(
        "POST /push HTTP/1.1\r\nHost: proxy\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{pushed}",
        pushed.len()
    );
    let reply = raw(proxy.port, request.as_bytes());
    assert_eq!(reply.status, 431, "{reply:?}");
}

#[test]
fn huge_declared_body_is_refused_and_the_proxy_lives() {
    let mut proxy = Proxy::start(&[]);
    for path in ["/clients", "/push", "/poll"] {
        let method = if path == "/clients" { "GET" } else { "POST" };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999\r\n\r\nabc"
        );
        let reply = raw_within(proxy.port, request.as_bytes(), Duration::from_secs(2));
        assert_eq!(reply.status, 413, "{path}: {reply:?}");
    }
    thread::sleep(Duration::from_millis(300));
    assert!(proxy.alive(), "proxy died: {}", proxy.log_text());
    let healthy = raw(
        proxy.port,
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(healthy.status, 200);
}

#[test]
fn half_sent_heads_are_closed_after_the_read_timeout_and_threads_return() {
    const CONNECTIONS: usize = 12;
    let proxy = Proxy::start(&["--web.read-timeout", "2s"]);
    thread::sleep(Duration::from_millis(300));
    let baseline = proxy.threads();
    let started = Instant::now();
    let mut conns: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
            s.write_all(b"GET /clients HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .expect("half a head");
            s.set_read_timeout(Some(Duration::from_secs(15)))
                .expect("timeout");
            s
        })
        .collect();
    let mut peak = baseline;
    assert!(
        wait_until(Duration::from_secs(2), || {
            peak = peak.max(proxy.threads());
            peak > baseline
        }),
        "threads did not grow: {peak} from {baseline}"
    );
    for c in conns.iter_mut() {
        // The proxy answers 408 and closes it.
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 408 Request Timeout\r\n")
                && answer.contains("--web.read-timeout"),
            "unexpected answer {answer:?}"
        );
    }
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(1900) && closed_after < Duration::from_secs(4),
        "closed after {closed_after:?}"
    );
    for c in &conns {
        let _ = c.shutdown(Shutdown::Both);
    }
    // Pooled connection threads end 2 s after their last work.
    let retained = 0;
    let mut now = peak;
    let settled = wait_until(Duration::from_secs(15), || {
        now = proxy.threads();
        now <= baseline + retained
    });
    assert!(
        settled,
        "threads {now} did not come back from {peak} to {baseline} (+{retained})"
    );
}

#[test]
fn held_poll_outlives_the_read_timeout() {
    let dir = TempDir::new("hold");
    let tokens = dir.write_arg("tokens", TOKENS);
    let proxy = Proxy::start(&["--auth.client-tokens", &tokens, "--web.read-timeout", "1s"]);
    let poll = held_poll(&proxy, "a.example", "Bearer tok-a");
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(proxy.metric("pushprox_polls_waiting"), Some(1.0));
    let port = proxy.port;
    let scrape = thread::spawn(move || raw(port, &scrape_request("a.example", None)));
    let poll = poll.join().expect("poll thread");
    assert_eq!(poll.status, 200, "{poll:?}");
    let id = scrape_id(&poll);
    let push = raw(
        proxy.port,
        &push_request(&id, Some("Bearer tok-a"), "late\n"),
    );
    assert_eq!(push.status, 200);
    assert_eq!(scrape.join().expect("scrape").text(), "late\n");
}

#[test]
fn requests_beyond_max_connections_get_503() {
    let proxy = Proxy::start(&["--web.max-connections", "2"]);
    let port = proxy.port;
    // A request answered a moment ago may still count against the limit for a few
    // microseconds (the readiness probe, a metrics read): a refused poll tries again.
    let first = thread::spawn(move || loop {
        let reply = raw_within(
            port,
            &poll_request("a.example", None),
            Duration::from_secs(15),
        );
        if reply.status != 503 {
            return reply;
        }
        thread::sleep(Duration::from_millis(20));
    });
    assert!(
        wait_until(Duration::from_secs(5), || {
            proxy.metric("pushprox_polls_waiting") == Some(1.0)
        }),
        "the first poll was not parked: {}",
        proxy.log_text()
    );
    // The second poll takes the last slot (it may itself be refused while a probe below
    // holds that slot: then it tries again).
    let second = thread::spawn(move || loop {
        let request = poll_request("b.example", None);
        let reply = raw_within(port, &request, Duration::from_secs(15));
        if reply.status != 503 {
            return reply;
        }
    });
    let mut last = None;
    let refused = wait_until(Duration::from_secs(10), || {
        let reply = raw(
            port,
            b"GET /clients HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let is_503 = reply.status == 503;
        last = Some(reply);
        is_503
    });
    assert!(refused, "{last:?}");
    assert!(last
        .expect("reply")
        .text()
        .contains("--web.max-connections"));
    drop((first, second));
}

#[test]
fn defaults_need_no_credentials() {
    let proxy = Proxy::start(&[]);
    let (scrape, id) = scrape_through(&proxy, "open.example", "Bearer ignored");
    let push = raw(proxy.port, &push_request(&id, None, "open\n"));
    assert_eq!(push.status, 200, "{push:?}");
    assert_eq!(scrape.join().expect("scrape").text(), "open\n");
    assert!(
        proxy.log_text().contains("scheme=http "),
        "{}",
        proxy.log_text()
    );
}

#[test]
fn proxy_keeps_accepting_after_idling_longer_than_the_read_timeout() {
    // SO_RCVTIMEO on the listener also bounds accept(); the proxy must not stop accepting.
    let proxy = Proxy::start(&["--web.read-timeout", "1s"]);
    thread::sleep(Duration::from_millis(3500));
    let healthy = raw(
        proxy.port,
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(healthy.status, 200, "{}", proxy.log_text());
    assert!(!proxy.log_text().contains("accepting connections failed"));
}

/// The status of a poll for a.example with `token`; 0 when it is parked (no answer within
/// 700 ms), which is what an accepted poll without a scrape does.
fn poll_status(proxy: &Proxy, token: &str) -> u16 {
    let request = poll_request("a.example", Some(&format!("Bearer {token}")));
    raw_within(proxy.port, &request, Duration::from_millis(700)).status
}

#[test]
fn the_token_file_is_reread_and_a_broken_version_is_not_used() {
    let dir = TempDir::new("reload");
    let tokens = dir.write_arg("tokens", "a.example old-token\n");
    let proxy = Proxy::start(&["--auth.client-tokens", &tokens]);
    assert_eq!(poll_status(&proxy, "new-token"), 403);
    assert_eq!(poll_status(&proxy, "old-token"), 0, "accepted and parked");

    // Rotated: the new token works, the old one no longer does, without a restart.
    dir.write_arg("tokens", "a.example new-token\n");
    let reloaded = wait_until(Duration::from_secs(15), || {
        poll_status(&proxy, "old-token") == 403
    });
    assert!(reloaded, "{}", proxy.log_text());
    assert_eq!(poll_status(&proxy, "new-token"), 0);

    // A broken version is logged and the last good one kept.
    dir.write_arg("tokens", "a.example\n");
    let logged = wait_until(Duration::from_secs(15), || {
        proxy.log_text().contains("keeping the last good version")
    });
    assert!(logged, "{}", proxy.log_text());
    assert_eq!(poll_status(&proxy, "new-token"), 0);
    assert_eq!(poll_status(&proxy, "old-token"), 403);
    assert!(!proxy.log_text().contains("new-token"), "token in the log");
}

/// Reads one answer to `GET /-/healthy` from a kept-alive connection: its head (status line and
/// headers, lower-cased) and its body, framed by Content-Length.
fn read_answer(stream: &mut TcpStream) -> (String, String) {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") && bytes.len() < 16 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => bytes.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = stream.read_exact(&mut body);
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// Issue 16, "revocation": no connection lives for ever. After --web.max-connection-age its
/// next answer says `Connection: close` and the connection ends; before, it stays open.
#[test]
fn a_connection_ends_at_its_first_answer_after_max_connection_age() {
    let proxy = Proxy::start(&["--web.max-connection-age", "1s"]);
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read time-out");
    let request = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(request).expect("first request");
    let (head, body) = read_answer(&mut stream);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(body, "OK\n");
    thread::sleep(Duration::from_millis(1200));
    stream.write_all(request).expect("second request");
    let (head, body) = read_answer(&mut stream);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body, "OK\n");
    let mut rest = [0u8; 1];
    assert_eq!(
        stream.read(&mut rest).expect("the end of the stream"),
        0,
        "the connection stays open"
    );
}
