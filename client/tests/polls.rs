//! Extra polls (ours): the real `pushprox-client` binary against a fake proxy in this process
//! that offers (`X-PushProx-Max-Polls`) or does not offer several polls side by side, and a
//! fake target that keeps scrapes in flight; then against the REAL proxy binary, the sibling of
//! the client binary (run `cargo build --workspace` first). Everything is on loopback; every
//! wait is bounded; children are killed on drop.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pushprox_protocol::Headers;
use pushprox_test_support::*;

/// A raw response; `extra` is more header lines, each ending in `\r\n`.
fn http_response(status: u16, extra: &str, body: &[u8]) -> Vec<u8> {
    raw_response(
        status,
        &format!("Content-Type: text/plain\r\n{extra}"),
        body,
    )
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
fn start_slow_target(delay: Duration) -> FakeTarget {
    FakeTarget::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nup 1\n".to_vec(),
        delay,
    )
}

/// The client binary; killed on drop. Its stderr is kept for failure messages.
struct ClientProcess {
    _child: ChildGuard,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ClientProcess {
    fn start(proxy: &FakeProxy, extra: &[&str]) -> ClientProcess {
        ClientProcess::start_for(&proxy.url(), "debug", extra)
    }

    fn start_for(url: &str, log_level: &str, extra: &[&str]) -> ClientProcess {
        let mut child = command(env!("CARGO_BIN_EXE_pushprox-client"))
            .args(client_flags(url, log_level))
            .args(extra)
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
        ClientProcess {
            _child: ChildGuard(child),
            lines,
        }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The metrics address, from the start-up log line.
    fn metrics_addr(&self) -> String {
        let until = Instant::now() + WAIT;
        loop {
            let found = self.lines.lock().unwrap().iter().find_map(|l| {
                l.split("serving metrics on http://").nth(1).map(|rest| {
                    // logfmt: msg="serving metrics on http://ADDR/metrics"
                    rest.trim_end_matches('"')
                        .trim_end_matches("/metrics")
                        .to_string()
                })
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
        let text = http_get(metrics, "/metrics");
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

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.get(name)
}

#[test]
fn a_busy_poll_with_max_polls_brings_an_extra_poll_with_the_same_id_and_a_hold() {
    let target = start_slow_target(Duration::from_secs(3));
    let proxy = FakeProxy::start_holding(
        vec![
            scrape_answer(&target.url(), "id-1", "X-PushProx-Max-Polls: 8\r\n"),
            scrape_answer(&target.url(), "id-2", "X-PushProx-Max-Polls: 8\r\n"),
            scrape_answer(&target.url(), "id-3", "X-PushProx-Max-Polls: 8\r\n"),
        ],
        Duration::from_secs(1),
    );
    let client = ClientProcess::start(&proxy, &[]);
    let metrics = client.metrics_addr();

    let first = proxy.next_poll().headers;
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

    // One or two scrapes in flight: the primary's re-polls keep up, no extra yet.
    for _ in 0..2 {
        let repoll = proxy.next_poll().headers;
        assert_eq!(header(&repoll, "X-PushProx-Hold"), None, "{repoll:?}");
    }
    // A third scrape arrives while the first two are still in flight: clearly more scrapes
    // than polls, so an extra poll joins the primary's.
    let (second, third) = (proxy.next_poll().headers, proxy.next_poll().headers);
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
        .map(|i| scrape_answer(&target.url(), &format!("id-{i}"), extra_header))
        .collect();
    let proxy = FakeProxy::start_holding(answers, Duration::from_millis(500));
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

// ---------------------------------------------------------------------------------------------
// Against the real proxy

/// The real proxy on 127.0.0.1; killed on drop.
struct RealProxy {
    _child: ChildGuard,
    port: u16,
}

impl RealProxy {
    fn start() -> RealProxy {
        let port = free_port();
        let child = command(proxy_bin())
            .args(["-l", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::null())
            .spawn()
            .expect("start the proxy");
        let proxy = RealProxy {
            _child: ChildGuard(child),
            port,
        };
        proxy.wait_polls_waiting("the proxy to answer /metrics", |_| true);
        proxy
    }

    fn polls_waiting(&self) -> Option<u64> {
        polls_waiting(self.port)
    }

    /// Waits until the gauge satisfies `ok`; returns it.
    fn wait_polls_waiting(&self, what: &str, ok: impl Fn(u64) -> bool) -> u64 {
        let until = Instant::now() + WAIT;
        loop {
            match self.polls_waiting() {
                Some(n) if ok(n) => return n,
                last => assert!(
                    Instant::now() < until,
                    "no {what} within {WAIT:?}: pushprox_polls_waiting is {last:?}"
                ),
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The proxy's `pushprox_polls_waiting`, or `None` while it does not answer.
fn polls_waiting(port: u16) -> Option<u64> {
    let text = request(
        port,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix("pushprox_polls_waiting "))
        .and_then(|v| v.trim().parse().ok())
}

/// A target that answers each request at once with a body naming its path, so each scraper
/// can check it got its own answer. Stops accepting when dropped.
struct EchoTarget {
    server: Server,
}

impl EchoTarget {
    fn start() -> EchoTarget {
        let server = Server::start(Arc::new(AtomicBool::new(false)), |conn| {
            let _ = conn.set_read_timeout(Some(WAIT));
            let mut writer = conn.try_clone().unwrap();
            let mut reader = BufReader::new(conn);
            while let Some(RequestHead { path, .. }) = read_request_head(&mut reader) {
                let body = format!("echo{{path=\"{path}\"}} 1\n");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if writer.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
        });
        EchoTarget { server }
    }
}

#[test]
fn eight_scrapers_through_one_client_open_extra_polls_at_the_real_proxy_that_end_when_idle() {
    const SCRAPERS: usize = 8;
    const LOAD: Duration = Duration::from_secs(2);
    let proxy = RealProxy::start();
    let target = EchoTarget::start();
    let client = ClientProcess::start_for(
        &format!("http://127.0.0.1:{}/", proxy.port),
        // One line per scrape would be a lot of lines.
        "info",
        &["--proxy.max-polls", "8"],
    );
    let metrics = client.metrics_addr();
    proxy.wait_polls_waiting("poll of the client", |n| n == 1);

    let most_waiting = Arc::new(AtomicUsize::new(0));
    let loading = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (most, loading, port) = (Arc::clone(&most_waiting), Arc::clone(&loading), proxy.port);
        thread::spawn(move || {
            while loading.load(Ordering::SeqCst) {
                if let Some(n) = polls_waiting(port) {
                    most.fetch_max(n as usize, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = Instant::now();
    let scrapers: Vec<_> = (0..SCRAPERS)
        .map(|s| {
            let (port, target) = (proxy.port, target.server.addr);
            thread::spawn(move || {
                let mut done = 0;
                while started.elapsed() < LOAD {
                    let path = format!("/metrics?scraper={s}&n={done}");
                    let answer = request(
                        port,
                        &format!(
                            "GET http://{target}{path} HTTP/1.1\r\nHost: {target}\r\n\
                             X-Prometheus-Scrape-Timeout-Seconds: 5\r\nConnection: close\r\n\r\n"
                        ),
                    );
                    let answer = String::from_utf8_lossy(&answer);
                    assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
                    let want = format!("\r\n\r\necho{{path=\"{path}\"}} 1\n");
                    assert!(answer.ends_with(&want), "{path}: {answer}");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let scrapes: usize = scrapers.into_iter().map(|t| t.join().unwrap()).sum();
    let stopped = Instant::now();
    loading.store(false, Ordering::SeqCst);
    watcher.join().unwrap();
    let most = most_waiting.load(Ordering::SeqCst);
    eprintln!(
        "{scrapes} scrapes in {:?}; at most {most} polls waiting",
        stopped - started
    );
    assert!(scrapes >= SCRAPERS, "{scrapes} scrapes");
    assert!(
        most > 1,
        "pushprox_polls_waiting never went above 1 during the load:\n{}",
        client.log()
    );

    // Idle now: every extra poll's 5 s hold runs out, and the primary's poll stays.
    let slow = Duration::from_secs(8);
    let until = stopped + slow;
    let back_to_one = loop {
        if proxy.polls_waiting() == Some(1) {
            break stopped.elapsed();
        }
        assert!(
            Instant::now() < until,
            "pushprox_polls_waiting is {:?}, not 1, {slow:?} after the load stopped:\n{}",
            proxy.polls_waiting(),
            client.log()
        );
        thread::sleep(Duration::from_millis(50));
    };
    eprintln!("back to one poll waiting {back_to_one:?} after the load stopped");
    assert!(
        back_to_one > Duration::from_millis(2500),
        "the extra polls ended {back_to_one:?} after the load, well before their 5 s hold"
    );
    client.wait_polls_open(&metrics, 1);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(proxy.polls_waiting(), Some(1), "{}", client.log());
}

// ---------------------------------------------------------------------------------------------
// What the client announces: --label, --sd.target, and its FQDN

#[test]
fn labels_targets_and_fqdn_go_with_every_poll_and_the_fqdn_with_every_push() {
    // A scrape of a port no --sd.target announces: the client pushes its 403.
    let proxy = FakeProxy::start_holding(
        vec![scrape_answer("http://127.0.0.1:1/metrics", "id-sd", "")],
        Duration::from_secs(1),
    );
    let client = ClientProcess::start(
        &proxy,
        &[
            "--label",
            "site=Zürich 🦀",
            "--label=env=prod",
            "--sd.target",
            "9100:job=node",
            "--sd.target=9256:job=process",
        ],
    );
    let (mut polls, mut push) = (Vec::new(), None);
    let until = Instant::now() + WAIT;
    while polls.len() < 2 || push.is_none() {
        let left = until.saturating_duration_since(Instant::now());
        match proxy.next_event_within(left) {
            Some(ProxyEvent::Poll(poll)) => polls.push(poll.headers),
            Some(ProxyEvent::Push { headers, body, .. }) => push = Some((headers, body)),
            None => panic!(
                "{} polls and {} push in {WAIT:?}:\n{}",
                polls.len(),
                u8::from(push.is_some()),
                client.log()
            ),
        }
    }
    for poll in &polls {
        assert_eq!(
            header(poll, "X-PushProx-Labels"),
            Some(r#"{"env":"prod","site":"Z\u00fcrich \ud83e\udd80"}"#)
        );
        assert_eq!(
            header(poll, "X-PushProx-Targets"),
            Some(
                r#"[{"port":9100,"labels":{"job":"node"}},{"port":9256,"labels":{"job":"process"}}]"#
            )
        );
        assert_eq!(header(poll, "X-PushProx-FQDN"), Some("127.0.0.1"));
    }
    let (headers, body) = push.unwrap_or_default();
    assert_eq!(header(&headers, "X-PushProx-FQDN"), Some("127.0.0.1"));
    assert_eq!(header(&headers, "X-PushProx-Labels"), None);
    let pushed = pushprox_protocol::Response::from_bytes(&body, 64 * 1024, None).unwrap();
    assert_eq!(pushed.head.status, 403);
    assert_eq!(
        String::from_utf8_lossy(&pushed.body),
        "scrape of http://127.0.0.1:1/metrics refused: port 1 is not one of the --sd.target \
         ports (9100, 9256), the only ones scraped without --scrape.allow; announce it with \
         --sd.target or allow it with --scrape.allow"
    );
}

#[test]
fn without_labels_or_targets_polls_announce_only_the_fqdn() {
    let proxy = FakeProxy::start_holding(Vec::new(), Duration::from_secs(1));
    let _client = ClientProcess::start(&proxy, &[]);
    let poll = proxy.next_poll().headers;
    assert_eq!(header(&poll, "X-PushProx-FQDN"), Some("127.0.0.1"));
    assert_eq!(header(&poll, "X-PushProx-Labels"), None);
    assert_eq!(header(&poll, "X-PushProx-Targets"), None);
}
