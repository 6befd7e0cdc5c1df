//! Issue 4: the proxy under load and faults, with real clients: nothing leaks (threads, file
//! descriptors, waiting scrapes), nothing crosses between clients, and nobody waits past a
//! deadline.

use std::io::{BufReader, Write};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use pushprox_test_support::*;

const RELAYED: &str = "pushprox_scrapes_total{outcome=\"relayed\"}";
const SCRAPES_WAITING: &str = "pushprox_scrapes_waiting";

/// Threads and fds may differ from the baseline by this much: the client's HTTP agent may keep
/// one more or one fewer idle connection to the proxy (each holds a thread and an fd there).
const SLACK: usize = 3;
/// Pooled connection threads end 2 s after their last work.
const SETTLE_WITHIN: Duration = Duration::from_secs(10);

fn scrape_ok(proxy: &Proxy, target: &Target, path: &str) {
    let r = scrape(proxy.port, &target.url(path), Some("5"))
        .unwrap_or_else(|e| panic!("scrape of {}: {e}", target.url(path)));
    assert!(
        r.status == 200 && r.text().starts_with(&target.echo_prefix(path)),
        "scrape of {}: {} {:?}",
        target.url(path),
        r.status,
        r.text()
    );
}

/// A thousand scrapes one after the other: the proxy's threads and fds come back to where they
/// were.
#[test]
fn thousand_sequential_scrapes_leave_no_threads_or_fds_behind() {
    let proxy = Proxy::start(&[]);
    let targets = vec![Target::start(&host(2), Answer::Echo)];
    let _clients = proxy.clients_for(&targets);
    proxy.wait_for_polls_at_least(targets.len());
    let t = &targets[0];
    // Warm up, so the client's connections to the proxy are open and pooled.
    for i in 0..5 {
        scrape_ok(&proxy, t, &format!("/metrics?warmup={i}"));
    }
    proxy.wait_for_polls_at_least(1);
    // Counted beside the open connections: how many connections the client keeps in its
    // pools depends on timing (two pushes that overlap leave two), a leak does not.
    let (threads0, fds0) = (
        quiet_min(|| proxy.threads_unattached()),
        quiet_min(|| proxy.fds_unattached()),
    );

    let started = Instant::now();
    for i in 0..1000 {
        scrape_ok(&proxy, t, &format!("/metrics?seq={i}"));
    }
    let took = started.elapsed();
    assert_eq!(t.hits(), 1005, "every scrape reached the target once");
    let relayed = proxy.wait_for_metric(RELAYED, 1005.0, Duration::from_secs(5));
    assert_eq!(relayed, Some(1005.0), "{RELAYED}");

    let pid = proxy.pid();
    let threads = settles_to(SETTLE_WITHIN, threads0 + SLACK, || {
        proxy.threads_unattached()
    });
    let fds = settles_to(SETTLE_WITHIN, fds0 + SLACK, || proxy.fds_unattached());
    assert!(
        threads <= threads0 + SLACK && fds <= fds0 + SLACK,
        "after 1000 scrapes ({took:?}): {threads} threads and {fds} fds beside the connections, \
         {threads0} and {fds0} before\n{}",
        resources(pid)
    );
    assert_eq!(
        proxy.metric(SCRAPES_WAITING),
        Some(0.0),
        "{SCRAPES_WAITING}"
    );
}

