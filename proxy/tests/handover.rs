//! Issue 18: the answers that hand clients and scrapes to another proxy: `404` with
//! `X-PushProx-Retry: next`, which a balancer retries on its next server and our client takes
//! as "poll again at once"; never on a response a client pushed.

use std::process::Command;
use std::thread;
use std::time::Duration;

use pushprox_test_support::*;

const RETRY: &str = "X-PushProx-Retry";
const PASSED_ON: &str = "pushprox_scrapes_total{outcome=\"passed_on\"}";

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill -TERM {pid}: {e}"));
    assert!(status.success(), "kill -TERM {pid} failed: {status}");
}

#[test]
fn sigterm_answers_a_parked_poll_come_back_now_and_the_proxy_exits_0() {
    let mut proxy = Proxy::start(&["--shutdown.timeout", "5s"]);
    let fqdn = "parked.handover.test".to_string();
    let poll = RawPoll::send(proxy.port, &fqdn);
    proxy.wait_for_clients(std::slice::from_ref(&fqdn), Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(5), || proxy
            .metric("pushprox_polls_waiting")
            == Some(1.0)),
        "the poll is not parked\n{}",
        proxy.log_tail(20)
    );
    sigterm(proxy.pid());
    let answer = poll
        .answer(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the parked poll got no answer: {e}\n{}", proxy.log_tail(20)));
    assert_eq!(
        (
            answer.status,
            answer.header(RETRY),
            answer.header("Retry-After")
        ),
        (404, Some("next"), Some("0")),
        "the parked poll's answer: {:?}",
        answer.text()
    );
    assert!(
        answer.text().contains("stopping"),
        "the reason says the proxy stops: {:?}",
        answer.text()
    );
    // No scrape in progress: it exits at once, 0.
    assert!(
        wait_until(Duration::from_secs(5), || !proxy.alive()),
        "the proxy did not exit within 5 s of SIGTERM with nothing in progress\n{}",
        proxy.log_tail(20)
    );
    assert!(
        proxy.log_tail(5).contains("level=info msg=stopped"),
        "the proxy did not stop cleanly\n{}",
        proxy.log_tail(20)
    );
}

#[test]
fn a_scrape_for_an_fqdn_that_does_not_poll_here_is_passed_on_after_the_wait() {
    let proxy = Proxy::start(&["--scrape.unknown-fqdn-wait", "300ms"]);
    let reply = scrape(
        proxy.port,
        "http://elsewhere.handover.test:9100/metrics",
        Some("10"),
    )
    .unwrap_or_else(|e| panic!("no answer: {e}"));
    assert_eq!(
        (reply.status, reply.header(RETRY)),
        (404, Some("next")),
        "{:?}",
        reply.text()
    );
    assert!(
        reply.text().contains("elsewhere.handover.test")
            && reply.text().contains("--scrape.unknown-fqdn-wait"),
        "the reason names the FQDN and the flag: {:?}",
        reply.text()
    );
    // After the wait, long before the 10 s deadline (margin for a busy machine).
    assert!(
        reply.took >= Duration::from_millis(300) && reply.took < Duration::from_secs(5),
        "answered after {:?}",
        reply.took
    );
    assert_eq!(proxy.metric(PASSED_ON), Some(1.0));

    // A client that polls here is served as always.
    let target = Target::start("127.0.0.1", Answer::Echo);
    let _client = Client::start(&[proxy.port], "127.0.0.1");
    proxy.wait_for_clients(&["127.0.0.1".to_string()], Duration::from_secs(5));
    let reply = scrape(proxy.port, &target.url("/metrics"), Some("10"))
        .unwrap_or_else(|e| panic!("no answer: {e}"));
    assert_eq!(reply.status, 200, "{:?}", reply.text());
    assert_eq!(reply.header(RETRY), None);
}

#[test]
fn without_the_flag_a_scrape_waits_its_deadline_for_a_poll() {
    let proxy = Proxy::start(&[]);
    let reply = scrape(
        proxy.port,
        "http://nobody.handover.test:9100/metrics",
        Some("2"),
    )
    .unwrap_or_else(|e| panic!("no answer: {e}"));
    assert_eq!((reply.status, reply.header(RETRY)), (504, None));
    assert_eq!(proxy.metric(PASSED_ON), Some(0.0));
}

#[test]
fn a_pushed_response_never_carries_the_marker() {
    let proxy = Proxy::start(&[]);
    let fqdn = "pushes.handover.test";
    let poll = RawPoll::send(proxy.port, fqdn);
    proxy.wait_for_clients(&[fqdn.to_string()], Duration::from_secs(5));
    let port = proxy.port;
    let url = format!("http://{fqdn}:9100/metrics");
    let scraper = thread::spawn(move || scrape(port, &url, Some("10")));
    let request = poll
        .answer(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the poll got no scrape: {e}"));
    let text = request.text();
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("Id: "))
        .unwrap_or_else(|| panic!("no Id in the scrape request: {text:?}"))
        .trim()
        .to_string();
    // A target's own 404 that happens to carry the header.
    let pushed = push_body(&id, 404, &[(RETRY, "next")], b"no such page\n");
    let answer = exchange(
        proxy.port,
        &post_request("/push", &pushed),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("the push got no answer: {e}"));
    assert_eq!(answer.status, 200, "{:?}", answer.text());
    let reply = scraper
        .join()
        .expect("scraper thread")
        .unwrap_or_else(|e| panic!("the scrape got no answer: {e}"));
    assert_eq!(
        (reply.status, reply.header(RETRY), reply.text()),
        (404, None, "no such page\n".to_string())
    );
}
