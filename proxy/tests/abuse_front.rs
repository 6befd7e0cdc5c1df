//! Issue 16: requests that are perfectly valid, but cheap for the sender and expensive or
//! exclusive for the proxy. Each test runs the attack against the real binaries and checks the
//! victims: real clients scraped through the proxy, `/-/healthy`, threads back to baseline.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use pushprox_test_support::*;

/// Threads may differ from the baseline by this much (pool threads that have not ended yet).
const SLACK: usize = 3;

/// A connection that sends a head, then its body a byte at a time.
struct Trickler {
    stream: TcpStream,
    opened: Instant,
    closed: Option<Duration>,
}

impl Trickler {
    fn open(port: u16, head: &[u8]) -> Option<Trickler> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.write_all(head).ok()?;
        stream.set_nonblocking(true).ok()?;
        Some(Trickler {
            stream,
            opened: Instant::now(),
            closed: None,
        })
    }

    /// Sends one more byte; notes when the proxy answered or closed.
    fn step(&mut self) {
        if self.closed.is_some() {
            return;
        }
        let mut buf = [0u8; 512];
        let gone = match self.stream.read(&mut buf) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => self.stream.write(b"a").is_err(),
            Err(_) => true,
        };
        if gone {
            self.closed = Some(self.opened.elapsed());
        }
    }
}

/// Polls declaring 1,000 bytes and pushes whose pushed response trickles in, each sending a
/// byte a second (well within the 3 s read time-out of each read): every one is cut once the
/// read time-out has passed for its whole body, the threads they held end, and a real client
/// is scraped meanwhile.
#[test]
fn trickled_bodies_are_cut_at_the_read_timeout_and_threads_come_back() {
    const POLLS: usize = 150;
    const PUSHES: usize = 50;
    let read_timeout = Duration::from_secs(3);
    let mut proxy = Proxy::start(&["--web.read-timeout", "3s"]);
    let target = Target::start(&host(2), Answer::Echo);
    let _client = Client::start(&[proxy.port], &target.ip);
    proxy.wait_for_clients(std::slice::from_ref(&target.ip), Duration::from_secs(15));
    let threads0 = quiet_min(|| proxy.threads());

    let poll = b"POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nvictim";
    let push =
        b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 200 OK\r\nId: 1";
    let mut conns: Vec<Trickler> = (0..POLLS)
        .filter_map(|_| Trickler::open(proxy.port, poll))
        .chain((0..PUSHES).filter_map(|_| Trickler::open(proxy.port, push)))
        .collect();
    assert_eq!(
        conns.len(),
        POLLS + PUSHES,
        "could not open every connection"
    );

    let started = Instant::now();
    let mut peak = 0;
    let mut scraped = None;
    while started.elapsed() < Duration::from_secs(20) && conns.iter().any(|c| c.closed.is_none()) {
        for c in &mut conns {
            c.step();
        }
        peak = peak.max(proxy.threads());
        if scraped.is_none() {
            // The victim, while every trickler holds a thread.
            scraped = Some(scrape(proxy.port, &target.url("/metrics"), Some("5")));
        }
        thread::sleep(Duration::from_secs(1));
    }
    let scraped = scraped.expect("a scrape ran").expect("the scrape answered");
    assert_eq!(scraped.status, 200, "{}", scraped.text());
    assert!(scraped.text().starts_with("target="), "{}", scraped.text());

    let open = conns.iter().filter(|c| c.closed.is_none()).count();
    assert_eq!(
        open, 0,
        "{open} trickling connections still open after 20 s"
    );
    let slowest = conns
        .iter()
        .filter_map(|c| c.closed)
        .max()
        .unwrap_or_default();
    // Cut at the read time-out after the head, seen at the next byte a second later.
    assert!(
        slowest < read_timeout + Duration::from_secs(4),
        "a trickled body was cut only after {slowest:?}"
    );
    assert!(
        peak > threads0 + POLLS / 2,
        "the attack never held threads (peak {peak}, baseline {threads0}): it tested nothing"
    );
    let threads = settles_to(Duration::from_secs(10), threads0 + SLACK, || {
        proxy.threads()
    });
    assert!(
        threads <= threads0 + SLACK,
        "threads {threads} (from {threads0}, peak {peak}): {}",
        resources(proxy.pid())
    );
    assert!(proxy.alive());
    let again = scrape(proxy.port, &target.url("/metrics"), Some("5")).expect("scrape after");
    assert_eq!(again.status, 200, "{}", again.text());
}