/// Five hundred scrapes from fifty scraper threads over fifty clients: every body comes from the
/// target asked, none is lost.
#[test]
fn five_hundred_concurrent_scrapes_over_fifty_clients_cross_nothing() {
    let proxy = Proxy::start(&[]);
    let targets = Target::echoes(2..=51);
    let _clients = proxy.clients_for(&targets);
    proxy.wait_for_polls_at_least(targets.len());
    let targets = Arc::new(targets);

    // Scraper j does scrapes 10j..10j+10, of targets 10j % 50 onwards: at any moment several
    // scrapers ask the same client.
    let started = Instant::now();
    let scrapers: Vec<_> = (0..50)
        .map(|j| {
            let targets = targets.clone();
            let port = proxy.port;
            thread::Builder::new()
                .name(format!("scraper-{j}"))
                .spawn(move || {
                    let mut wrong = Vec::new();
                    for i in 10 * j..10 * j + 10 {
                        let t = &targets[i % targets.len()];
                        let path = format!("/metrics?scrape={i}");
                        if let Err(e) = t.echoed(i, &path, scrape(port, &t.url(&path), Some("10")))
                        {
                            wrong.push(e);
                        }
                    }
                    wrong
                })
                .expect("start a scraper thread")
        })
        .collect();
    let wrong: Vec<String> = scrapers
        .into_iter()
        .flat_map(|s| s.join().expect("scraper thread"))
        .collect();
    let took = started.elapsed();
    let seen: String = targets
        .iter()
        .filter(|t| wrong.iter().any(|w| w.contains(&t.url(""))))
        .map(Target::events)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of 500 scrapes went wrong (in {took:?}):\n{}\n{seen}",
        wrong.len(),
        wrong.join("\n")
    );
    for t in targets.iter() {
        assert_eq!(t.hits(), 10, "target {} was asked 10 times", t.ip);
    }
    let relayed = proxy.wait_for_metric(RELAYED, 500.0, Duration::from_secs(5));
    assert_eq!(relayed, Some(500.0), "{RELAYED}");
}

/// A scraper that hangs up while its scrape waits for a target stalled well past the deadline
/// (4 s, deadline 1 s): soon after the deadline, not when the target answers, the proxy holds
/// nothing for it any more: no waiting scrape, no socket of that connection, threads back.
#[test]
fn scraper_hanging_up_early_frees_what_its_scrape_held() {
    let proxy = Proxy::start(&[]);
    let pid = proxy.pid();
    let targets = vec![Target::start(
        &host(60),
        Answer::Stall(Duration::from_secs(4)),
    )];
    let _clients = proxy.clients_for(&targets);
    proxy.wait_for_polls_at_least(targets.len());
    // Counted beside the open connections: how many connections the client keeps in its
    // pools depends on timing (two pushes that overlap leave two), a leak does not.
    let (threads0, fds0) = (
        quiet_min(|| proxy.threads_unattached()),
        quiet_min(|| proxy.fds_unattached()),
    );

    let mut s = connect(proxy.port).expect("connect");
    let scraper_port = s.local_addr().expect("local address").port();
    s.write_all(&scrape_request(&targets[0].url("/metrics"), Some("1"), &[]))
        .expect("write the scrape");
    let sent = Instant::now();
    assert!(
        wait_until(Duration::from_secs(1), || targets[0].hits() == 1),
        "the scrape never reached the target"
    );
    thread::sleep(Duration::from_millis(100).saturating_sub(sent.elapsed()));
    drop(s);

    let held = || {
        let mut held = Vec::new();
        let waiting = proxy.metric(SCRAPES_WAITING);
        if waiting != Some(0.0) {
            held.push(format!("{SCRAPES_WAITING} {waiting:?}"));
        }
        if tcp_connections(pid)
            .iter()
            .any(|&(_, remote)| remote == scraper_port)
        {
            held.push(format!("the socket of the scraper's port {scraper_port}"));
        }
        held
    };
    let mut still = Vec::new();
    wait_until(Duration::from_secs(5), || {
        still = held();
        still.is_empty()
    });
    let freed_after = sent.elapsed();
    assert!(
        still.is_empty(),
        "{freed_after:?} after a scrape with a 1s deadline whose scraper hung up, the proxy \
         still holds {still:?}\n{}",
        resources(pid)
    );
    assert!(
        freed_after < Duration::from_secs(3),
        "its resources were freed only after {freed_after:?}, deadline 1s"
    );
    // The client's error push may leave one more idle keep-alive connection behind.
    let threads = settles_to(SETTLE_WITHIN, threads0 + SLACK, || {
        proxy.threads_unattached()
    });
    let fds = settles_to(SETTLE_WITHIN, fds0 + SLACK, || proxy.fds_unattached());
    assert!(
        threads <= threads0 + SLACK && fds <= fds0 + SLACK,
        "after a scraper hung up: {threads} threads and {fds} fds beside the connections, \
         {threads0} and {fds0} before\n{}",
        resources(pid)
    );
    assert_eq!(proxy.get("/-/healthy").status, 200, "still serving");
}

