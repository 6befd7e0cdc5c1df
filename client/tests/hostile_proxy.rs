//! Issue 16: what a proxy can make the client do. A proxy is trusted with scrapes, not with the
//! client's host: a scrape that is not GET or HEAD is pushed back as 405 and never sent to the
//! target (the Go proxy passes any method on), and however fast a proxy hands out scrapes, the
//! client runs at most `--scrape.max-in-flight` at once and answers the rest 503 at once.
//!
//! The proxy here is the tests' fake proxy (test-support's `fake_proxy`): a loopback server
//! speaking the protocol that answers polls with the scrapes the test chooses and records pushes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pushprox_protocol::Response;
use pushprox_test_support::*;

/// The response a push carries.
fn pushed(body: &[u8]) -> Response {
    Response::parse(&mut &body[..], 64 * 1024, Some(1 << 20))
        .unwrap_or_else(|e| panic!("the push is not a response ({e}): {body:?}"))
}

/// A poll's answer handing out `request`.
fn poll_answer(request: &str) -> Vec<u8> {
    raw_response(200, "", request.as_bytes())
}

/// A scrape request as a proxy hands it out.
fn scrape_request(method: &str, url: &str, id: &str, timeout: &str) -> String {
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    format!(
        "{method} {url} HTTP/1.1\r\nHost: {authority}\r\nId: {id}\r\nX-Prometheus-Scrape-Timeout-Seconds: {timeout}\r\n\r\n"
    )
}

#[test]
fn a_scrape_that_is_not_get_or_head_is_pushed_back_405_and_never_reaches_the_target() {
    let target = FakeTarget::start(raw_response(200, "", b"up 1\n"), Duration::ZERO);
    let url = target.url().replace("/metrics", "/api/x");
    let methods = ["DELETE", "POST", "GET"];
    let scrapes: Vec<String> = methods
        .iter()
        .enumerate()
        .map(|(i, m)| scrape_request(m, &url, &format!("id-{i}"), "5"))
        .collect();
    let proxy = FakeProxy::start_scripted(move |n| scrapes.get(n).map(|r| poll_answer(r)));
    let proxy_url = proxy.url();
    let mut args = client_flags(&proxy_url, "debug");
    args.extend(["--proxy.retry.initial-wait", "100ms"]);
    let _client = ChildGuard(
        command(env!("CARGO_BIN_EXE_pushprox-client"))
            .args(&args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the client starts"),
    );
    let mut pushes: Vec<Response> = (0..3).map(|_| pushed(&proxy.next_push())).collect();
    pushes.sort_by_key(|p| p.head.headers.get("Id").unwrap_or("").to_string());
    for (push, method) in pushes.iter().zip(methods) {
        let text = String::from_utf8_lossy(&push.body);
        if method == "GET" {
            assert_eq!(push.head.status, 200, "{text}");
            assert_eq!(push.body, b"up 1\n");
        } else {
            assert_eq!(push.head.status, 405, "{method}: {text}");
            assert_eq!(push.head.headers.get("Allow"), Some("GET, HEAD"));
            assert!(
                text.contains(method) && text.contains("GET and HEAD"),
                "{text}"
            );
        }
    }
    // The GET is the only request the target saw.
    let seen = target.next_request();
    assert!(seen.starts_with("GET /api/x HTTP/1.1\r\n"), "{seen}");
    assert!(proxy.polls.load(Ordering::SeqCst) >= 3);
}

/// A target that accepts connections and never answers: it keeps them, on one thread, until
/// dropped (or 60 s).
struct SlowTarget {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl SlowTarget {
    fn start() -> SlowTarget {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a slow target");
        let port = listener.local_addr().expect("its address").port();
        listener.set_nonblocking(true).expect("non-blocking accept");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (Arc::clone(&accepted), Arc::clone(&stop));
        thread::spawn(move || {
            let mut held = Vec::new();
            let until = Instant::now() + Duration::from_secs(60);
            while !stopped.load(Ordering::SeqCst) && Instant::now() < until {
                match listener.accept() {
                    Ok((conn, _)) => {
                        held.push(conn);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SlowTarget {
            port,
            accepted,
            stop,
        }
    }
}

impl Drop for SlowTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `Threads:` and `VmHWM:` (KiB) of /proc/PID/status.
fn threads_and_peak(pid: u32) -> (usize, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Threads:") as usize, field("VmHWM:"))
}

/// The hostile proxy: every poll answered at once with a 300 s scrape of a port that
/// never answers. Before the limit the client reached 5,681 threads and 3.29 GB in 12 s; now
/// it runs `--scrape.max-in-flight` (32) of them and pushes 503 for the rest at once.
/// `PUSHPROX_CLIENT_BIN` runs another build of the client (to measure the figures before).
#[test]
fn a_proxy_flooding_the_client_with_slow_scrapes_leaves_it_under_64_threads_and_64_mib() {
    const FOR: Duration = Duration::from_secs(12);
    let slow = SlowTarget::start();
    let url = format!("http://127.0.0.1:{}/metrics", slow.port);
    let proxy = FakeProxy::start_scripted(move |n| {
        Some(poll_answer(&scrape_request(
            "GET",
            &url,
            &format!("s{n}"),
            "300",
        )))
    });
    let bin = std::env::var_os("PUSHPROX_CLIENT_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_pushprox-client").into());
    let proxy_url = proxy.url();
    let client = ChildGuard(
        command(bin)
            .args(client_flags(&proxy_url, "info"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the client starts"),
    );
    let pid = client.id();
    let started = Instant::now();
    let mut most_threads = 0;
    while started.elapsed() < FOR {
        most_threads = most_threads.max(threads_and_peak(pid).0);
        thread::sleep(Duration::from_millis(100));
    }
    let (threads, peak_kib) = threads_and_peak(pid);
    let polls = proxy.polls.load(Ordering::SeqCst);
    let accepted = slow.accepted.load(Ordering::SeqCst);
    let mut refused = 0;
    let mut reason = String::new();
    while let Some(event) = proxy.next_event_within(Duration::ZERO) {
        let ProxyEvent::Push { body, .. } = event else {
            continue;
        };
        if body.starts_with(b"HTTP/1.1 503") {
            refused += 1;
            reason = String::from_utf8_lossy(&body).into_owned();
        }
    }
    eprintln!(
        "hostile proxy for {FOR:?}: {polls} scrapes handed out, {accepted} connections to the slow target, {refused} pushed 503; client threads at most {most_threads} ({threads} at the end), peak RSS {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    assert!(most_threads < 64, "{most_threads} threads");
    assert!(peak_kib < 64 * 1024, "peak {peak_kib} KiB");
    assert!(accepted <= 32, "{accepted} scrapes reached the target");
    assert!(
        refused > 0 && polls > 32,
        "{polls} polls, {refused} refusals"
    );
    assert!(reason.contains("--scrape.max-in-flight=32"), "{reason}");
}