/// A connection to the proxy on `port` from source address `from` (a loopback address other
/// than 127.0.0.1 stands for another host).
fn connect_from(from: [u8; 4], port: u16) -> Option<TcpStream> {
    use std::os::fd::FromRawFd;
    let sockaddr = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; the sockaddr_in values
    // live across each call; the descriptor goes to the TcpStream (or is closed) exactly once.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let local = sockaddr(from, 0);
        let remote = sockaddr([127, 0, 0, 1], port);
        let bound = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) == 0;
        if !bound || libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            libc::close(fd);
            return None;
        }
        Some(TcpStream::from_raw_fd(fd))
    }
}

/// What `stream` received so far without waiting: `None` while nothing came, the first
/// bytes of an answer, or "" when it was closed.
fn answer_now(stream: &mut TcpStream) -> Option<String> {
    stream.set_nonblocking(true).ok()?;
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) if e.kind() == ErrorKind::WouldBlock => None,
        Err(_) => Some(String::new()),
    }
}

/// Whether `stream` was answered or closed within `within`; the answer's first bytes.
fn answer_or_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(within)).ok()?;
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(_) => Some(String::new()),
    }
}

/// One peer (127.0.0.2) holds as many polls for made-up FQDNs and as many silent connections
/// as it can: past its per-address caps it gets 503 and closed connections, parked polls never
/// take the reserved share, and its unauthenticated polls expire; a real client (127.0.0.1)
/// is scraped with 200 through its polls and pushes, and /-/healthy answers, throughout.
#[test]
fn one_peer_cannot_take_the_connections_others_need() {
    const ATTACKER: [u8; 4] = [127, 0, 0, 2];
    let mut proxy = Proxy::start(&[
        "--web.max-connections",
        "300",
        "--web.reserved-connections",
        "40",
        "--web.max-idle-per-address",
        "30",
        "--poll.max-parked-per-address",
        "200",
        "--poll.max-hold-unauthenticated",
        "10s",
    ]);
    let target = Target::start(&host(3), Answer::Echo);
    let _client = Client::start(&[proxy.port], &target.ip);
    proxy.wait_for_clients(std::slice::from_ref(&target.ip), Duration::from_secs(15));

    // Polls until the proxy refuses them: 200 park, then 503.
    let polls: Vec<TcpStream> = made_up_polls(ATTACKER, proxy.port, 260);
    assert_eq!(polls.len(), 260, "could not send every poll");
    thread::sleep(Duration::from_secs(1));
    let (mut parked, answered): (Vec<_>, Vec<_>) = polls
        .into_iter()
        .map(|mut s| (answer_now(&mut s), s))
        .partition(|(a, _)| a.is_none());
    assert_eq!(parked.len(), 200, "parked polls from one address");
    for (a, _) in &answered {
        let a = a.as_deref().unwrap_or_default();
        assert!(a.starts_with("HTTP/1.1 503 "), "{a:?}");
    }

    // The refused polls' connections stay open, idle: 30 of them in the address's idle share,
    // the other 30 closed after a moment. Closed by the attacker, they free the share.
    drop(answered);
    thread::sleep(Duration::from_millis(500));

    // Silent connections: 30 stay, the rest are closed after a moment.
    let silent: Vec<TcpStream> = (0..60)
        .filter_map(|_| connect_from(ATTACKER, proxy.port))
        .collect();
    thread::sleep(Duration::from_secs(1));
    let (idle, closed): (Vec<_>, Vec<_>) = silent
        .into_iter()
        .map(|mut s| (answer_now(&mut s), s))
        .partition(|(a, _)| a.is_none());
    assert_eq!(
        (idle.len(), closed.len()),
        (30, 30),
        "silent connections kept, closed"
    );
    for (a, _) in &closed {
        assert_eq!(
            a.as_deref(),
            Some(""),
            "a silent connection is closed unanswered"
        );
    }

    // The victims, while the attacker holds 230 of the 300 connections.
    for _ in 0..3 {
        let r = scrape(proxy.port, &target.url("/metrics"), Some("5")).expect("scrape");
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().starts_with("target="), "{}", r.text());
        let h = exchange(
            proxy.port,
            &get_request("/-/healthy"),
            Duration::from_secs(5),
        )
        .expect("/-/healthy");
        assert_eq!((h.status, h.text().as_str()), (200, "OK\n"));
    }
    let metrics = proxy.metrics();
    assert_eq!(
        metric(
            &metrics,
            "pushprox_connections_refused_total{reason=\"parked_per_address\"}"
        ),
        Some(60.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "pushprox_connections_refused_total{reason=\"idle_per_address\"}"
        ),
        // 30 of the refused polls' connections, and 30 silent ones.
        Some(60.0)
    );

    // Unauthenticated polls are answered 408 at --poll.max-hold-unauthenticated (10 s),
    // even with --poll.max-hold 0s.
    let mut expired = 0;
    for (_, s) in &mut parked {
        if answer_or_close(s, Duration::from_secs(12))
            .is_some_and(|a| a.starts_with("HTTP/1.1 408 "))
        {
            expired += 1;
        }
    }
    assert_eq!(expired, 200, "unauthenticated polls expired");
    let r = scrape(proxy.port, &target.url("/metrics"), Some("5")).expect("scrape after");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(proxy.alive());
}