/// A target slower than the deadline: the scraper gets an error by the deadline, not when the
/// target finally answers.
#[test]
fn target_stalling_past_the_deadline_gives_the_scraper_an_error_by_then() {
    let proxy = Proxy::start(&[]);
    let targets = vec![Target::start(
        &host(61),
        Answer::Stall(Duration::from_secs(3)),
    )];
    let _clients = proxy.clients_for(&targets);
    proxy.wait_for_polls_at_least(targets.len());
    let r = scrape(proxy.port, &targets[0].url("/metrics"), Some("1"))
        .expect("the scraper gets an answer");
    assert_error_naming(&r, &targets[0].ip);
    // The client gives up at 0.5625 s (1 s less --scrape.timeout-offset's quarter, twice) and
    // its reason reaches the scraper before the scraper's own 1 s.
    assert!(
        r.took >= Duration::from_millis(560) && r.took < Duration::from_secs(1),
        "answered after {:?}, deadline 1s",
        r.took
    );
}

/// Clients keep their connections to the proxy open between requests (HTTP keep-alive), and
/// many connect at once after a restart or at a scrape interval: every connection of a burst
/// must be served at once, whatever the others do. Each burst is larger than the last, so it
/// finds fewer idle worker threads in the proxy than it has connections.
#[test]
fn burst_of_keep_alive_connections_is_served_without_delay() {
    let proxy = Proxy::start(&[]);
    let port = proxy.port;
    const BURSTS: [usize; 4] = [30, 60, 90, 120];
    let mut slow = Vec::new();
    for (round, &connections) in BURSTS.iter().enumerate() {
        let start = Arc::new(Barrier::new(connections));
        let done = Arc::new(Barrier::new(connections));
        let workers: Vec<_> = (0..connections)
            .map(|i| {
                let (start, done) = (start.clone(), done.clone());
                thread::spawn(move || {
                    start.wait();
                    let sent = Instant::now();
                    let answer = connect(port).and_then(|mut s| {
                        s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                            .map_err(|e| e.to_string())?;
                        let mut reader = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
                        s.set_read_timeout(Some(Duration::from_secs(6)))
                            .map_err(|e| e.to_string())?;
                        let r = read_reply_from(&mut reader, sent);
                        Ok((r, s))
                    });
                    // Keep the connection open, as an HTTP agent's pool does, until every
                    // connection of the burst has its answer.
                    done.wait();
                    match answer {
                        Ok((Ok(r), _open)) if r.status == 200 => None,
                        Ok((Ok(r), _)) => Some(format!(
                            "burst {round} connection {i}: {} {:?}",
                            r.status,
                            r.text()
                        )),
                        Ok((Err(e), _)) | Err(e) => {
                            Some(format!("burst {round} connection {i}: {e}"))
                        }
                    }
                })
            })
            .collect();
        slow.extend(
            workers
                .into_iter()
                .filter_map(|w| w.join().expect("worker")),
        );
    }
    assert!(
        slow.is_empty(),
        "{} of {} keep-alive connections were not answered within 6s:\n{}",
        slow.len(),
        BURSTS.iter().sum::<usize>(),
        slow.join("\n")
    );
}

