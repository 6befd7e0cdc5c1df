//! Liveness an alert can use: an idle client connected to the REAL proxy (the sibling binary)
//! shows its poll open (`pushprox_client_polls_open 1`, and
//! `pushprox_client_last_poll_open_timestamp_seconds` moving with the clock) without ever being
//! scraped, and the proxy counts it in `pushprox_proxy_clients_polling`; once the proxy is gone
//! the timestamp stops. Loopback only; children killed on drop.

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushprox_test_support::*;

fn metric(addr: &str, name: &str) -> Option<f64> {
    let text = http_get(addr, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A client of `proxy_url` for `fqdn`, metrics on `metrics_addr`, that retries a failed poll
/// after `retry`, always.
fn start_client(proxy_url: &str, fqdn: &str, metrics_addr: &str, retry: &str) -> ChildGuard {
    ChildGuard::start(
        quiet_client(proxy_url, fqdn, metrics_addr).args([
            "--proxy.retry.initial-wait",
            retry,
            "--proxy.retry.max-wait",
            retry,
        ]),
        "the client",
    )
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[test]
fn an_idle_connected_client_shows_its_poll_open_and_a_stopped_proxy_stops_it() {
    let proxy_port = free_port();
    let proxy_addr = format!("127.0.0.1:{proxy_port}");
    let mut proxy = quiet_proxy(&proxy_addr);
    assert!(wait_until(WAIT, || http_get_ok(&proxy_addr, "/-/healthy")));

    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let proxy_url = format!("http://{proxy_addr}/");
    let _client = start_client(&proxy_url, "idle.example", &metrics_addr, "200ms");
    assert!(wait_until(WAIT, || http_get_ok(
        &metrics_addr,
        "/-/healthy"
    )));

    // Never scraped: the poll is open, and the timestamp is now, for 3 s in a row.
    assert!(
        wait_until(WAIT, || metric(&metrics_addr, "pushprox_client_polls_open")
            == Some(1.0)),
        "{}",
        http_get(&metrics_addr, "/metrics")
    );
    for _ in 0..3 {
        let ts = metric(
            &metrics_addr,
            "pushprox_client_last_poll_open_timestamp_seconds",
        )
        .expect("the liveness metric");
        assert!((now() - ts).abs() < 1.0, "timestamp {ts}, now {}", now());
        assert_eq!(
            metric(
                &metrics_addr,
                "pushprox_client_last_successful_poll_timestamp_seconds"
            ),
            Some(0.0),
            "no scrape, no 408: the old metric does not move, which is why this one exists"
        );
        thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(metric(&proxy_addr, "pushprox_proxy_clients"), Some(1.0));
    assert_eq!(
        metric(&proxy_addr, "pushprox_proxy_clients_polling"),
        Some(1.0)
    );

    // The proxy goes: no poll is open, and the timestamp stays where it was.
    let _ = proxy.0.kill();
    let _ = proxy.0.wait();
    let stopped = now();
    assert!(
        wait_until(WAIT, || metric(&metrics_addr, "pushprox_client_polls_open")
            == Some(0.0)),
        "{}",
        http_get(&metrics_addr, "/metrics")
    );
    thread::sleep(Duration::from_millis(1500));
    let ts = metric(
        &metrics_addr,
        "pushprox_client_last_poll_open_timestamp_seconds",
    )
    .expect("the liveness metric");
    assert!(
        ts < stopped + 0.5 && ts > stopped - 5.0,
        "timestamp {ts} should stay at the proxy's end {stopped}"
    );
}

fn http_get_ok(addr: &str, path: &str) -> bool {
    std::net::TcpStream::connect(addr).is_ok() && http_get(addr, path).starts_with("HTTP/1.")
}

/// A balancer whose proxies are all gone answers every poll at once (here `502`): the polls
/// are written, but none is held, so the client does not look alive.
#[test]
fn polls_answered_with_errors_do_not_count_as_open() {
    use std::io::{BufReader, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&answered);
    let balancer = Server::start(Arc::new(AtomicBool::new(false)), move |conn| {
        let mut writer = conn.try_clone().expect("clone the connection");
        let mut reader = BufReader::new(conn);
        while read_request(&mut reader).is_some() {
            let answer = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 23\r\n\r\n<html>no upstream</html>";
            if writer.write_all(&answer[..answer.len() - 1]).is_err() {
                return;
            }
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let proxy_url = format!("http://{}/", balancer.addr);
    let _client = start_client(&proxy_url, "orphan.example", &metrics_addr, "100ms");
    assert!(wait_until(WAIT, || answered.load(Ordering::SeqCst) >= 5));
    assert_eq!(
        metric(
            &metrics_addr,
            "pushprox_client_last_poll_open_timestamp_seconds"
        ),
        Some(0.0),
        "{}",
        http_get(&metrics_addr, "/metrics")
    );
    let errors = metric(&metrics_addr, "pushprox_client_poll_errors_total").unwrap_or(0.0);
    assert!(errors >= 5.0, "{errors}");
}
