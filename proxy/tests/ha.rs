//! High availability: one client polls two proxies; when one proxy dies under load, the other
//! keeps relaying every scrape it is given.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pushprox_test_support::*;

const RELAYED: &str = "pushprox_scrapes_total{outcome=\"relayed\"}";
/// How long the scrapers run in all.
const LOAD_FOR: Duration = Duration::from_secs(3);
/// When, after the load started, proxy A is killed.
const KILL_AFTER: Duration = Duration::from_secs(1);
/// Scraper threads through the survivor (B) and through the proxy that is killed (A).
const SCRAPERS_B: usize = 4;
const SCRAPERS_A: usize = 2;
/// The least number of scrapes through B that counts as a healthy run.
const MIN_SCRAPES_B: usize = 50;

/// What one scraper thread did.
#[derive(Default)]
struct Tally {
    ok: usize,
    /// Failures, each with the time since the load started, the path and what went wrong.
    failed: Vec<String>,
    /// The longest scrape, to show that none hung.
    longest: Duration,
}

/// Whether `body` is exactly the echo of `path` by `target`: `PREFIX` `N` `\n`, N decimal.
fn is_echo_of(target: &Target, path: &str, body: &[u8]) -> bool {
    let prefix = target.echo_prefix(path);
    body.strip_prefix(prefix.as_bytes())
        .and_then(|rest| rest.strip_suffix(b"\n"))
        .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

/// Scrapes `target` through the proxy on `port` one scrape after another until `stop`, each
/// with its own query, and checks every body byte for byte.
fn scrape_until(
    port: u16,
    target: &Target,
    name: &str,
    started: Instant,
    stop: &AtomicBool,
) -> Tally {
    let mut tally = Tally::default();
    let mut seq = 0usize;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        let failed_before = tally.failed.len();
        let path = format!("/metrics?scraper={name}&seq={seq}");
        let began = Instant::now();
        let reply = scrape(port, &target.url(&path), Some("5"));
        tally.longest = tally.longest.max(began.elapsed());
        let at = began.duration_since(started);
        match reply {
            Ok(r) if r.status == 200 && is_echo_of(target, &path, &r.body) => tally.ok += 1,
            Ok(r) => tally.failed.push(format!(
                "{name} at {at:?} (took {:?}) {path}: {} {:?}",
                r.took,
                r.status,
                r.text()
            )),
            Err(e) => tally.failed.push(format!(
                "{name} at {at:?} (took {:?}) {path}: {e}",
                began.elapsed()
            )),
        }
        if tally.failed.len() > failed_before {
            // A dead proxy refuses at once: do not spin and starve the scrapers through B.
            thread::sleep(Duration::from_millis(10));
        }
    }
    tally
}

/// Issue 5: two proxies, one killed (SIGKILL) under load; no scrape through the survivor
/// fails, and the survivor still lists the client and counts exactly the scrapes it relayed.
#[test]
fn one_of_two_proxies_killed_under_load_no_scrape_through_the_survivor_fails() {
    let test_started = Instant::now();
    let mut proxy_a = Proxy::start(&[]);
    let proxy_b = Proxy::start(&[]);
    let target = Arc::new(Target::start(&host(2), Answer::Echo));
    let client = Client::start(&[proxy_a.port, proxy_b.port], &target.ip);
    let fqdns = vec![target.ip.clone()];
    proxy_a.wait_for_clients(&fqdns, Duration::from_secs(10));
    proxy_b.wait_for_clients(&fqdns, Duration::from_secs(10));
    assert_eq!(
        proxy_b.metric(RELAYED).unwrap_or(0.0),
        0.0,
        "{RELAYED} of B before the load"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let spawn = |port: u16, name: String| {
        let (target, stop) = (target.clone(), stop.clone());
        thread::Builder::new()
            .name(name.clone())
            .spawn(move || scrape_until(port, &target, &name, started, &stop))
            .expect("cannot start a scraper thread")
    };
    let through_b: Vec<_> = (0..SCRAPERS_B)
        .map(|i| spawn(proxy_b.port, format!("b{i}")))
        .collect();
    let through_a: Vec<_> = (0..SCRAPERS_A)
        .map(|i| spawn(proxy_a.port, format!("a{i}")))
        .collect();

    thread::sleep(KILL_AFTER.saturating_sub(started.elapsed()));
    let killed_at = started.elapsed();
    proxy_a.kill9();
    thread::sleep(LOAD_FOR.saturating_sub(started.elapsed()));
    stop.store(true, Ordering::SeqCst);

    // Every scrape is bounded (5 s scrape time-out + 5 s of the helper), so the joins are too.
    let mut ok_b = 0;
    let mut failures_b = Vec::new();
    let mut per_thread_b = Vec::new();
    let mut longest = Duration::ZERO;
    for (i, h) in through_b.into_iter().enumerate() {
        let t = h.join().expect("scraper thread through B");
        ok_b += t.ok;
        per_thread_b.push((i, t.ok, t.failed.len()));
        longest = longest.max(t.longest);
        failures_b.extend(t.failed);
    }
    let mut ok_a = 0;
    let mut failed_a = Vec::new();
    for h in through_a {
        let t = h.join().expect("scraper thread through A");
        ok_a += t.ok;
        longest = longest.max(t.longest);
        failed_a.extend(t.failed);
    }
    let load_took = started.elapsed();
    eprintln!(
        "A killed at {killed_at:?}; load ended after {load_took:?}; through B {ok_b} ok \
         (per thread {per_thread_b:?}); through A {ok_a} ok, {} failed; longest scrape {longest:?}",
        failed_a.len()
    );

    assert!(
        failures_b.is_empty(),
        "{} scrapes through the survivor B failed ({ok_b} succeeded; A killed at {killed_at:?}):\n{}\n\
         {}\n{}\n{}\n{}",
        failures_b.len(),
        failures_b.join("\n"),
        client.log_tail(80),
        proxy_b.log_tail(80),
        proxy_a.log_tail(40),
        target.events()
    );
    assert!(
        ok_b >= MIN_SCRAPES_B,
        "only {ok_b} scrapes through B in {load_took:?}, want at least {MIN_SCRAPES_B}\n{}\n{}",
        client.log_tail(60),
        proxy_b.log_tail(60)
    );
    // The scrapes through A ended (the joins returned), each within its bound.
    assert!(
        longest < Duration::from_secs(11),
        "a scrape took {longest:?}: it should have ended by its 5 s time-out"
    );

    assert_eq!(
        proxy_b.clients(),
        fqdns,
        "B still lists the client after A died\n{}",
        client.log_tail(60)
    );
    // The counter is bumped just after the scraper has its body: wait for it, bounded.
    let relayed = proxy_b.wait_for_metric(RELAYED, ok_b as f64, Duration::from_secs(5));
    assert_eq!(
        relayed,
        Some(ok_b as f64),
        "{RELAYED} of B equals the scrapes that succeeded through B"
    );
    assert!(
        test_started.elapsed() < Duration::from_secs(20),
        "the test took {:?}",
        test_started.elapsed()
    );
}
