//! What an operator and their tools see of the real binaries: promtool accepts both
//! /metrics and the counts are right, the landing page is self-contained, --lock-file lets
//! cron start a copy every minute, SIGTERM and SIGINT end cleanly after the scrapes in flight,
//! and flags and the debug log say what they should.
//!
//! Needs the client binary (`cargo build --workspace`) and promtool (Debian package
//! `prometheus`); without either the tests fail and say so.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use pushprox_test_support::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

// ---------------------------------------------------------------------------------------------
// Helpers of this file: processes whose exit status the test reads (common's Proxy and Client
// keep theirs private), signals, promtool.

/// Whether `GET /-/healthy` on `127.0.0.1:port` answers 200 within 1 s.
fn healthy(port: u16) -> bool {
    exchange(port, &get_request("/-/healthy"), Duration::from_secs(1))
        .is_ok_and(|r| r.status == 200)
}

/// Starts a proxy on a free port (debug log, `extra` flags) and waits until it is healthy.
fn spawn_proxy(extra: &[&str]) -> (Proc, u16) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let mut args = vec![
            "-l".to_string(),
            format!("127.0.0.1:{port}"),
            "--log.level".to_string(),
            "debug".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut proc = Proc::spawn(&format!("proxy-{port}"), &proxy_bin(), &args);
        // The log line proves that the proxy answering is ours, not another test's.
        let listening = format!("listening address=127.0.0.1:{port}");
        let mut exited = None;
        let ready = wait_until(READY_WITHIN, || {
            exited = proc.exited();
            let json = format!("\"address\":\"127.0.0.1:{port}\"");
            exited.is_some()
                || ((proc.log_contains(&listening) || proc.log_contains(&json)) && healthy(port))
        });
        match exited {
            None if ready => return (proc, port),
            None => last = format!("not healthy within {READY_WITHIN:?}\n{}", proc.log_tail(20)),
            // Most likely another test took the port in between: try another.
            Some(s) => last = format!("exited with {s}\n{}", proc.log_tail(20)),
        }
    }
    panic!("the proxy did not start in 5 tries; last:\n{last}");
}

/// Starts a client and waits until its metrics endpoint is healthy; returns it and that port.
fn spawn_client(proxy_port: u16, fqdn: &str, extra: &[&str]) -> (Proc, u16) {
    let mut last = String::new();
    for _ in 0..5 {
        let metrics_port = free_port();
        let args = client_args(&[proxy_port], fqdn, metrics_port, extra);
        let mut proc = Proc::spawn(&format!("client-{fqdn}"), &client_bin(), &args);
        let mut exited = None;
        let ready = wait_until(READY_WITHIN, || {
            exited = proc.exited();
            exited.is_some() || healthy(metrics_port)
        });
        match exited {
            None if ready => return (proc, metrics_port),
            None => last = format!("not healthy within {READY_WITHIN:?}\n{}", proc.log_tail(20)),
            Some(s) => last = format!("exited with {s}\n{}", proc.log_tail(20)),
        }
    }
    panic!("the client for {fqdn} did not start in 5 tries; last:\n{last}");
}

/// Waits until the proxy on `port` lists `fqdn` in /clients.
fn wait_listed(port: u16, fqdn: &str) {
    let quoted = format!("\"{fqdn}\"");
    let listed = wait_until(READY_WITHIN, || {
        exchange(port, &get_request("/clients"), Duration::from_secs(2))
            .is_ok_and(|r| r.status == 200 && r.text().contains(&quoted))
    });
    assert!(
        listed,
        "{fqdn} not in /clients of port {port} within {READY_WITHIN:?}"
    );
}

/// `kill -SIG pid`: std has no signal API, and the kill command keeps this file free of libc.
fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill -{sig} {pid}: {e}"));
    assert!(status.success(), "kill -{sig} {pid} failed: {status}");
}

/// Runs `program` to its end, feeding it `stdin`; kills it after `within`.
fn run(program: &Path, args: &[&str], stdin: &[u8], within: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    // Written from a thread: a program that does not read stdin must not block the test.
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let done = wait_until(within, || child.try_wait().ok().flatten().is_some());
    if !done {
        let _ = child.kill();
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot read the output of {}: {e}", program.display()));
    let _ = writer.join();
    assert!(
        done,
        "{} {args:?} did not end within {within:?}",
        program.display()
    );
    output
}

/// promtool from the Debian package `prometheus` (which CI installs).
fn promtool() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    let path = on_path.unwrap_or_else(|| PathBuf::from("/usr/bin/promtool"));
    assert!(
        path.is_file(),
        "promtool is missing: install the Debian package prometheus (apt-get install prometheus; \
         .ci/run does), these tests check /metrics with `promtool check metrics`"
    );
    path
}

