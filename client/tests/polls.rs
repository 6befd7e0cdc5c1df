//! Extra polls (ours): the real `pushprox-client` binary against a fake proxy in this process
//! that offers (`X-PushProx-Max-Polls`) or does not offer several polls side by side, and a
//! fake target that keeps scrapes in flight. Everything is on loopback; every wait is bounded;
//! the child is killed on drop.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pushprox_protocol::{BodyReader, Framing, Headers};

/// Upper bound of every wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

/// What the fake proxy saw.
#[derive(Debug)]
enum Event {
    Poll { headers: Headers },
    Push,
}

/// Answers polls from a script of raw HTTP responses, then holds them: a poll that asks for a
/// hold (`X-PushProx-Hold`) gets a 408 after `hold`, any other after 20 s or when the proxy
/// stops. Counts the polls open at once.
struct FakeProxy {
    addr: SocketAddr,
    events: Receiver<Event>,
    stop: Arc<AtomicBool>,
    most_open: Arc<AtomicUsize>,
}

/// What every connection thread of the fake proxy shares.
struct Shared {
    events: Mutex<Sender<Event>>,
    answers: Mutex<VecDeque<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
    hold: Duration,
}

impl FakeProxy {
    fn start(poll_answers: Vec<Vec<u8>>, hold: Duration) -> FakeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, events) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let most_open = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            events: Mutex::new(tx),
            answers: Mutex::new(VecDeque::from(poll_answers)),
            stop: Arc::clone(&stop),
            open: Arc::new(AtomicUsize::new(0)),
            most_open: Arc::clone(&most_open),
            hold,
        });
        thread::spawn(move || {
            for conn in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let shared = Arc::clone(&shared);
                thread::spawn(move || serve_connection(conn, &shared));
            }
        });
        FakeProxy {
            addr,
            events,
            stop,
            most_open,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The next poll's headers, skipping pushes.
    fn next_poll(&self) -> Headers {
        self.next_poll_within(WAIT)
            .expect("no poll reached the fake proxy in time")
    }

    fn next_poll_within(&self, wait: Duration) -> Option<Headers> {
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Poll { headers }) => return Some(headers),
                Ok(Event::Push) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Waits for `n` pushes; returns the polls seen meanwhile.
    fn wait_pushes(&self, n: usize) -> Vec<Headers> {
        let until = Instant::now() + WAIT;
        let (mut pushes, mut polls) = (0, Vec::new());
        while pushes < n {
            let left = until.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Poll { headers }) => polls.push(headers),
                Ok(Event::Push) => pushes += 1,
                Err(_) => panic!("only {pushes} of {n} pushes reached the fake proxy in time"),
            }
        }
        polls
    }
}

impl Drop for FakeProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn read_request_head(r: &mut impl BufRead) -> Option<(String, Headers)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Headers::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some((path, headers));
        }
        let (n, v) = line.split_once(':')?;
        headers.append(n.trim(), v.trim());
    }
}

fn serve_connection(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    while let Some((path, headers)) = read_request_head(&mut reader) {
        let framing = match Framing::of_response(&headers).unwrap_or(Framing::Length(0)) {
            Framing::UntilEof => Framing::Length(0),
            f => f,
        };
        let mut body = Vec::new();
        if BodyReader::new(&mut reader, framing, None)
            .read_to_end(&mut body)
            .is_err()
        {
            return;
        }
        let answer = match path.as_str() {
            "/poll" => {
                let now_open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
                shared.most_open.fetch_max(now_open, Ordering::SeqCst);
                let hold = headers.get("x-pushprox-hold").is_some();
                let _ = shared.events.lock().unwrap().send(Event::Poll { headers });
                let scripted = shared.answers.lock().unwrap().pop_front();
                let answer = scripted.unwrap_or_else(|| {
                    let held = if hold {
                        shared.hold
                    } else {
                        Duration::from_secs(20)
                    };
                    let until = Instant::now() + held;
                    while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(10));
                    }
                    http_response(408, "", b"poll held long enough")
                });
                // Closed before the answer goes out: the client's next poll can only follow it.
                shared.open.fetch_sub(1, Ordering::SeqCst);
                answer
            }
            "/push" => {
                let _ = shared.events.lock().unwrap().send(Event::Push);
                http_response(200, "", b"")
            }
            _ => http_response(404, "", b"not found"),
        };
        if writer.write_all(&answer).is_err() {
            return;
        }
    }
}

/// A raw response; `extra` is more header lines, each ending in `\r\n`.
fn http_response(status: u16, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\n\r\n",
        pushprox_protocol::reason_phrase(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A poll answer handing out a scrape of `url`; `extra` as in [`http_response`].
fn scrape_answer(url: &str, id: &str, extra: &str) -> Vec<u8> {
    let host = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let req = format!(
        "GET {url} HTTP/1.1\r\nHost: {host}\r\nId: {id}\r\n\
         X-Prometheus-Scrape-Timeout-Seconds: 5\r\n\r\n"
    );
    http_response(200, extra, req.as_bytes())
}

/// A target that answers every request after `delay`, so scrapes stay in flight that long.
fn start_slow_target(delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(WAIT));
                let mut head = Vec::new();
                let mut byte = [0u8];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                thread::sleep(delay);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nup 1\n");
            });
        }
    });
    format!("http://{addr}/metrics")
}