/// Parked polls, whoever sends them, never take the reserved share: at
/// --web.max-connections 100 with 40 reserved, polls from addresses exempt from the
/// per-address cap (a trusted balancer) park 60, the rest get 503, and scrapes still pass.
#[test]
fn parked_polls_leave_the_reserved_share_to_scrapes() {
    const BALANCER: [u8; 4] = [127, 0, 0, 4];
    let proxy = Proxy::start(&[
        "--web.max-connections",
        "100",
        "--web.reserved-connections",
        "40",
        "--web.trusted-proxies",
        "127.0.0.4",
    ]);
    let target = Target::start(&host(5), Answer::Echo);
    let _client = Client::start(&[proxy.port], &target.ip);
    proxy.wait_for_clients(std::slice::from_ref(&target.ip), Duration::from_secs(15));
    let polls: Vec<TcpStream> = made_up_polls(BALANCER, proxy.port, 80);
    thread::sleep(Duration::from_secs(1));
    let mut held = Vec::new();
    let mut refused = 0;
    for mut s in polls {
        match answer_now(&mut s) {
            None => held.push(s),
            Some(a) if a.starts_with("HTTP/1.1 503 ") => refused += 1,
            Some(a) => panic!("unexpected answer {a:?}"),
        }
    }
    // The real client's own polls (up to its share) are parked too.
    let parked_total = proxy
        .metric("pushprox_polls_waiting")
        .expect("pushprox_polls_waiting") as usize;
    assert_eq!(parked_total, 60, "parked polls stop at 100 - 40");
    assert!(
        refused > 0 && held.len() < 60,
        "held {}, refused {refused}",
        held.len()
    );
    let r = scrape(proxy.port, &target.url("/metrics"), Some("5")).expect("scrape");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        proxy.metric("pushprox_connections_refused_total{reason=\"parked_share\"}")
            >= Some(refused as f64)
    );
}