/// Fails unless `promtool check metrics` accepts `text` without a single complaint.
fn promtool_accepts(promtool: &Path, what: &str, text: &str) {
    let out = run(
        promtool,
        &["check", "metrics"],
        text.as_bytes(),
        Duration::from_secs(10),
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics refused the {what}'s /metrics ({}):\n{said}\n--- exposition ---\n{text}",
        out.status
    );
}

/// The line of `text` that starts with `prefix`.
fn line_starting<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix}:\n{text}"))
}

/// Scrapes `target` through the proxy `n` times, each time expecting the echo of request `i`.
fn relay_scrapes(proxy_port: u16, target: &Target, n: usize) {
    for i in 1..=n {
        let r = scrape(proxy_port, &target.url("/metrics"), Some("5"))
            .unwrap_or_else(|e| panic!("scrape {i} failed: {e}\n{}", target.events()));
        let want = format!("{}{i}\n", target.echo_prefix("/metrics"));
        assert_eq!(
            (r.status, r.text()),
            (200, want),
            "scrape {i} through the proxy\n{}",
            target.events()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// /metrics and the landing page

#[test]
fn promtool_accepts_both_metrics_and_the_counts_are_right() {
    let promtool = promtool();
    let proxy = Proxy::start(&[]);
    let fqdn = host(2);
    let target = Target::start(&fqdn, Answer::Echo);
    let client = Client::start(&[proxy.port], &fqdn);
    proxy.wait_for_clients(std::slice::from_ref(&fqdn), READY_WITHIN);

    const RELAYED: usize = 3;
    relay_scrapes(proxy.port, &target, RELAYED);
    // No client polls for 127.0.0.9: this one fails at its deadline.
    let failed = scrape(
        proxy.port,
        &format!("http://{}:9100/metrics", host(9)),
        Some("0.3"),
    )
    .expect("the failed scrape got no answer");
    assert_eq!(failed.status, 504, "{}", failed.text());

    // The proxy counts a relayed scrape when the push ends, a moment after the scraper has it.
    let relayed = "pushprox_scrapes_total{outcome=\"relayed\"}";
    let got = proxy.wait_for_metric(relayed, RELAYED as f64, Duration::from_secs(5));
    assert_eq!(got, Some(RELAYED as f64), "{relayed}");
    let text = proxy.metrics();
    promtool_accepts(&promtool, "proxy", &text);
    for (series, want) in [
        (relayed, RELAYED as f64),
        ("pushprox_scrapes_total{outcome=\"no_poll\"}", 1.0),
        (
            "pushproxy_proxied_requests_total{code=\"200\"}",
            RELAYED as f64,
        ),
        ("pushproxy_proxied_requests_total{code=\"504\"}", 1.0),
        ("pushprox_proxy_clients", 1.0),
    ] {
        assert_eq!(metric(&text, series), Some(want), "{series}\n{text}");
    }
    let polls = metric(
        &text,
        "pushprox_http_requests_total{code=\"200\",path=\"/poll\"}",
    );
    assert!(
        polls.is_some_and(|n| n >= RELAYED as f64),
        "each relayed scrape left on a poll answered 200: {polls:?}\n{text}"
    );
    for series in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_threads",
    ] {
        let v = metric(&text, series);
        assert!(v.is_some_and(|v| v > 0.0), "{series} is {v:?}\n{text}");
    }
    let info = line_starting(&text, "pushprox_build_info{");
    assert!(
        info.contains(&format!("version=\"{VERSION}\"")) && info.ends_with("} 1"),
        "{info}"
    );

    // The client counts a scrape once its push is sent.
    let success = "pushprox_client_scrapes_total{outcome=\"success\"}";
    let mut client_text = String::new();
    wait_until(Duration::from_secs(5), || {
        client_text = exchange(
            client.metrics_port,
            &get_request("/metrics"),
            EXCHANGE_WITHIN,
        )
        .map(|r| r.text())
        .unwrap_or_default();
        metric(&client_text, success) == Some(RELAYED as f64)
    });
    assert_eq!(
        metric(&client_text, success),
        Some(RELAYED as f64),
        "{success}\n{client_text}"
    );
    promtool_accepts(&promtool, "client", &client_text);
}

#[test]
fn landing_page_lists_the_client_and_loads_nothing_from_elsewhere() {
    let proxy = Proxy::start(&[]);
    let fqdn = host(3);
    let target = Target::start(&fqdn, Answer::Echo);
    let _client = Client::start(&[proxy.port], &fqdn);
    proxy.wait_for_clients(std::slice::from_ref(&fqdn), READY_WITHIN);
    relay_scrapes(proxy.port, &target, 2);

    // The registry counts a scrape when its poll ends, which may trail the scraper's answer.
    let cell = format!("<td>{fqdn}</td>");
    let mut page = String::new();
    let mut row = String::new();
    wait_until(Duration::from_secs(5), || {
        let r = proxy.get("/");
        assert_eq!(r.status, 200, "GET /: {}", r.text());
        let kind = r.header("Content-Type").unwrap_or("").to_string();
        assert!(kind.starts_with("text/html"), "GET / content type {kind}");
        page = r.text();
        row = page
            .lines()
            .find(|l| l.contains(&cell))
            .unwrap_or("")
            .to_string();
        row.ends_with("<td>2</td></tr>")
    });
    assert!(
        row.ends_with("<td>2</td></tr>"),
        "no row for {fqdn} with 2 scrapes on the landing page:\n{page}"
    );
    for link in ["href=\"/clients\"", "href=\"/metrics\""] {
        assert!(
            page.contains(link),
            "no {link} on the landing page:\n{page}"
        );
    }
    // Self-contained: the page must render on a host without Internet access.
    let lower = page.to_ascii_lowercase();
    for attr in ["src=", "href=", "action="] {
        for (at, _) in lower.match_indices(attr) {
            let value = lower[at + attr.len()..].trim_start_matches(['"', '\'']);
            assert!(
                value.starts_with('/') && !value.starts_with("//"),
                "{attr} points outside the proxy: {}\n{page}",
                &page[at..(at + 60).min(page.len())]
            );
        }
    }
    for tag in ["<script", "<link", "<img", "<iframe", "@import", "url("] {
        assert!(!lower.contains(tag), "the landing page has {tag}:\n{page}");
    }
}

// ---------------------------------------------------------------------------------------------
// --lock-file, as the cron example in scripts/cron.example uses it

#[test]
fn a_second_copy_with_the_same_lock_file_exits_0_and_the_first_keeps_serving() {
    let dir = TempDir::new("ops-lock");
    let proxy_lock = dir.arg("proxy.lock");
    let client_lock = dir.arg("client.lock");

    let (mut first, port) = spawn_proxy(&["--lock-file", &proxy_lock]);
    let second_port = free_port();
    let args: Vec<String> = [
        "-l",
        &format!("127.0.0.1:{second_port}"),
        "--lock-file",
        &proxy_lock,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut second = Proc::spawn("proxy-second", &proxy_bin(), &args);
    let status = second.wait_exit(Duration::from_secs(2)).unwrap_or_else(|| {
        panic!(
            "the second proxy did not exit within 2 s\n{}",
            second.log_tail(20)
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "second proxy\n{}",
        second.log_tail(20)
    );
    // Cron starts a copy every minute: at the default level the second copy is quiet.
    assert!(
        !second.log_contains("level="),
        "the second proxy wrote lines at the default level\n{}",
        second.log_tail(20)
    );
    assert!(
        first.exited().is_none(),
        "the first proxy exited\n{}",
        first.log_tail(20)
    );
    assert!(healthy(port), "the first proxy stopped serving");
    assert!(
        !healthy(second_port),
        "the second proxy serves on {second_port}"
    );

    // The cron line: the same command started twice, output appended to one log.
    let fqdn = host(6);
    let (mut first_client, metrics_port) =
        spawn_client(port, &fqdn, &["--lock-file", &client_lock]);
    wait_listed(port, &fqdn);
    let args = client_args(&[port], &fqdn, free_port(), &["--lock-file", &client_lock]);
    let mut second_client = Proc::spawn("client-second", &client_bin(), &args);
    let status = second_client
        .wait_exit(Duration::from_secs(2))
        .unwrap_or_else(|| {
            panic!(
                "the second client did not exit within 2 s\n{}",
                second_client.log_tail(20)
            )
        });
    assert_eq!(
        status.code(),
        Some(0),
        "second client\n{}",
        second_client.log_tail(20)
    );
    assert!(
        second_client.log_contains("another pushprox-client holds --lock-file"),
        "the second client does not say why it stopped\n{}",
        second_client.log_tail(20)
    );
    assert!(
        first_client.exited().is_none(),
        "the first client exited\n{}",
        first_client.log_tail(20)
    );
    assert!(
        healthy(metrics_port),
        "the first client stopped serving its metrics"
    );
    let pid = std::fs::read_to_string(&client_lock).unwrap_or_default();
    assert_eq!(
        pid.trim(),
        first_client.pid().to_string(),
        "pid in {client_lock}"
    );
}

// ---------------------------------------------------------------------------------------------
// Signals

#[test]
fn sigterm_lets_the_scrape_in_flight_finish_then_the_proxy_exits_0() {
    let (mut proxy, port) = spawn_proxy(&[]);
    let fqdn = host(4);
    let target = Target::start(&fqdn, Answer::Stall(Duration::from_secs(1)));
    let _client = Client::start(&[port], &fqdn);
    wait_listed(port, &fqdn);

    let url = target.url("/metrics");
    let scraper = thread::spawn(move || scrape(port, &url, Some("5")));
    assert!(
        wait_until(Duration::from_secs(5), || target.hits() == 1),
        "the scrape did not reach the target\n{}",
        target.events()
    );
    let signalled = Instant::now();
    signal(proxy.pid(), "TERM");
    assert!(
        wait_until(Duration::from_secs(2), || proxy
            .log_contains("stopping: no new requests")),
        "the proxy did not start stopping\n{}",
        proxy.log_tail(20)
    );
    // A request arriving now is not served: refused, left unanswered, or answered 503.
    let late = exchange(port, &get_request("/-/healthy"), Duration::from_millis(500));
    assert!(
        !late.as_ref().is_ok_and(|r| r.status == 200),
        "a health check after SIGTERM was answered 200: {late:?}"
    );

    let reply = scraper.join().expect("scraper thread").unwrap_or_else(|e| {
        panic!(
            "the scrape in flight got no answer: {e}\n{}",
            proxy.log_tail(30)
        )
    });
    assert_eq!(
        (reply.status, reply.text()),
        (200, format!("{}1\n", target.echo_prefix("/metrics"))),
        "the scrape in flight\n{}",
        proxy.log_tail(30)
    );
    let status = proxy.wait_exit(Duration::from_secs(12)).unwrap_or_else(|| {
        panic!(
            "the proxy did not exit within 12 s of SIGTERM\n{}",
            proxy.log_tail(20)
        )
    });
    let took = signalled.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "proxy after SIGTERM\n{}",
        proxy.log_tail(20)
    );
    assert!(
        took < Duration::from_secs(11),
        "exit took {took:?}, beyond the 10 s grace"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections after the proxy exited"
    );
}

#[test]
fn sigterm_and_sigint_stop_an_idle_proxy_with_exit_0() {
    for sig in ["TERM", "INT"] {
        let (mut proxy, port) = spawn_proxy(&[]);
        let signalled = Instant::now();
        signal(proxy.pid(), sig);
        let status = proxy.wait_exit(Duration::from_secs(2)).unwrap_or_else(|| {
            panic!(
                "the proxy did not exit within 2 s of SIG{sig}\n{}",
                proxy.log_tail(20)
            )
        });
        assert_eq!(
            status.code(),
            Some(0),
            "proxy after SIG{sig}\n{}",
            proxy.log_tail(20)
        );
        assert!(
            proxy.log_contains("stopping: no new requests")
                && proxy.log_contains("level=info msg=stopped"),
            "the proxy does not say it stopped after SIG{sig}\n{}",
            proxy.log_tail(20)
        );
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still accepts connections {:?} after SIG{sig}",
            signalled.elapsed()
        );
    }
}

#[test]
fn sigterm_lets_the_clients_scrape_finish_then_the_client_exits_0() {
    let proxy = Proxy::start(&[]);
    let fqdn = host(7);
    let target = Target::start(&fqdn, Answer::Stall(Duration::from_secs(1)));
    let (mut client, _) = spawn_client(proxy.port, &fqdn, &[]);
    proxy.wait_for_clients(std::slice::from_ref(&fqdn), READY_WITHIN);

    let (port, url) = (proxy.port, target.url("/metrics"));
    let scraper = thread::spawn(move || scrape(port, &url, Some("5")));
    assert!(
        wait_until(Duration::from_secs(5), || target.hits() == 1),
        "the scrape did not reach the target\n{}",
        target.events()
    );
    signal(client.pid(), "TERM");
    let reply = scraper.join().expect("scraper thread").unwrap_or_else(|e| {
        panic!(
            "the scrape in flight got no answer: {e}\n{}",
            client.log_tail(30)
        )
    });
    assert_eq!(
        (reply.status, reply.text()),
        (200, format!("{}1\n", target.echo_prefix("/metrics"))),
        "the scrape in flight\n{}",
        client.log_tail(30)
    );
    let status = client.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "the client did not exit within 5 s of SIGTERM\n{}",
            client.log_tail(20)
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "client after SIGTERM\n{}",
        client.log_tail(20)
    );
}

// ---------------------------------------------------------------------------------------------
// Flags and logs

#[test]
fn version_and_bad_flags_on_both_binaries() {
    let proxy = proxy_bin();
    let client = client_bin();
    for (bin, name) in [(&proxy, "pushprox-proxy"), (&client, "pushprox-client")] {
        let out = run(bin, &["--version"], b"", Duration::from_secs(5));
        assert_eq!(out.status.code(), Some(0), "{name} --version");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim_end(),
            format!("{name} {VERSION}"),
            "{name} --version"
        );
    }
    for (bin, args, flag) in [
        (
            &proxy,
            &["--scrape.max-timeout", "5minutes"][..],
            "--scrape.max-timeout",
        ),
        (
            &client,
            &[
                "--proxy-url",
                "http://127.0.0.1:1/",
                "--proxy.retry.max-wait",
                "5minutes",
            ][..],
            "--proxy.retry.max-wait",
        ),
    ] {
        let out = run(bin, args, b"", Duration::from_secs(5));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{} {args:?}: {err}",
            bin.display()
        );
        // The flag, the value refused, and what would have been accepted.
        for part in [flag, "5minutes", "15s", "5m"] {
            assert!(
                err.contains(part),
                "{} {args:?} does not say {part:?}: {err}",
                bin.display()
            );
        }
    }
}