/// The client binary; killed on drop. Its stderr is kept for failure messages.
struct ClientProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ClientProcess {
    fn start(proxy: &FakeProxy, extra: &[&str]) -> ClientProcess {
        let url = proxy.url();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pushprox-client"))
            .args([
                "--proxy-url",
                &url,
                "--fqdn",
                "127.0.0.1",
                "--metrics-addr",
                "127.0.0.1:0",
                "--log.level",
                "debug",
            ])
            .args(extra)
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&lines);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                kept.lock().unwrap().push(line);
            }
        });
        ClientProcess { child, lines }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The metrics address, from the start-up log line.
    fn metrics_addr(&self) -> String {
        let until = Instant::now() + WAIT;
        loop {
            let found = self.lines.lock().unwrap().iter().find_map(|l| {
                l.split("serving metrics on http://")
                    .nth(1)
                    .map(|rest| rest.trim_end_matches("/metrics").to_string())
            });
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                Instant::now() < until,
                "no metrics address:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of `pushprox_client_polls_open`.
    fn polls_open(&self, metrics: &str) -> u64 {
        let mut conn = TcpStream::connect(metrics).unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        write!(conn, "GET /metrics HTTP/1.0\r\nHost: {metrics}\r\n\r\n").unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("pushprox_client_polls_open "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no pushprox_client_polls_open in:\n{text}"))
    }

    /// Waits until the gauge reads `want`.
    fn wait_polls_open(&self, metrics: &str, want: u64) {
        let until = Instant::now() + WAIT;
        loop {
            let got = self.polls_open(metrics);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < until,
                "pushprox_client_polls_open stayed {got}, not {want}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.get(name)
}

#[test]
fn a_busy_poll_with_max_polls_brings_an_extra_poll_with_the_same_id_and_a_hold() {
    let target = start_slow_target(Duration::from_secs(3));
    let proxy = FakeProxy::start(
        vec![scrape_answer(
            &target,
            "id-1",
            "X-PushProx-Max-Polls: 8\r\n",
        )],
        Duration::from_secs(1),
    );
    let client = ClientProcess::start(&proxy, &[]);
    let metrics = client.metrics_addr();

    let first = proxy.next_poll();
    let id = header(&first, "X-PushProx-Poller")
        .unwrap_or_else(|| panic!("the first poll has no X-PushProx-Poller: {first:?}"))
        .to_string();
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(
        header(&first, "X-PushProx-Hold"),
        None,
        "the primary asks for no hold"
    );

    // The scrape is in flight and the primary polls again: the one poll is busy, so an extra
    // joins it.
    let (second, third) = (proxy.next_poll(), proxy.next_poll());
    for poll in [&second, &third] {
        assert_eq!(
            header(poll, "X-PushProx-Poller"),
            Some(id.as_str()),
            "{poll:?}"
        );
    }
    let holds: Vec<Option<&str>> = [&second, &third]
        .iter()
        .map(|p| header(p, "X-PushProx-Hold"))
        .collect();
    assert!(
        holds.contains(&Some("5s")) && holds.contains(&None),
        "one re-poll of the primary without a hold, one extra poll with X-PushProx-Hold: 5s; got {holds:?}\n{}",
        client.log()
    );
    client.wait_polls_open(&metrics, 2);

    // The extra poll's hold runs out without a scrape: it ends, and is not replaced.
    client.wait_polls_open(&metrics, 1);
    if let Some(poll) = proxy.next_poll_within(Duration::from_millis(1500)) {
        panic!(
            "a poll after the extra one ended: {poll:?}\n{}",
            client.log()
        );
    }
    assert_eq!(proxy.wait_pushes(1).len(), 0);
}

/// Three scrapes handed out one after the other while the target keeps each busy for 2 s:
/// returns the most polls the proxy ever saw open at once.
fn most_polls_open_with(extra_header: &str, flags: &[&str]) -> usize {
    let target = start_slow_target(Duration::from_secs(2));
    let answers = (1..=3)
        .map(|i| scrape_answer(&target, &format!("id-{i}"), extra_header))
        .collect();
    let proxy = FakeProxy::start(answers, Duration::from_millis(500));
    let client = ClientProcess::start(&proxy, flags);
    let polls = proxy.wait_pushes(3);
    for poll in &polls {
        assert_eq!(
            header(poll, "X-PushProx-Hold"),
            None,
            "{poll:?}\n{}",
            client.log()
        );
    }
    proxy.most_open.load(Ordering::SeqCst)
}

#[test]
fn without_max_polls_from_the_proxy_one_poll_is_ever_open() {
    // The Go proxy sends no X-PushProx-Max-Polls: two polls would supersede each other there.
    assert_eq!(most_polls_open_with("", &[]), 1);
}

#[test]
fn max_polls_1_on_either_side_keeps_one_poll_open() {
    assert_eq!(most_polls_open_with("X-PushProx-Max-Polls: 1\r\n", &[]), 1);
    assert_eq!(
        most_polls_open_with("X-PushProx-Max-Polls: 8\r\n", &["--proxy.max-polls", "1"]),
        1
    );
}
