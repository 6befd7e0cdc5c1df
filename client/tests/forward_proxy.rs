//! HTTP_PROXY and friends are not applied to a proxy URL on loopback, as Go's net/http does
//! not: a client with HTTP_PROXY pointing at a port where nothing listens still reaches the
//! REAL proxy (the sibling binary) on 127.0.0.1 and polls it. Loopback only; children killed
//! on drop.

use pushprox_test_support::*;

#[test]
fn a_loopback_proxy_url_is_reached_directly_whatever_http_proxy_says() {
    let proxy_port = free_port();
    let proxy_addr = format!("127.0.0.1:{proxy_port}");
    let _proxy = quiet_proxy(&proxy_addr);
    assert!(wait_until(WAIT, || std::net::TcpStream::connect(
        &proxy_addr
    )
    .is_ok()));

    // A forward proxy nobody runs: every request sent through it would fail.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let proxy_url = format!("http://{proxy_addr}/");
    let _client = ChildGuard::start(
        quiet_client(&proxy_url, "direct.example", &metrics_addr)
            .env("HTTP_PROXY", &nowhere)
            .env("http_proxy", &nowhere)
            .env("ALL_PROXY", &nowhere)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy"),
        "the client",
    );
    let polling = wait_until(WAIT, || {
        std::net::TcpStream::connect(&metrics_addr).is_ok()
            && http_get(&metrics_addr, "/metrics").contains("\npushprox_client_polls_open 1\n")
    });
    assert!(
        polling,
        "the client did not reach the proxy directly:\n{}",
        http_get(&metrics_addr, "/metrics")
    );
    assert!(
        http_get(&proxy_addr, "/clients").contains("\"direct.example\""),
        "{}",
        http_get(&proxy_addr, "/clients")
    );
}