#[test]
fn debug_log_tells_one_scrapes_story_by_its_id_with_log_format_json() {
    // Go command lines carry --log.format json: accepted by both, logs stay one line per event.
    let (proxy, port) = spawn_proxy(&["--log.format", "json"]);
    let fqdn = host(5);
    let target = Target::start(&fqdn, Answer::Echo);
    let (client, _) = spawn_client(port, &fqdn, &["--log.format", "json"]);
    wait_listed(port, &fqdn);
    relay_scrapes(port, &target, 1);

    // JSON lines: the message without the fields, each field a key of its own.
    let relayed = format!("\"msg\":\"scrape relayed\",\"fqdn\":\"{fqdn}\"");
    assert!(
        wait_until(Duration::from_secs(5), || proxy.log_contains(&relayed)),
        "no {relayed:?} line\n{}",
        proxy.log_tail(40)
    );
    let log = proxy.log_tail(100_000);
    let id = log
        .lines()
        .find(|l| l.contains(&relayed))
        .and_then(|l| l.split("\"scrape_id\":\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the relayed line has no scrape_id\n{log}"))
        .to_string();
    let story: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("\"scrape_id\":\"{id}\"")))
        .collect();
    for step in [
        "scrape waiting for a poll",
        "scrape handed to poll",
        "scrape relayed",
    ] {
        let line = story
            .iter()
            .find(|l| l.contains(&format!("\"msg\":\"{step}\"")))
            .unwrap_or_else(|| {
                panic!("no {step:?} line for scrape_id={id}:\n{}", story.join("\n"))
            });
        assert!(
            line.starts_with("{\"ts\":\"") && line.ends_with('}'),
            "one JSON object a line: {line}"
        );
        assert!(line.contains(&format!("\"fqdn\":\"{fqdn}\"")), "{line}");
    }
    // The same id leads to the client's side of the story.
    assert!(
        client.log_contains(&format!("\"fqdn\":\"{fqdn}\",\"scrape_id\":\"{id}\"")),
        "the client's log does not mention scrape_id={id}\n{}",
        client.log_tail(30)
    );
}
