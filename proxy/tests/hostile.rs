//! Issue 8: what one unauthenticated peer can do to the proxy's HTTP front. Every attack ends
//! with the proxy alive, its threads and descriptors back where they were, and a real request
//! answered.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use pushprox_test_support::*;

/// Threads and descriptors may differ from the baseline by this much (pool threads that have
/// not ended yet).
const SLACK: usize = 3;
/// Pooled connection threads end 2 s after their last work.
const SETTLE_WITHIN: Duration = Duration::from_secs(10);

fn assert_serving(proxy: &mut Proxy) {
    assert!(proxy.alive(), "the proxy died:\n{}", proxy.log_tail(30));
    let healthy = exchange(
        proxy.port,
        &get_request("/-/healthy"),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("/-/healthy failed: {e}\n{}", proxy.log_tail(30)));
    assert_eq!(healthy.status, 200);
    assert_eq!(healthy.text(), "OK\n");
}

fn assert_back_to(proxy: &Proxy, threads0: usize, fds0: usize) {
    let threads = settles_to(SETTLE_WITHIN, threads0 + SLACK, || proxy.threads());
    let fds = settles_to(SETTLE_WITHIN, fds0 + SLACK, || proxy.fds());
    assert!(
        threads <= threads0 + SLACK && fds <= fds0 + SLACK,
        "threads {threads} (from {threads0}), fds {fds} (from {fds0}): {}",
        resources(proxy.pid())
    );
}

/// tiny_http leaked a descriptor and a thread for each of these and died after 9,996.
#[test]
fn ten_thousand_huge_declared_bodies_on_connections_closed_at_once() {
    const REQUESTS: usize = 10_000;
    let mut proxy = Proxy::start(&[]);
    let threads0 = quiet_min(|| proxy.threads());
    let fds0 = quiet_min(|| proxy.fds());
    let started = Instant::now();
    let mut sent = 0;
    for _ in 0..REQUESTS {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", proxy.port)) else {
            continue;
        };
        let _ = s.write_all(
            b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
        );
        drop(s);
        sent += 1;
    }
    assert_eq!(sent, REQUESTS, "only {sent} requests in 60 s");
    assert_serving(&mut proxy);
    assert_back_to(&proxy, threads0, fds0);
}

#[test]
fn idle_connections_beyond_the_open_files_limit_are_refused_and_then_served() {
    // 200 descriptors: 136 connections fit (64 are kept for the proxy itself).
    let mut proxy = Proxy::start_with_open_files(200, &[]);
    let mut idle = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", proxy.port)) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut first = [0u8; 12];
        match s.read(&mut first) {
            Ok(12) if &first == b"HTTP/1.1 503" => refused += 1,
            _ => idle.push(s),
        }
    }
    assert!(
        refused >= 100,
        "{refused} of 300 connections refused with 503; {} idle",
        idle.len()
    );
    assert!(proxy.alive(), "the proxy died:\n{}", proxy.log_tail(30));
    let metrics = exchange(proxy.port, &get_request("/metrics"), Duration::from_secs(2));
    assert!(
        metrics.as_ref().is_ok_and(|r| r.status == 503),
        "at the limit, a new connection gets 503: {metrics:?}"
    );
    drop(idle);
    let served = wait_until(Duration::from_secs(10), || {
        exchange(
            proxy.port,
            &get_request("/-/healthy"),
            Duration::from_secs(2),
        )
        .is_ok_and(|r| r.status == 200)
    });
    assert!(
        served,
        "not serving after the idle connections went:\n{}",
        proxy.log_tail(30)
    );
    let busy = proxy.metric("pushprox_rejected_busy_total").unwrap_or(0.0);
    assert!(busy >= 100.0, "pushprox_rejected_busy_total {busy}");
}

