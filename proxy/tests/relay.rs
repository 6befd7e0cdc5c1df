//! The proxy relaying scrapes, with real clients and with polls and pushes written by the test:
//! bodies reach the scraper that asked for them, byte for byte; polls, pushes and deadlines
//! follow PROTOCOL.md; bad input is refused with a reason and leaves nothing behind.

use std::io::{BufReader, Write};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pushprox_protocol::{ScrapeRequest, DEFAULT_MAX_HEAD, SCRAPE_TIMEOUT_HEADER};
use pushprox_test_support::*;

const RELAYED: &str = "pushprox_scrapes_total{outcome=\"relayed\"}";
/// A scrape whose target host has a space: not even a valid request line.
const BAD_HOST_WITH_SPACE: &[u8] =
    b"GET http://bad host/ HTTP/1.1\r\nHost: bad host\r\nConnection: close\r\n\r\n";

/// Where two byte strings first differ, for a readable failure.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(i) => format!(
            "first difference at byte {i} of {} (want {} bytes)",
            got.len(),
            want.len()
        ),
        None => format!("got {} bytes, want {}", got.len(), want.len()),
    }
}

/// Issue 2: many clients and many concurrent scrapes; nothing crosses between targets.
#[test]
fn fifty_concurrent_scrapes_over_ten_clients_each_reach_their_own_target() {
    let proxy = Proxy::start(&[]);
    let targets = Target::echoes(2..=11);
    let _clients = proxy.clients_for(&targets);
    let targets = Arc::new(targets);

    let scrapers: Vec<_> = (0..50)
        .map(|i| {
            let targets = targets.clone();
            let port = proxy.port;
            thread::spawn(move || {
                let t = &targets[i % targets.len()];
                let path = format!("/metrics?scrape={i}");
                (i, path.clone(), scrape(port, &t.url(&path), Some("5")))
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for s in scrapers {
        let (i, path, reply) = s.join().expect("scraper thread");
        let t = &targets[i % targets.len()];
        match t.echoed(i, &path, reply) {
            Ok(r) => {
                assert_eq!(
                    r.header("Content-Type"),
                    Some("text/plain; version=0.0.4"),
                    "scrape {i}: the target's Content-Type is relayed"
                );
            }
            Err(e) => wrong.push(e),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of 50 scrapes went wrong:\n{}\n{}",
        wrong.len(),
        wrong.join("\n"),
        targets.iter().map(Target::events).collect::<String>()
    );
    for t in targets.iter() {
        assert_eq!(t.hits(), 5, "target {} was asked 5 times", t.ip);
    }
    let mut fqdns: Vec<String> = targets.iter().map(|t| t.ip.clone()).collect();
    fqdns.sort();
    assert_eq!(
        proxy.clients(),
        fqdns,
        "/clients lists exactly the 10 clients"
    );
    // The counter is bumped when the push has been relayed, just after the scraper has its body.
    let relayed = proxy.wait_for_metric(RELAYED, 50.0, Duration::from_secs(5));
    assert_eq!(relayed, Some(50.0), "{RELAYED}");
}

/// Issue 2: a gzip body is binary and must not be decompressed or altered; a target that gives
/// no length (chunked) must come through whole.
#[test]
fn binary_gzip_and_chunked_bodies_pass_through_byte_for_byte() {
    let proxy = Proxy::start(&[]);
    let mut gzip = random_bytes(200_000, 0x9e37_79b9);
    gzip[..3].copy_from_slice(&[0x1f, 0x8b, 0x08]);
    let text: Vec<u8> = (0..3000)
        .flat_map(|i| format!("metric_{i}{{n=\"{i}\"}} {i}\n").into_bytes())
        .collect();
    let headers = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        [("Content-Type", "text/plain; version=0.0.4")]
            .iter()
            .chain(extra)
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let targets = vec![
        // gzip with a length
        Target::start(
            &host(12),
            Answer::Bytes {
                headers: headers(&[("Content-Encoding", "gzip")]),
                body: gzip.clone(),
                chunks: None,
            },
        ),
        // plain text, chunked, odd chunk sizes
        Target::start(
            &host(13),
            Answer::Bytes {
                headers: headers(&[("X-Target", "127.0.0.13")]),
                body: text.clone(),
                chunks: Some(vec![1, 7, 100, 3000, 5, 65536]),
            },
        ),
        // gzip and chunked, as node_exporter answers Prometheus
        Target::start(
            &host(14),
            Answer::Bytes {
                headers: headers(&[("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]),
                body: gzip.clone(),
                chunks: Some(vec![10, 4096, 1, 8192]),
            },
        ),
    ];
    let _clients = proxy.clients_for(&targets);

    let cases = [
        (&targets[0], &gzip, Some("gzip")),
        (&targets[1], &text, None),
        (&targets[2], &gzip, Some("gzip")),
    ];
    for (t, want, encoding) in cases {
        let url = t.url("/metrics");
        let request = scrape_request(&url, Some("5"), &[("Accept-Encoding", "gzip")]);
        let r = exchange(proxy.port, &request, EXCHANGE_WITHIN)
            .unwrap_or_else(|e| panic!("scrape of {url}: {e}"));
        assert_eq!(r.status, 200, "scrape of {url}: {}", r.text());
        assert!(
            r.body == *want,
            "scrape of {url}: body altered: {}",
            first_difference(&r.body, want)
        );
        assert_eq!(
            r.header("Content-Encoding"),
            encoding,
            "scrape of {url}: Content-Encoding"
        );
        assert_eq!(
            r.header("Content-Type"),
            Some("text/plain; version=0.0.4"),
            "scrape of {url}: Content-Type"
        );
    }
    assert_eq!(
        targets[1].hits(),
        1,
        "the chunked target was asked exactly once"
    );
}

/// Issue 2: a newer poll of an FQDN answers the older one 408 at once; the next scrape goes to
/// the newer poll, and what is pushed for it reaches the scraper.
#[test]
fn newer_poll_supersedes_older_and_gets_the_scrape() {
    let proxy = Proxy::start(&[]);
    let fqdn = "superseded.test";
    let older = RawPoll::send(proxy.port, fqdn);
    proxy.wait_for_polls(1);
    let newer = RawPoll::send(proxy.port, fqdn);
    let newer_sent = Instant::now();
    let r = older
        .answer(Duration::from_secs(3))
        .expect("the older poll is answered");
    let after_newer = newer_sent.elapsed();
    assert_eq!(r.status, 408, "superseded poll: {}", r.text());
    assert!(
        r.text().contains(fqdn),
        "the reason names the FQDN: {:?}",
        r.text()
    );
    assert!(
        after_newer < Duration::from_secs(1),
        "the older poll was answered {after_newer:?} after the newer one came"
    );
    proxy.wait_for_polls(1);

    let url = format!("http://{fqdn}:9100/metrics?poll=newer");
    let port = proxy.port;
    let scraper = {
        let url = url.clone();
        thread::spawn(move || scrape(port, &url, Some("5")))
    };
    let r = newer
        .answer(Duration::from_secs(5))
        .expect("the newer poll gets the scrape");
    assert_eq!(r.status, 200, "poll answer: {}", r.text());
    let req = ScrapeRequest::from_bytes(&r.body, DEFAULT_MAX_HEAD)
        .unwrap_or_else(|e| panic!("poll body is not a scrape request ({e}): {}", r.text()));
    assert_eq!(req.method, "GET");
    assert_eq!(req.url, url);
    assert_eq!(req.headers.get("Host"), Some("superseded.test:9100"));
    assert_eq!(req.headers.get("User-Agent"), Some("pushprox-tests"));
    // 5 s less --scrape.timeout-offset (500ms) for the proxy's answer, and again for the client.
    assert_eq!(req.headers.get(SCRAPE_TIMEOUT_HEADER), Some("4"));
    let id = req
        .id()
        .expect("the scrape request has an Id header")
        .to_string();
    assert!(!id.is_empty());

    let body = b"# HELP up pushed by the test\nup{via=\"newer\"} 1\n";
    let pushed = proxy.post(
        "/push",
        &push_body(
            &id,
            200,
            &[
                ("Content-Type", "text/plain; version=0.0.4"),
                ("X-Pushed-By", "test"),
            ],
            body,
        ),
    );
    assert_eq!(pushed.status, 200, "push: {}", pushed.text());
    let got = scraper
        .join()
        .expect("scraper thread")
        .expect("the scrape is answered");
    assert_eq!(got.status, 200, "scrape: {}", got.text());
    assert_eq!(got.body, body);
    assert_eq!(got.header("X-Pushed-By"), Some("test"));
    assert_eq!(got.header("Id"), None, "the Id header is not relayed");
}

/// Issue 2: a poll held past --poll.max-hold is answered 408 (so a load balancer's idle
/// time-out never cuts it), and a real client simply polls again and keeps serving scrapes.
#[test]
fn poll_held_past_max_hold_gets_408_and_clients_keep_serving() {
    let proxy = Proxy::start(&["--poll.max-hold", "500ms"]);
    let r = RawPoll::send(proxy.port, "held.test")
        .answer(Duration::from_secs(3))
        .expect("the held poll is answered");
    assert_eq!(r.status, 408, "{:?}", r.text());
    assert!(r.text().contains("held.test"), "{:?}", r.text());
    assert!(
        r.took >= Duration::from_millis(500) && r.took < Duration::from_millis(1500),
        "answered after {:?}, --poll.max-hold 500ms",
        r.took
    );

    let targets = [Target::start(&host(18), Answer::Echo)];
    let _client = Client::start(&[proxy.port], &targets[0].ip);
    let known = [targets[0].ip.clone(), "held.test".to_string()];
    proxy.wait_for_clients(&known, Duration::from_secs(10));
    thread::sleep(Duration::from_millis(1200));
    for i in 0..5 {
        let path = format!("/metrics?after_hold={i}");
        let r = scrape(proxy.port, &targets[0].url(&path), Some("2"))
            .unwrap_or_else(|e| panic!("scrape {i}: {e}"));
        assert_eq!(r.status, 200, "scrape {i}: {}", r.text());
        assert!(r.text().starts_with(&targets[0].echo_prefix(&path)));
        thread::sleep(Duration::from_millis(150));
    }
}

/// A scrape of `url` (deadline `timeout` seconds) handed to a poll of `fqdn` written by the
/// test: the scraper's thread, and the scrape's Id as the poll received it.
fn scrape_through_raw_poll(
    proxy: &Proxy,
    fqdn: &str,
    url: &str,
    timeout: &'static str,
) -> (thread::JoinHandle<Result<Reply, String>>, String) {
    let poll = RawPoll::send(proxy.port, fqdn);
    proxy.wait_for_polls(1);
    let (port, url) = (proxy.port, url.to_string());
    let scraper = thread::spawn(move || scrape(port, &url, Some(timeout)));
    let r = poll
        .answer(Duration::from_secs(5))
        .expect("the poll gets the scrape");
    assert_eq!(r.status, 200, "poll answer: {}", r.text());
    let req = ScrapeRequest::from_bytes(&r.body, DEFAULT_MAX_HEAD).expect("a scrape request");
    (scraper, req.id().expect("Id").to_string())
}

/// Issue 2: a client's HTTP agent sends a push of unknown length in chunked encoding and then
/// reuses the connection for its next poll or push; the proxy must consume the whole push
/// request, up to its last chunk, or the next request on that connection is garbage to it.
#[test]
fn chunked_push_leaves_its_keep_alive_connection_usable() {
    let proxy = Proxy::start(&[]);
    let port = proxy.port;
    let (scraper, id) = scrape_through_raw_poll(
        &proxy,
        "keepalive.test",
        "http://keepalive.test:9100/metrics",
        "5",
    );

    let inner = push_body(&id, 200, &[], b"up 1\n");
    let mut push =
        b"POST /push HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    push.extend_from_slice(format!("{:x}\r\n", inner.len()).as_bytes());
    push.extend_from_slice(&inner);
    push.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut stream = connect(port).expect("connect");
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    stream.write_all(&push).expect("write the push");
    let pushed = read_reply_from(&mut reader, Instant::now()).expect("the push is answered");
    assert_eq!(pushed.status, 200, "push: {}", pushed.text());
    let got = scraper.join().expect("scraper thread").expect("answered");
    assert_eq!((got.status, got.body.as_slice()), (200, &b"up 1\n"[..]));

    // The same connection again, as ureq's connection pool does.
    stream
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("write the next request");
    let next = read_reply_from(&mut reader, Instant::now())
        .expect("the next request on the connection is answered");
    assert_eq!(
        next.status,
        200,
        "the request after a chunked push on the same connection: {} {:?}",
        next.status,
        next.text()
    );
}

/// Issue 2, interop: the Go client pushes a failed scrape as `HTTP/0.0 500 ...` with its body
/// running to the end of the push (bytes captured from it, in protocol/tests/fixtures). The Go
/// proxy relays that to the scraper; so do we, status and reason intact.
#[test]
fn go_client_error_push_with_version_0_0_is_relayed() {
    let proxy = Proxy::start(&[]);
    let (scraper, id) = scrape_through_raw_poll(
        &proxy,
        "go-client.test",
        "http://go-client.test:19999/metrics",
        "5",
    );

    let captured = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../protocol/tests/fixtures/10-go-client-error-push-body.http"
    ))
    .expect("the captured push");
    let captured = String::from_utf8(captured).expect("text");
    let push = captured.replace("11111111-2222-3333-4444-555555555555", &id);
    let pushed = proxy.post("/push", push.as_bytes());
    assert_eq!(pushed.status, 200, "push: {}", pushed.text());

    let scraped = scraper
        .join()
        .expect("scraper thread")
        .expect("the scrape is answered");
    assert_eq!(scraped.status, 500, "{}", scraped.text());
    assert_eq!(
        scraped.text(),
        "failed to scrape http://127.0.0.3:19999/metrics: Get \"http://127.0.0.3:19999/metrics\": \
         dial tcp 127.0.0.3:19999: connect: connection refused"
    );
    assert_eq!(scraped.header("Id"), None, "Id is stripped");
}

/// Issue 2: a push for a scrape that already gave up is answered 410 at once (the Go proxy held
/// it 15 s); a push for an id never seen is 404.
#[test]
fn late_push_is_refused_at_once_and_unknown_id_is_404() {
    let proxy = Proxy::start(&[]);
    let fqdn = "late.test";
    let (scraper, id) = scrape_through_raw_poll(&proxy, fqdn, "http://late.test:9100/metrics", "1");

    let scraped = scraper
        .join()
        .expect("scraper thread")
        .expect("the scrape is answered");
    assert_eq!(scraped.status, 504, "no push came: {}", scraped.text());
    assert!(scraped.text().contains(fqdn), "{:?}", scraped.text());

    let started = Instant::now();
    let r = proxy.post("/push", &push_body(&id, 200, &[], b"up 1\n"));
    let took = started.elapsed();
    assert_eq!(r.status, 410, "late push: {}", r.text());
    assert!(
        r.text().contains(&id) && r.text().contains(fqdn),
        "the reason names the scrape and the FQDN: {:?}",
        r.text()
    );
    assert!(
        took < Duration::from_secs(1),
        "the late push was answered after {took:?}"
    );
    // Counted apart from errors, and logged as news, not as a warning.
    assert_eq!(proxy.metric("pushprox_late_pushes_total"), Some(1.0));
    let log = proxy.log_tail(50);
    assert!(
        log.lines().any(
            |l| l.contains("level=info msg=\"late push: Error pushing: scrape ")
                && l.contains(&format!("scrape_id={id}"))
        ),
        "{log}"
    );

    let r = proxy.post(
        "/push",
        &push_body("no-such-scrape-id", 200, &[], b"up 1\n"),
    );
    assert_eq!(r.status, 404, "unknown id: {}", r.text());
    assert!(r.text().contains("no-such-scrape-id"), "{:?}", r.text());
}

/// Issue 2: a scrape nobody polls for fails with 504 at its deadline, from the header or from
/// --scrape.default-timeout; a poll always carries the effective deadline, clamped to
/// --scrape.max-timeout. (With --scrape.timeout-offset 0s, as Go; the offset is tested below.)
#[test]
fn scrape_without_client_fails_at_its_deadline_and_polls_carry_the_effective_deadline() {
    let proxy = Proxy::start(&[
        "--scrape.default-timeout",
        "1s",
        "--scrape.max-timeout",
        "2s",
        "--scrape.timeout-offset",
        "0s",
    ]);
    let port = proxy.port;
    let cases = [
        ("nobody.test", Some("0.5"), Duration::from_millis(500)),
        ("nobody-either.test", None, Duration::from_secs(1)),
    ];
    let scrapers: Vec<_> = cases
        .iter()
        .map(|&(fqdn, timeout, _)| {
            thread::spawn(move || scrape(port, &format!("http://{fqdn}:9100/metrics"), timeout))
        })
        .collect();
    for ((fqdn, timeout, deadline), s) in cases.iter().zip(scrapers) {
        let r = s
            .join()
            .expect("scraper thread")
            .unwrap_or_else(|e| panic!("scrape of {fqdn}: {e}"));
        assert_eq!(r.status, 504, "scrape of {fqdn}: {}", r.text());
        assert!(
            r.text().contains(fqdn),
            "the reason names {fqdn}: {:?}",
            r.text()
        );
        assert_eq!(
            r.text().trim_end().lines().count(),
            1,
            "a one-line reason: {:?}",
            r.text()
        );
        assert!(
            r.took >= *deadline && r.took < *deadline + Duration::from_secs(1),
            "scrape of {fqdn} with timeout {timeout:?} answered after {:?}",
            r.took
        );
    }

    for (asked, effective) in [(Some("30"), "2"), (None, "1"), (Some("1.5"), "1.5")] {
        let poll = RawPoll::send(port, "deadline.test");
        proxy.wait_for_polls(1);
        let scraper = thread::spawn(move || scrape(port, "http://deadline.test/metrics", asked));
        let r = poll
            .answer(Duration::from_secs(5))
            .expect("the poll gets the scrape");
        assert_eq!(r.status, 200, "poll answer: {}", r.text());
        let req = ScrapeRequest::from_bytes(&r.body, DEFAULT_MAX_HEAD).expect("a scrape request");
        assert_eq!(
            req.headers
                .get_all(SCRAPE_TIMEOUT_HEADER)
                .collect::<Vec<_>>(),
            [effective],
            "scrape asking for {asked:?}: the poll body says\n{}",
            r.text()
        );
        let id = req.id().expect("Id").to_string();
        let pushed = proxy.post("/push", &push_body(&id, 200, &[], b"up 1\n"));
        assert_eq!(pushed.status, 200, "push: {}", pushed.text());
        let got = scraper.join().expect("scraper thread").expect("answered");
        assert_eq!((got.status, got.body.as_slice()), (200, &b"up 1\n"[..]));
    }
}

/// A scrape that cannot succeed is answered before the scraper's deadline, by
/// --scrape.timeout-offset (500ms by default, at most a quarter of the deadline), so the
/// scraper shows the proxy's 504 and its reason, not its own time-out; the client's deadline
/// in the poll is as much shorter again, so that its reason reaches the proxy in time.
#[test]
fn a_scrape_that_cannot_succeed_is_answered_before_the_scrapers_deadline() {
    let proxy = Proxy::start(&[]);
    let port = proxy.port;
    let r = scrape(port, "http://nobody-at-all.test:9100/metrics", Some("2"))
        .expect("the scraper gets an answer");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("nobody-at-all.test"), "{:?}", r.text());
    assert!(
        r.took >= Duration::from_millis(1500) && r.took < Duration::from_secs(2),
        "answered after {:?}: want 1.5 s, before the scraper's 2 s",
        r.took
    );
    for (asked, client) in [("2", "1.125"), ("10", "9"), ("0.4", "0.225")] {
        let poll = RawPoll::send(port, "offset.test");
        proxy.wait_for_polls(1);
        let scraper =
            thread::spawn(move || scrape(port, "http://offset.test/metrics", Some(asked)));
        let r = poll
            .answer(Duration::from_secs(5))
            .expect("the poll gets the scrape");
        let req = ScrapeRequest::from_bytes(&r.body, DEFAULT_MAX_HEAD).expect("a scrape request");
        assert_eq!(
            req.headers.get(SCRAPE_TIMEOUT_HEADER),
            Some(client),
            "scrape asking for {asked}"
        );
        let id = req.id().expect("Id").to_string();
        let pushed = proxy.post("/push", &push_body(&id, 200, &[], b"up 1\n"));
        assert_eq!(pushed.status, 200, "push: {}", pushed.text());
        let got = scraper.join().expect("scraper thread").expect("answered");
        assert_eq!(got.status, 200);
    }
}

/// Prometheus' target page shows a failed scrape's status line, not its body: the proxy puts
/// its reason after the standard phrase there, and relays a pushed status line's reason as is.
#[test]
fn a_failed_scrape_says_why_in_its_status_line() {
    let proxy = Proxy::start(&[]);
    let port = proxy.port;
    let mut s = connect(port).expect("connect");
    s.write_all(&scrape_request(
        "http://host-a.example:9100/metrics",
        Some("2"),
        &[],
    ))
    .expect("write");
    let answer = read_all(s, Duration::from_secs(5));
    let want: &[u8] = b"HTTP/1.1 504 Gateway Timeout: no client polled for host-a.example within \
        1s500ms; is pushprox-client running there with --fqdn=host-a.example and --proxy-url \
        pointing at this proxy?\r\n";
    assert!(
        answer.starts_with(want),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    let poll = RawPoll::send(port, "slow.test");
    proxy.wait_for_polls(1);
    let scraper = thread::spawn(move || {
        let mut s = connect(port).expect("connect");
        s.write_all(&scrape_request("http://slow.test/metrics", Some("5"), &[]))
            .expect("write");
        read_all(s, Duration::from_secs(5))
    });
    let r = poll
        .answer(Duration::from_secs(5))
        .expect("the poll gets the scrape");
    let req = ScrapeRequest::from_bytes(&r.body, DEFAULT_MAX_HEAD).expect("a scrape request");
    let line = "HTTP/1.1 500 Internal Server Error: scrape of http://slow.test/metrics timed out";
    let push = push_body(req.id().expect("Id"), 500, &[], b"timed out\n");
    let push = [
        line.as_bytes(),
        &push[push.iter().position(|&b| b == b'\r').unwrap()..],
    ]
    .concat();
    assert_eq!(proxy.post("/push", &push).status, 200);
    let got = scraper.join().expect("scraper thread");
    assert!(
        got.starts_with(format!("{line}\r\n").as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

/// Issue 2: a client killed while its target is still answering must not leave the scraper
/// hanging: it gets an error status by its deadline.
#[test]
fn client_killed_mid_scrape_fails_the_scrape_by_its_deadline() {
    let proxy = Proxy::start(&[]);
    let targets = vec![Target::start(
        &host(15),
        Answer::Stall(Duration::from_secs(3)),
    )];
    let mut clients = proxy.clients_for(&targets);
    let port = proxy.port;
    let url = targets[0].url("/metrics");
    let scraper = thread::spawn(move || scrape(port, &url, Some("2")));
    assert!(
        wait_until(Duration::from_secs(2), || targets[0].hits() == 1),
        "the client never reached its target\n{}",
        clients[0].log_tail(20)
    );
    clients[0].kill9();
    let r = scraper
        .join()
        .expect("scraper thread")
        .expect("the scraper gets an answer, not a hang");
    assert_error_naming(&r, &targets[0].ip);
    assert!(
        r.took < Duration::from_millis(2900),
        "answered after {:?}, deadline 2s",
        r.took
    );
}

/// Issue 2: clients reconnect to a restarted proxy within their retry back-off.
#[test]
fn clients_come_back_after_the_proxy_restarts() {
    let mut proxy = Proxy::start(&[]);
    let targets = Target::echoes(16..=17);
    let _clients = proxy.clients_for(&targets);
    for t in &targets {
        let r = scrape(proxy.port, &t.url("/metrics?before=restart"), Some("5"))
            .expect("scrape before the restart");
        assert_eq!(r.status, 200, "{}", r.text());
    }

    proxy.restart(Duration::from_millis(500));
    let restarted = Instant::now();
    let mut fqdns: Vec<String> = targets.iter().map(|t| t.ip.clone()).collect();
    fqdns.sort();
    proxy.wait_for_clients(&fqdns, Duration::from_secs(5));
    for t in &targets {
        let path = "/metrics?after=restart";
        let r = scrape(proxy.port, &t.url(path), Some("5"))
            .unwrap_or_else(|e| panic!("scrape of {} after the restart: {e}", t.ip));
        assert_eq!(
            r.status,
            200,
            "scrape of {} after the restart: {}",
            t.ip,
            r.text()
        );
        assert!(r.text().starts_with(&t.echo_prefix(path)), "{:?}", r.text());
    }
    assert!(
        restarted.elapsed() < Duration::from_secs(5),
        "clients and scrapes took {:?} to come back (--proxy.retry.max-wait 1s)",
        restarted.elapsed()
    );
}

/// Issue 2: each kind of bad input gets a 4xx with a reason; afterwards the proxy still serves
/// and its threads are back near where they were.
#[test]
fn bad_input_is_refused_with_a_reason_and_leaves_nothing_behind() {
    let proxy = Proxy::start(&[]);
    let baseline = quiet_min(|| proxy.threads());
    let nobody = "http://nobody.test:9100/metrics";
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "garbage push",
            post_request("/push", b"garbage"),
            400,
            "garbage",
        ),
        (
            "push without Id",
            post_request("/push", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"),
            400,
            "Id",
        ),
        (
            "oversized poll body",
            post_request("/poll", &[b'a'; 2048]),
            413,
            "1024",
        ),
        ("empty poll body", post_request("/poll", b""), 400, "empty"),
        (
            "unknown path",
            get_request("/no/such/path"),
            404,
            "/no/such/path",
        ),
        ("wrong method", get_request("/poll"), 405, "POST"),
        (
            // The reason is checked in scrape_target_with_a_space_is_refused_with_a_reason.
            "malformed scrape target",
            BAD_HOST_WITH_SPACE.to_vec(),
            400,
            "",
        ),
        (
            "scrape target with a bad host name",
            scrape_request("http://bad^host/metrics", Some("5"), &[]),
            400,
            "bad^host",
        ),
        (
            "scrape with a bad timeout header",
            scrape_request(nobody, Some("soon"), &[]),
            400,
            "soon",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, request, status, needle) in &cases {
        match exchange(proxy.port, request, Duration::from_secs(5)) {
            Ok(r) if r.status == *status && r.text().contains(needle) => {}
            Ok(r) => wrong.push(format!(
                "{name}: got {} {:?}, want {status} with a reason containing {needle:?}",
                r.status,
                r.text()
            )),
            Err(e) => wrong.push(format!("{name}: {e}")),
        }
    }
    // Half a request, then the connection closes: no answer is possible, nothing may remain.
    for half in [
        &b"GET /metr"[..],
        b"POST /push HTTP/1.1\r\nContent-Length: 100\r\n\r\nHTTP/1.1 200 OK\r\nId: x",
        b"POST /poll HTTP/1.1\r\nContent-Length: 20\r\n\r\nhalf",
        b"GET http://nobody.test/metrics HTTP/1.1\r\nHost: nob",
    ] {
        let mut s = connect(proxy.port).expect("connect");
        s.write_all(half).expect("write half a request");
        thread::sleep(Duration::from_millis(50));
        drop(s);
    }
    let healthy = proxy.get("/-/healthy");
    assert_eq!(healthy.status, 200, "still serving: {}", healthy.text());
    let settled = settles_to(Duration::from_secs(10), baseline + 1, || proxy.threads());
    assert!(
        wrong.is_empty(),
        "{} kinds of bad input were not refused as they should be:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        settled <= baseline + 1,
        "threads: {settled} 10s after the bad input, {baseline} before"
    );
}

/// Issue 2: a malformed scrape target gets 400 with a reason like every other bad input, so the
/// operator reading Prometheus' error sees what was wrong. (A target with a space is not even a
/// request line: tiny_http answers that one 400 itself, without a body, before the proxy sees
/// it; `bad_input_is_refused_with_a_reason_and_leaves_nothing_behind` checks its status.)
#[test]
fn malformed_scrape_target_is_refused_with_a_reason() {
    let proxy = Proxy::start(&[]);
    for (request, named) in [
        (
            &b"GET http://bad_host!/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            "bad_host!",
        ),
        (
            b"GET http://host:99999/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "host:99999",
        ),
        (
            b"GET http://:9100/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ":9100",
        ),
    ] {
        let r =
            exchange(proxy.port, request, Duration::from_secs(5)).expect("the request is answered");
        assert_eq!(r.status, 400, "{:?}", r.text());
        assert!(
            r.text().contains("malformed scrape target") && r.text().contains(named),
            "400 without a reason naming {named}: {:?}",
            r.text()
        );
    }
    assert_eq!(proxy.get("/-/healthy").status, 200, "still serving");
}
