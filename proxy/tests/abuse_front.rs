//! Issue 16: requests that are perfectly valid, but cheap for the sender and expensive or
//! exclusive for the proxy. Each test runs the attack against the real binaries and checks the
//! victims: real clients scraped through the proxy, `/-/healthy`, threads back to baseline.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

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