/// Sends `line` over and over until the proxy stops reading, or `limit` bytes went.
fn stream_forever(
    port: u16,
    start: &'static [u8],
    line: &'static [u8],
    limit: usize,
) -> (usize, Vec<u8>) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, Vec::new());
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let mut sent = 0;
    if s.write_all(start).is_ok() {
        sent += start.len();
        while sent < limit && s.write_all(line).is_ok() {
            sent += line.len();
        }
    }
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    (sent, answer)
}

#[test]
fn endless_header_lines_cost_bounded_memory() {
    static BLOCK: [u8; 64 * 1024] = [b'a'; 64 * 1024];
    let mut proxy = Proxy::start(&[]);
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let port = proxy.port;
            thread::spawn(move || {
                stream_forever(
                    port,
                    b"GET /-/healthy HTTP/1.1\r\nX-Long: ",
                    &BLOCK,
                    256 << 20,
                )
            })
        })
        .chain(std::iter::once({
            let port = proxy.port;
            thread::spawn(move || {
                stream_forever(
                    port,
                    b"GET /-/healthy HTTP/1.1\r\n",
                    b"X-A: b\r\n",
                    1_000_000 * 8,
                )
            })
        }))
        .collect();
    for attacker in attackers {
        let (sent, answer) = attacker.join().expect("attacker thread");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431 "),
            "after {sent} bytes: {answer:?}"
        );
        assert!(sent < 16 << 20, "the proxy read {sent} bytes of one head");
    }
    let peak = proxy.peak_rss_kib();
    assert!(peak <= 32 * 1024, "peak RSS {peak} KiB");
    assert_serving(&mut proxy);
}

#[test]
fn a_head_trickled_a_byte_at_a_time_is_cut_at_the_read_timeout() {
    let mut proxy = Proxy::start(&["--web.read-timeout", "2s"]);
    let mut s = connect(proxy.port).expect("connect");
    let started = Instant::now();
    let head =
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut_after = None;
    for byte in head {
        if s.write_all(&[*byte]).is_err() {
            cut_after = Some(started.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(250));
        if started.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.read_to_end(&mut answer);
    let answered_after = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(
        cut_after.unwrap_or(answered_after) < Duration::from_secs(4),
        "each byte came within the read time-out, but the whole head took longer: cut after {cut_after:?}"
    );
    assert_serving(&mut proxy);
}

#[test]
fn ambiguous_requests_are_refused_and_their_connections_closed() {
    let mut proxy = Proxy::start(&[]);
    for (request, why) in [
        (
            &b"GET http://h.test:9100/metrics HTTP/1.1\r\nHost: h.test:9100\r\nX-A: 1\nId: 5\r\n\r\n"[..],
            "bare LF",
        ),
        (
            b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /clients HTTP/1.1\r\n\r\n",
            "Content-Length together with Transfer-Encoding",
        ),
        (
            b"POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            "two different Content-Length",
        ),
        (
            b"POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
            "not a decimal number",
        ),
        (
            b"POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            "unsupported Transfer-Encoding",
        ),
    ] {
        let mut s = connect(proxy.port).expect("connect");
        s.write_all(request).expect("write");
        let answer = read_all(s, Duration::from_secs(5));
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{why}: {text:?}");
        assert!(text.contains("Connection: close\r\n"), "{why}: {text:?}");
        assert!(text.contains(why), "{why}: {text:?}");
        // One answer only: the smuggled second request was never read.
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{why}: {text:?}");
    }
    assert_eq!(proxy.metric("pushprox_polls_waiting"), Some(0.0));
    assert_serving(&mut proxy);
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let proxy = Proxy::start(&[]);
    let mut s = connect(proxy.port).expect("connect");
    s.write_all(
        b"POST /poll HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 12\r\n\r\n",
    )
    .expect("write the head");
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).expect("an interim answer");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"expect.test\n").expect("write the body");
    let polls = wait_until(Duration::from_secs(5), || {
        proxy.metric("pushprox_polls_waiting") == Some(1.0)
    });
    assert!(polls, "the poll was not parked");
}
