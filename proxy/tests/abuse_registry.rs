//! Issue 16: what unauthenticated peers can make the proxy keep, and make `/clients` cost,
//! with polls that are perfectly valid: announcements are bounded (`--registration.max-*`,
//! `400` naming the rule), so is the number of clients (`503`), and `/clients` is written
//! as a stream, so six readers of a large registry cost the proxy next to nothing (the status
//! page, built whole, lists at most 200 clients).
//!
//! `PUSHPROX_PROXY_BIN` runs the memory tests against another build of the proxy (to measure
//! the figures before the limits); `PUSHPROX_REGISTRY_CLIENTS` sets how many clients the
//! large-registry test registers (default 2,000; the README's figure is for 10,000).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use pushprox_test_support::*;

/// `--registration.max-label-bytes`' default.
const MAX_LABEL_BYTES: usize = 8 * 1024;

/// A poll for `fqdn` announcing `labels` and `targets` (the headers' JSON values).
fn poll_request(fqdn: &str, labels: Option<&str>, targets: Option<&str>) -> Vec<u8> {
    let mut head = "POST /poll HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_string();
    if let Some(l) = labels {
        head.push_str(&format!("X-PushProx-Labels: {l}\r\n"));
    }
    if let Some(t) = targets {
        head.push_str(&format!("X-PushProx-Targets: {t}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{fqdn}",
        fqdn.len()
    ));
    head.into_bytes()
}

/// A poll that must be refused at once: its status and reason.
fn refused(port: u16, fqdn: &str, labels: Option<&str>, targets: Option<&str>) -> Reply {
    exchange(
        port,
        &poll_request(fqdn, labels, targets),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("the poll of {fqdn} got no answer: {e}"))
}

/// A JSON object of `n` labels `lNN` whose values are `value_len` bytes.
fn labels_json(n: usize, value_len: usize) -> String {
    let pairs: Vec<String> = (0..n)
        .map(|i| format!("\"l{i:02}\":\"{}\"", "v".repeat(value_len)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// The largest announcement the default limits allow: 64 labels (`--registration.max-labels`),
/// their values as long as `--registration.max-label-bytes` lets the client's entry in
/// `/clients` be (the entry is measured as the proxy writes it).
fn largest_labels(fqdn: &str) -> String {
    // The entry grows by 64 bytes with each byte of the values.
    let frame = format!("{{\"targets\":[\"{fqdn}\"],\"labels\":}}").len();
    let empty = labels_json(64, 0).len();
    let value_len = ((MAX_LABEL_BYTES - frame - empty) / 64).min(1024);
    let labels = labels_json(64, value_len);
    assert!(frame + labels.len() <= MAX_LABEL_BYTES && frame + labels.len() > MAX_LABEL_BYTES - 64);
    labels
}

#[test]
fn each_announcement_limit_is_refused_with_400_naming_its_flag_and_counted() {
    let proxy = Proxy::start(&["--registration.max-targets", "4"]);
    let many_ports: Vec<String> = (1..=5).map(|p| format!("{{\"port\":{p}}}")).collect();
    let many_ports = format!("[{}]", many_ports.join(","));
    let long_name = format!("{{\"{}\":\"v\"}}", "n".repeat(129));
    let long_value = format!("{{\"n\":\"{}\"}}", "v".repeat(1025));
    let too_many = labels_json(65, 1);
    // 20 labels of 300 bytes fit alone (about 6.5 KB), not repeated in two targets' groups.
    let big = labels_json(20, 300);
    let two_targets = r#"[{"port":9100},{"port":9256}]"#;
    // Within the limits: parked, and listed.
    let mut ok = connect(proxy.port).expect("connecting a poll");
    ok.write_all(&poll_request(
        "ok.example",
        Some(&big),
        Some(r#"[{"port":9100}]"#),
    ))
    .expect("writing a poll");
    assert_eq!(
        proxy.wait_for_metric("pushprox_proxy_clients", 1.0, Duration::from_secs(10)),
        Some(1.0)
    );
    for (labels, targets, flag, reason) in [
        (
            Some(too_many.as_str()),
            None,
            "--registration.max-labels=64",
            "too_many_labels",
        ),
        (
            Some(long_name.as_str()),
            None,
            "--registration.max-label-name-length=128",
            "label_name_too_long",
        ),
        (
            Some(long_value.as_str()),
            None,
            "--registration.max-label-value-length=1024",
            "label_value_too_long",
        ),
        (
            None,
            Some(many_ports.as_str()),
            "--registration.max-targets=4",
            "too_many_targets",
        ),
        (
            Some(big.as_str()),
            Some(two_targets),
            "--registration.max-label-bytes=8192",
            "label_bytes",
        ),
        (
            Some(r#"{"__name__":"x"}"#),
            None,
            "leading __",
            "invalid_announcement",
        ),
    ] {
        let reply = refused(proxy.port, "bad.example", labels, targets);
        assert_eq!(reply.status, 400, "{flag}: {}", reply.text());
        assert!(reply.text().contains(flag), "{flag}: {}", reply.text());
        let series = format!("pushprox_polls_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(proxy.metric(&series), Some(1.0), "{series}");
    }
    // Only the client within the limits is listed.
    let clients = proxy.get("/clients").text();
    assert!(
        clients.starts_with(r#"[{"targets":["ok.example:9100"],"labels":{"l00":"#)
            && !clients.contains("bad.example"),
        "{clients}"
    );
    drop(ok);
}

#[test]
fn clients_beyond_the_cap_get_503_and_registered_ones_keep_polling() {
    let proxy = Proxy::start(&["--registration.max-clients", "3"]);
    let polls: Vec<RawPoll> = (0..3)
        .map(|i| RawPoll::send(proxy.port, &format!("c{i}.example")))
        .collect();
    assert_eq!(
        proxy.wait_for_metric("pushprox_proxy_clients", 3.0, Duration::from_secs(10)),
        Some(3.0)
    );
    let reply = refused(proxy.port, "c3.example", None, None);
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        reply.text().contains("--registration.max-clients=3"),
        "{}",
        reply.text()
    );
    assert_eq!(
        proxy.metric("pushprox_polls_refused_total{reason=\"registry_full\"}"),
        Some(1.0)
    );
    // A registered client's next poll supersedes its first: the first is answered 408, the
    // second is parked (no 503).
    let again = RawPoll::send(proxy.port, "c0.example");
    let mut polls = polls.into_iter();
    let first = polls
        .next()
        .expect("three polls")
        .answer(Duration::from_secs(10));
    assert_eq!(first.map(|r| r.status), Ok(408));
    drop(again);
    assert_eq!(
        proxy.metric("pushprox_polls_refused_total{reason=\"registry_full\"}"),
        Some(1.0)
    );
    assert_eq!(proxy.clients(), ["c0.example", "c1.example", "c2.example"]);
}

/// The proxy under test: `PUSHPROX_PROXY_BIN` when set, else this build.
struct Measured {
    port: u16,
    proc: Proc,
}

impl Measured {
    fn start() -> Measured {
        let bin = std::env::var_os("PUSHPROX_PROXY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(proxy_bin);
        for _ in 0..5 {
            let port = free_port();
            let args = ["-l".to_string(), format!("127.0.0.1:{port}")];
            let proc = Proc::spawn(&format!("measured-proxy-{port}"), &bin, &args);
            let up = wait_until(READY_WITHIN, || {
                exchange(port, &get_request("/-/healthy"), Duration::from_secs(1))
                    .is_ok_and(|r| r.status == 200)
            });
            if up {
                return Measured { port, proc };
            }
        }
        panic!("the proxy {} did not start in 5 tries", bin.display());
    }

    /// `VmHWM` and `VmRSS` of /proc/PID/status, in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.pid()))
            .expect("the proxy's /proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// Sends `count` polls of `cNNNNN.example` with `announce(fqdn)`'s labels and targets, each
    /// closed at once after it is written.
    fn register(&self, count: usize, announce: impl Fn(&str) -> (String, Option<String>)) {
        let until = Instant::now() + Duration::from_secs(120);
        for i in 0..count {
            assert!(Instant::now() < until, "only {i} polls in 120 s");
            let fqdn = format!("c{i:05}.example");
            let (labels, targets) = announce(&fqdn);
            let mut s = connect(self.port).expect("connecting a poll");
            s.write_all(&poll_request(&fqdn, Some(&labels), targets.as_deref()))
                .expect("writing a poll");
        }
    }

    /// Registered clients, from /metrics, once they stop changing (or after 60 s).
    fn registered(&self, want: usize) -> usize {
        let mut last = 0;
        wait_until(Duration::from_secs(60), || {
            last = exchange(self.port, &get_request("/metrics"), EXCHANGE_WITHIN)
                .ok()
                .and_then(|r| metric(&r.text(), "pushprox_proxy_clients"))
                .unwrap_or(0.0) as usize;
            last >= want
        });
        last
    }

    /// `readers` concurrent `GET /clients`, each read to the end; the answers' sizes.
    fn read_clients(&self, readers: usize) -> Vec<usize> {
        self.read_concurrently("/clients", readers)
            .iter()
            .map(Vec::len)
            .collect()
    }

    /// `readers` concurrent `GET path`, each read to the end; the answers.
    fn read_concurrently(&self, path: &'static str, readers: usize) -> Vec<Vec<u8>> {
        let port = self.port;
        let handles: Vec<_> = (0..readers)
            .map(|_| {
                thread::spawn(move || {
                    let mut s = connect(port).expect("connecting a reader");
                    s.set_read_timeout(Some(Duration::from_secs(60)))
                        .expect("a read time-out");
                    s.write_all(&get_request(path)).expect("writing GET");
                    let mut all = Vec::new();
                    let _ = s.read_to_end(&mut all);
                    all
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a reader thread"))
            .collect()
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The issue's amplification: 300 unauthenticated polls with the largest announcement allowed,
/// closed at once, then six concurrent `GET /clients`. Before the limits, 300 polls of ~15 KB
/// of labels and 64 targets made one answer 272 MB and the proxy's peak 855 MB.
#[test]
fn three_hundred_largest_announcements_and_six_readers_stay_under_64_mib() {
    let proxy = Measured::start();
    proxy.register(300, |fqdn| (largest_labels(fqdn), None));
    assert_eq!(
        proxy.registered(300),
        300,
        "every poll within the limits registers"
    );
    let (peak_registered, rss_registered) = proxy.memory_kib();
    let started = Instant::now();
    let sizes = proxy.read_clients(6);
    let took = started.elapsed();
    let (peak, _) = proxy.memory_kib();
    eprintln!(
        "300 largest announcements: RSS {:.1} MiB after registering (peak {:.1} MiB); six concurrent GET /clients of {} bytes each in {took:?}; peak after {:.1} MiB",
        mib(rss_registered),
        mib(peak_registered),
        sizes[0],
        mib(peak)
    );
    for size in &sizes {
        // Each entry is at most 8 KiB; the chunked framing and head add little.
        assert!(
            *size > 300 * 7 * 1024 && *size < 300 * (MAX_LABEL_BYTES + 64) + 4096,
            "a /clients answer of {size} bytes"
        );
    }
    assert!(peak < 64 * 1024, "peak {:.1} MiB", mib(peak));
    // The status page is built whole: it lists 200 clients and points to /clients for more.
    let pages = proxy.read_concurrently("/", 6);
    let (peak, _) = proxy.memory_kib();
    let page = String::from_utf8_lossy(&pages[0]);
    eprintln!(
        "six concurrent GET / of {} bytes each; peak after {:.1} MiB",
        pages[0].len(),
        mib(peak)
    );
    assert!(
        page.contains("... and 100 more"),
        "{}",
        &page[..page.len().min(500)]
    );
    assert!(peak < 64 * 1024, "peak {:.1} MiB", mib(peak));
}

/// Many clients with the largest announcements allowed: reading /clients six times at once
/// costs the proxy a few MiB whatever the registry's size, as the answer is streamed.
#[test]
fn a_large_registry_is_read_in_bounded_memory() {
    let count: usize = std::env::var("PUSHPROX_REGISTRY_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let proxy = Measured::start();
    proxy.register(count, |fqdn| (largest_labels(fqdn), None));
    assert_eq!(proxy.registered(count), count);
    let (peak_registered, rss_registered) = proxy.memory_kib();
    let started = Instant::now();
    let sizes = proxy.read_clients(6);
    let took = started.elapsed();
    let (peak, rss) = proxy.memory_kib();
    eprintln!(
        "{count} largest announcements: RSS {:.1} MiB after registering (peak {:.1} MiB, {:.2} KiB per client); six concurrent GET /clients of {:.1} MB each in {took:?}; peak {:.1} MiB after (+{:.1} MiB), RSS {:.1} MiB",
        mib(rss_registered),
        mib(peak_registered),
        rss_registered as f64 / count as f64,
        sizes[0] as f64 / 1e6,
        mib(peak),
        mib(peak.saturating_sub(peak_registered)),
        mib(rss)
    );
    assert!(sizes.iter().all(|s| *s > count * 7 * 1024), "{sizes:?}");
    assert!(
        peak.saturating_sub(peak_registered) < 16 * 1024,
        "reading /clients raised the peak by {:.1} MiB",
        mib(peak.saturating_sub(peak_registered))
    );
}