/// A scrape written onto a poll waits for its push without a thread: twenty scrapes of a
/// target that takes 8 s to answer hold twenty connections and no more threads than an idle
/// proxy, and are all relayed.
#[test]
fn scrapes_waiting_for_their_push_hold_no_thread() {
    const SCRAPES: usize = 20;
    let proxy = Proxy::start(&[]);
    let target = Target::start(&host(2), Answer::Stall(Duration::from_secs(8)));
    let _clients = proxy.clients_for(std::slice::from_ref(&target));
    proxy.wait_for_polls_at_least(1);
    let baseline = quiet_min(|| proxy.threads());
    let scrapers: Vec<_> = (0..SCRAPES)
        .map(|i| {
            let (port, url) = (proxy.port, target.url(&format!("/slow-{i}")));
            thread::spawn(move || scrape(port, &url, Some("15")))
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(5), || target.hits() == SCRAPES),
        "the target saw {} of {SCRAPES} scrapes within 5 s",
        target.hits()
    );
    // The threads that wrote the scrapes go on with the polls' connections and, once the
    // client's next polls are parked, back to the pool, where they end 2 s later.
    let threads = settles_to(Duration::from_secs(5), baseline + SLACK, || proxy.threads());
    assert!(
        threads <= baseline + SLACK,
        "{SCRAPES} scrapes waiting for their push: {threads} threads, {baseline} before\n{}",
        resources(proxy.pid())
    );
    assert_eq!(proxy.metric(SCRAPES_WAITING), Some(SCRAPES as f64));
    for (i, scraper) in scrapers.into_iter().enumerate() {
        let path = format!("/slow-{i}");
        let r = scraper.join().expect("scraper").expect("an answer");
        assert!(
            r.status == 200 && r.text().starts_with(&target.echo_prefix(&path)),
            "scrape {path}: {} {:?}",
            r.status,
            r.text()
        );
    }
}

/// A parked poll holds its socket and no thread, whether it asked for `Connection: close`
/// or keeps its connection alive as the Go client does; a kept-alive poll's connection then
/// carries the client's next request.
#[test]
fn parked_polls_hold_no_thread_closing_or_kept_alive() {
    const POLLS: usize = 30;
    let proxy = Proxy::start(&[]);
    let baseline = quiet_min(|| proxy.threads());
    let closing: Vec<RawPoll> = (0..POLLS)
        .map(|i| RawPoll::send(proxy.port, &format!("closing-{i}.test")))
        .collect();
    let keep_alive: Vec<_> = (0..POLLS)
        .map(|i| {
            let fqdn = format!("keep-alive-{i}.test");
            let mut s = connect(proxy.port).expect("connect");
            write!(
                s,
                "POST /poll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{fqdn}",
                fqdn.len()
            )
            .expect("write a keep-alive poll");
            s
        })
        .collect();
    proxy.wait_for_polls_at_least(2 * POLLS);
    // Connection threads stay in the pool for 2 s after their last request, then end.
    let threads = settles_to(SETTLE_WITHIN, baseline + SLACK, || proxy.threads());
    assert!(
        threads <= baseline + SLACK,
        "{} polls parked: {threads} threads, {baseline} before\n{}",
        2 * POLLS,
        resources(proxy.pid())
    );
    assert_eq!(
        proxy.metric("pushprox_open_connections"),
        Some((2 * POLLS + 1) as f64),
        "each parked poll holds its connection (and the metrics request one more)"
    );

    // A scrape takes a kept-alive poll; the same connection then carries the next poll.
    let mut conn = keep_alive.into_iter().next().expect("a poll");
    let scraper = thread::spawn({
        let port = proxy.port;
        move || scrape(port, "http://keep-alive-0.test:9100/metrics", Some("5"))
    });
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read time-out");
    let answer = read_reply_from(
        &mut BufReader::new(conn.try_clone().expect("clone")),
        Instant::now(),
    )
    .expect("the poll's answer");
    assert_eq!(answer.status, 200);
    let body = answer.text();
    assert!(
        body.starts_with("GET http://keep-alive-0.test:9100/metrics HTTP/1.1\r\n"),
        "{body}"
    );
    write!(
        conn,
        "POST /poll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 16\r\n\r\nkeep-alive-0.test"
    )
    .expect("a second poll on the same connection");
    proxy.wait_for_polls_at_least(2 * POLLS);
    drop((closing, conn, scraper));
}
