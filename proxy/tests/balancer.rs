//! Behind a load balancer that forwards scrapes in origin form, as nginx does (`GET /metrics`
//! with the target gone): the balancer names the target in `X-PushProx-Target`, which the real
//! proxy believes only from `--web.trusted-proxies`. scripts/shards-e2e.sh runs the same with
//! nginx and Prometheus.

use std::process::Command;
use std::time::Duration;

use pushprox_test_support::*;

/// `GET /metrics` in origin form, as nginx forwards a proxy-form scrape, naming `target`.
fn forwarded_scrape(target: &str) -> Vec<u8> {
    format!(
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-PushProx-Target: {target}\r\nX-Prometheus-Scrape-Timeout-Seconds: 5\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn a_trusted_balancer_names_the_target_of_a_scrape() {
    let target = Target::start(&host(2), Answer::Echo);
    let proxy = Proxy::start(&["--web.trusted-proxies", "10.0.0.0/8,127.0.0.1"]);
    let _client = Client::start(&[proxy.port], &target.ip);
    proxy.wait_for_clients(std::slice::from_ref(&target.ip), Duration::from_secs(10));

    let r = exchange(
        proxy.port,
        &forwarded_scrape(&target.url("/metrics?x=1")),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log_tail(20)));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().starts_with(&target.echo_prefix("/metrics?x=1")),
        "the target answered the scrape: {:?}",
        r.text()
    );
    assert_eq!(target.hits(), 1);

    // Without the header, origin-form /metrics is the proxy's own, from a trusted peer too.
    let own = proxy.get("/metrics");
    assert_eq!(own.status, 200);
    assert!(
        own.text().contains("pushprox_proxy_clients 1"),
        "{}",
        own.text()
    );
    assert_eq!(target.hits(), 1);
}

#[test]
fn the_header_from_an_untrusted_peer_is_ignored() {
    let target = Target::start(&host(3), Answer::Echo);
    // The test connects from 127.0.0.1, which is not in the list.
    let proxy = Proxy::start(&["--web.trusted-proxies", "10.0.0.0/8,127.0.0.2"]);
    let _client = Client::start(&[proxy.port], &target.ip);
    proxy.wait_for_clients(std::slice::from_ref(&target.ip), Duration::from_secs(10));

    let r = exchange(
        proxy.port,
        &forwarded_scrape(&target.url("/metrics")),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log_tail(20)));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("pushprox_proxy_clients 1"),
        "the proxy's own metrics: {:?}",
        r.text()
    );
    assert_eq!(target.hits(), 0, "no scrape reached the target");
}

#[test]
fn a_bad_network_is_refused_at_start() {
    let out = Command::new(proxy_bin())
        .args(["-l", "127.0.0.1:0", "--web.trusted-proxies", "10.0.0.0/33"])
        .output()
        .expect("run the proxy");
    assert_eq!(out.status.code(), Some(2), "bad flags exit 2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prefix length must be 0 to 32"), "{err}");
}
