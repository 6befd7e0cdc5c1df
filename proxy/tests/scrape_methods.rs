//! Issue 16: a scrape is GET or HEAD. Any other method through the proxy (`curl -X DELETE -x
//! proxy http://host:9100/api/x`) is answered 405 with `Allow: GET, HEAD` and counted, and
//! never reaches the client, let alone the target.

use std::time::Duration;

use pushprox_test_support::*;

const REFUSED: &str = "pushprox_scrapes_refused_total{reason=\"method_not_allowed\"}";

/// A request in absolute form with `method`, as a scraper sends it through `proxy_url`.
fn scrape_with(method: &str, url: &str) -> Vec<u8> {
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    format!(
        "{method} {url} HTTP/1.1\r\nHost: {authority}\r\nX-Prometheus-Scrape-Timeout-Seconds: 5\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn methods_other_than_get_and_head_are_refused_405_and_never_reach_the_target() {
    let proxy = Proxy::start(&[]);
    let target = Target::start(&host(2), Answer::Echo);
    let _client = Client::start(&[proxy.port], &target.ip);
    proxy.wait_for_clients(std::slice::from_ref(&target.ip), Duration::from_secs(10));
    assert_eq!(proxy.metric(REFUSED), Some(0.0));

    let api = target.url("/api/x");
    for (i, method) in ["DELETE", "POST", "PUT", "PATCH", "OPTIONS", "TRACE", "get"]
        .into_iter()
        .enumerate()
    {
        let reply = exchange(
            proxy.port,
            &scrape_with(method, &api),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!(reply.status, 405, "{method}: {}", reply.text());
        assert_eq!(reply.header("Allow"), Some("GET, HEAD"), "{method}");
        assert!(reply.text().contains(method), "{method}: {}", reply.text());
        assert_eq!(proxy.metric(REFUSED), Some((i + 1) as f64), "{method}");
    }
    assert_eq!(target.hits(), 0, "{}", target.events());

    // GET still goes through.
    let get = exchange(
        proxy.port,
        &scrape_with("GET", &api),
        Duration::from_secs(10),
    )
    .expect("a GET scrape");
    assert_eq!(get.status, 200, "{}", get.text());
    assert!(
        get.text().starts_with(&target.echo_prefix("/api/x")),
        "{}",
        get.text()
    );
    assert_eq!(target.hits(), 1, "{}", target.events());
    assert_eq!(proxy.metric(REFUSED), Some(7.0));
}
