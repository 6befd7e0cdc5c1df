//! Issue 16: what a proxy can make the client do. A proxy is trusted with scrapes, not with the
//! client's host: a scrape that is not GET or HEAD is pushed back as 405 and never sent to the
//! target (the Go proxy passes any method on), and however fast a proxy hands out scrapes, the
//! client runs at most `--scrape.max-in-flight` at once and answers the rest 503 at once.
//!
//! The proxy here is written by the test: a loopback server speaking the protocol (PROTOCOL.md
//! sections 2 and 4) that answers polls with the scrapes the test chooses and records pushes.

#[allow(dead_code)]
mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use pushprox_protocol::Response;

/// Longest a poll without a scrape is held by the fake proxy.
const HOLD: Duration = Duration::from_secs(20);

/// A proxy that answers poll number N with `scrape(N)` (a scrape request in proxy form), or
/// holds it when that is `None`; it answers every push 200 and hands its body to the test.
struct FakeProxy {
    server: Server,
    pushes: Receiver<Vec<u8>>,
    polls: Arc<AtomicUsize>,
}

impl FakeProxy {
    fn start(scrape: impl Fn(usize) -> Option<String> + Send + Sync + 'static) -> FakeProxy {
        let (tx, pushes) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicUsize::new(0));
        let (stopped, counted) = (Arc::clone(&stop), Arc::clone(&polls));
        let server = Server::start(stop, move |conn| {
            serve(conn, &scrape, &tx, &counted, &stopped)
        });
        FakeProxy {
            server,
            pushes,
            polls,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.server.addr)
    }

    fn next_push(&self) -> Response {
        let body = self
            .pushes
            .recv_timeout(WAIT)
            .expect("no push reached the fake proxy in time");
        Response::parse(&mut &body[..], 64 * 1024, Some(1 << 20))
            .unwrap_or_else(|e| panic!("the push is not a response ({e}): {body:?}"))
    }
}

fn serve(
    conn: TcpStream,
    scrape: &(impl Fn(usize) -> Option<String> + Send + Sync),
    pushes: &Sender<Vec<u8>>,
    polls: &AtomicUsize,
    stop: &AtomicBool,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Some((head, body)) = read_request(&mut reader) {
        let answer = match head.path.as_str() {
            "/poll" => match scrape(polls.fetch_add(1, Ordering::SeqCst)) {
                Some(request) => raw_response(200, "", request.as_bytes()),
                None => {
                    let until = Instant::now() + HOLD;
                    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(50));
                    }
                    return;
                }
            },
            "/push" => {
                let _ = pushes.send(body);
                raw_response(200, "", b"")
            }
            _ => raw_response(404, "", b""),
        };
        if writer.write_all(&answer).is_err() {
            return;
        }
    }
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
    let proxy = FakeProxy::start(move |n| scrapes.get(n).cloned());
    let proxy_url = proxy.url();
    let mut args = client_args(&proxy_url, "debug");
    args.extend(["--proxy.retry.initial-wait", "100ms"]);
    let _client = ChildGuard(
        command(env!("CARGO_BIN_EXE_pushprox-client"))
            .args(&args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the client starts"),
    );
    let mut pushes: Vec<Response> = (0..3).map(|_| proxy.next_push()).collect();
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