/// Everything `stream` sends within `within` (the connection may stay open).
fn read_for(stream: &mut TcpStream, within: Duration) -> String {
    let until = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A pushed 304 carrying a body (a malicious or broken client) reaches the scraper as a 304
/// alone: the body, here a whole second response, is never written on the scraper's
/// connection, where Prometheus would read it as the answer to its next scrape (RFC 9112 6.3).
#[test]
fn a_pushed_304_is_relayed_without_its_body() {
    let proxy = Proxy::start(&[]);
    let poll = RawPoll::send(proxy.port, "forged.test");
    assert_eq!(
        proxy.wait_for_metric("pushprox_polls_waiting", 1.0, Duration::from_secs(5)),
        Some(1.0)
    );
    let mut scraper = connect(proxy.port).expect("scraper connects");
    scraper
        .write_all(&scrape_request(
            "http://forged.test:9100/metrics",
            Some("5"),
            &[],
        ))
        .expect("scrape sent");
    let r = poll
        .answer(Duration::from_secs(5))
        .expect("the poll gets the scrape");
    let req = pushprox_protocol::ScrapeRequest::from_bytes(&r.body, 64 * 1024).expect("scrape");
    let id = req.id().expect("Id").to_string();
    let forged = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged";
    let pushed = proxy.post("/push", &push_body(&id, 304, &[("ETag", "\"v1\"")], forged));
    assert_eq!(pushed.status, 200, "push: {}", pushed.text());
    let seen = read_for(&mut scraper, Duration::from_secs(2));
    assert!(
        seen.starts_with("HTTP/1.1 304 Not Modified\r\n"),
        "{seen:?}"
    );
    assert!(seen.contains("\r\nETag: \"v1\"\r\n"), "{seen:?}");
    assert!(
        seen.ends_with("\r\n\r\n"),
        "a body followed the head: {seen:?}"
    );
    assert_eq!(seen.matches("HTTP/1.1").count(), 1, "{seen:?}");
    assert!(!seen.contains("forged"), "{seen:?}");
    assert!(!seen.contains("Content-Length"), "{seen:?}");
}

/// A push that waits for `100 Continue` and declares more than --push.max-body is answered
/// 413 at once: no invitation to send a body that would be refused.
#[test]
fn an_oversized_push_waiting_for_100_continue_gets_413_at_once() {
    let proxy = Proxy::start(&["--push.max-body", "1KiB"]);
    let mut push = connect(proxy.port).expect("connect");
    push.write_all(
        b"POST /push HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n",
    )
    .expect("head written");
    let seen = read_for(&mut push, Duration::from_secs(2));
    assert!(
        seen.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
        "{seen:?}"
    );
    assert!(!seen.contains("100 Continue"), "{seen:?}");
    assert!(seen.contains("--push.max-body"), "{seen:?}");
}

/// A flood of refused requests writes a bounded number of warnings, each counting the ones
/// it stands for, while every refusal is still answered.
#[test]
fn a_flood_of_refusals_writes_a_bounded_number_of_log_lines() {
    let proxy = Proxy::start(&[]);
    for _ in 0..300 {
        let r = exchange(
            proxy.port,
            &post_request("/poll", b"<html>"),
            Duration::from_secs(5),
        )
        .expect("refused poll answered");
        assert_eq!(r.status, 400, "{}", r.text());
    }
    let log = proxy.log_tail(1_000_000);
    let lines = log.matches("refused poll from").count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} warnings for 300 refused polls:\n{log}"
    );
}

/// A push whose scrape is waiting, trickling its body a byte every half second, is cut at the
/// scrape's deadline (3 s), long before the read time-out (30 s) that bounds other bodies.
#[test]
fn a_trickled_push_is_cut_at_its_scrapes_deadline() {
    let proxy = Proxy::start(&[]);
    let poll = RawPoll::send(proxy.port, "slowpush.test");
    assert_eq!(
        proxy.wait_for_metric("pushprox_polls_waiting", 1.0, Duration::from_secs(5)),
        Some(1.0)
    );
    let port = proxy.port;
    let scraper =
        thread::spawn(move || scrape(port, "http://slowpush.test:9100/metrics", Some("3")));
    let r = poll
        .answer(Duration::from_secs(5))
        .expect("the poll gets the scrape");
    let req = pushprox_protocol::ScrapeRequest::from_bytes(&r.body, 64 * 1024).expect("scrape");
    let id = req.id().expect("Id").to_string();
    let pushed_head = format!("HTTP/1.1 200 OK\r\nId: {id}\r\nContent-Length: 500\r\n\r\n");
    let head = format!(
        "POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{pushed_head}",
        pushed_head.len() + 500
    );
    let mut push = Trickler::open(proxy.port, head.as_bytes()).expect("push sent");
    while push.closed.is_none() && push.opened.elapsed() < Duration::from_secs(20) {
        push.step();
        thread::sleep(Duration::from_millis(500));
    }
    let cut = push.closed.expect("the trickled push was never cut");
    assert!(cut < Duration::from_secs(6), "cut after {cut:?}");
    // The scraper got the head and a truncated body, or an error: never a complete answer.
    match scraper.join().expect("scraper thread") {
        Ok(r) => assert!(r.body.len() < 500, "{} bytes", r.body.len()),
        Err(e) => assert!(!e.is_empty()),
    }
}

/// `n` polls for made-up FQDNs sent from `from`, each on its own connection; those that could
/// not be sent are left out.
fn made_up_polls(from: [u8; 4], port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|i| {
            let mut s = connect_from(from, port)?;
            let body = format!("made-up-{i}.example");
            let poll = format!(
                "POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(poll.as_bytes()).ok()?;
            Some(s)
        })
        .collect()
}
