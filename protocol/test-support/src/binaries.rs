//! Our two binaries, started on free loopback ports with debug logs and waited for until
//! healthy: [`Proxy`] and [`Client`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::{exchange, get_request, post_request, Reply, EXCHANGE_WITHIN};
use crate::process::{command, free_port, profile_dir, wait_until, ChildGuard, Proc, READY_WITHIN};
use crate::procfs::{metric, open_fds, tcp_connections, threads};
use crate::target::Target;

/// The proxy's gauge of the polls it holds.
const POLLS_WAITING: &str = "pushprox_polls_waiting";

/// The binary `name` of the workspace, built beside the test executable; fails the test, saying
/// what to run, when it is missing (cargo builds only the binary of the package under test).
fn workspace_bin(name: &str) -> PathBuf {
    let path = profile_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first (scripts/test.sh does), the \
         integration tests start the real binaries",
        path.display()
    );
    path
}

/// The proxy binary.
pub fn proxy_bin() -> PathBuf {
    workspace_bin("pushprox-proxy")
}

/// The client binary.
pub fn client_bin() -> PathBuf {
    workspace_bin("pushprox-client")
}

/// A `pushprox-proxy` on `addr` with its defaults, its output discarded; killed on drop.
pub fn quiet_proxy(addr: &str) -> ChildGuard {
    let mut proxy = command(proxy_bin());
    proxy.args(["-l", addr]).stderr(Stdio::null());
    ChildGuard::start(&mut proxy, "the proxy")
}

/// A `pushprox-client` of `proxy_url` for `fqdn` with metrics on `metrics_addr`, its output
/// discarded: add flags or environment, then start it with [`ChildGuard::start`].
pub fn quiet_client(proxy_url: &str, fqdn: &str, metrics_addr: &str) -> Command {
    let mut client = command(client_bin());
    client
        .args([
            "--proxy-url",
            proxy_url,
            "--fqdn",
            fqdn,
            "--metrics-addr",
            metrics_addr,
        ])
        .stderr(Stdio::null());
    client
}

/// A running `pushprox-proxy` on 127.0.0.1.
pub struct Proxy {
    pub port: u16,
    args: Vec<String>,
    proc: Proc,
}

impl Proxy {
    /// Starts a proxy on a free port with `--log.level debug` and `extra` flags, and waits
    /// until it answers `GET /-/healthy`.
    pub fn start(extra: &[&str]) -> Proxy {
        Proxy::start_args(extra.iter().map(|s| s.to_string()).collect())
    }

    /// [`Proxy::start`] under an open-files limit of `open_files` (`ulimit -n`).
    pub fn start_with_open_files(open_files: u32, extra: &[&str]) -> Proxy {
        let mut args = vec!["--open-files-for-test".to_string(), open_files.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Proxy::start_args(args)
    }

    fn start_args(args: Vec<String>) -> Proxy {
        let mut last = String::new();
        for _ in 0..5 {
            match Proxy::start_on(free_port(), &args) {
                Ok(p) => return p,
                // Most likely another test took the port in between: try another.
                Err(e) => last = e,
            }
        }
        panic!("the proxy did not start in 5 tries; last:\n{last}");
    }

    fn start_on(port: u16, args: &[String]) -> Result<Proxy, String> {
        // The open-files limit is set by a shell around the proxy.
        let (limit, args) = match args.first().map(String::as_str) {
            Some("--open-files-for-test") => (args.get(1).cloned(), &args[2..]),
            _ => (None, args),
        };
        let mut all = vec![
            "-l".to_string(),
            format!("127.0.0.1:{port}"),
            "--log.level".to_string(),
            "debug".to_string(),
        ];
        all.extend(args.iter().cloned());
        let mut proc = match &limit {
            None => Proc::spawn(&format!("proxy-{port}"), &proxy_bin(), &all),
            Some(n) => {
                let mut wrapped = vec![
                    "-c".to_string(),
                    format!("ulimit -n {n} && exec \"$0\" \"$@\""),
                    proxy_bin().display().to_string(),
                ];
                wrapped.extend(all);
                Proc::spawn(&format!("proxy-{port}"), Path::new("/bin/sh"), &wrapped)
            }
        };
        // The log line proves that the proxy answering is ours, not another test's.
        let listening = format!("listening address=127.0.0.1:{port}");
        let until = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = proc.exited() {
                return Err(format!(
                    "proxy on port {port} exited with {status}\n{}",
                    proc.log_tail(20)
                ));
            }
            // Over TLS (--tls.cert or a web config), the log line says it is ready.
            let https = format!("{listening} scheme=https");
            if proc.log_contains(&https)
                || proc.log_contains(&listening)
                    && exchange(port, &get_request("/-/healthy"), Duration::from_secs(1))
                        .is_ok_and(|r| r.status == 200)
            {
                let mut kept = match &limit {
                    Some(n) => vec!["--open-files-for-test".to_string(), n.clone()],
                    None => Vec::new(),
                };
                kept.extend(args.iter().cloned());
                return Ok(Proxy {
                    port,
                    args: kept,
                    proc,
                });
            }
            if Instant::now() >= until {
                let tail = proc.log_tail(20);
                return Err(format!(
                    "proxy on port {port} not healthy within {READY_WITHIN:?}\n{tail}"
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the proxy with SIGKILL, leaves the port closed for `down`, and starts a new proxy
    /// with the same flags on the same port.
    pub fn restart(&mut self, down: Duration) {
        self.proc.kill9();
        thread::sleep(down);
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match Proxy::start_on(self.port, &self.args) {
                Ok(new) => {
                    *self = new;
                    return;
                }
                Err(e) if Instant::now() >= until => {
                    panic!("cannot restart the proxy on port {}: {e}", self.port)
                }
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Kills the proxy with SIGKILL.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// `http://127.0.0.1:PORT/`, for `--proxy-url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }

    /// Its whole log so far.
    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// Threads of the proxy process now.
    pub fn threads(&self) -> usize {
        threads(self.pid())
    }

    /// Peak resident memory of the proxy process so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        crate::procfs::peak_rss_kib(self.pid())
    }

    /// Whether the proxy process is still running.
    pub fn alive(&mut self) -> bool {
        self.proc.exited().is_none()
    }

    /// Open file descriptors of the proxy process now.
    pub fn fds(&self) -> usize {
        open_fds(self.pid())
    }

    /// Connections open to the proxy's port now (clients' polls and pooled push connections,
    /// scrapers' keep-alive connections).
    pub fn connections(&self) -> usize {
        tcp_connections(self.pid())
            .iter()
            .filter(|&&(local, remote)| local == self.port && remote != 0)
            .count()
    }

    /// Threads beyond one per open connection (an idle keep-alive connection may hold a
    /// thread while it waits for its next request): a leaked thread raises it, an idle
    /// connection that a client keeps in its pool does not.
    pub fn threads_unattached(&self) -> usize {
        self.threads().saturating_sub(self.connections())
    }

    /// File descriptors beyond the one each open connection holds.
    pub fn fds_unattached(&self) -> usize {
        self.fds().saturating_sub(self.connections())
    }

    /// `GET path` on the proxy.
    pub fn get(&self, path: &str) -> Reply {
        exchange(self.port, &get_request(path), EXCHANGE_WITHIN)
            .unwrap_or_else(|e| panic!("GET {path} on the proxy failed: {e}"))
    }

    /// `POST path` with `body` on the proxy.
    pub fn post(&self, path: &str, body: &[u8]) -> Reply {
        exchange(self.port, &post_request(path, body), EXCHANGE_WITHIN)
            .unwrap_or_else(|e| panic!("POST {path} on the proxy failed: {e}"))
    }

    /// Its `/metrics` text.
    pub fn metrics(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "GET /metrics: {}", r.text());
        r.text()
    }

    /// The value of one series (`name{labels}` exactly as exposed), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric(&self.metrics(), series)
    }

    /// The FQDNs `/clients` lists, sorted; panics unless every group has exactly one target
    /// and empty labels.
    pub fn clients(&self) -> Vec<String> {
        let r = self.get("/clients");
        assert_eq!(r.status, 200, "GET /clients: {}", r.text());
        assert_eq!(
            r.header("Content-Type"),
            Some("application/json"),
            "GET /clients content type"
        );
        let groups: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("/clients is not JSON ({e}): {}", r.text()));
        let mut fqdns = Vec::new();
        for g in groups.as_array().expect("/clients is a JSON array") {
            let targets = g["targets"].as_array().expect("a group has targets");
            assert_eq!(targets.len(), 1, "one target per group: {g}");
            assert_eq!(g["labels"], serde_json::json!({}), "labels are {{}}: {g}");
            fqdns.push(
                targets[0]
                    .as_str()
                    .expect("a target is a string")
                    .to_string(),
            );
        }
        fqdns.sort();
        fqdns
    }

    /// Waits until `/clients` lists exactly `fqdns` (in any order).
    pub fn wait_for_clients(&self, fqdns: &[String], within: Duration) {
        let mut want = fqdns.to_vec();
        want.sort();
        let mut seen = Vec::new();
        let ok = wait_until(within, || {
            seen = self.clients();
            seen == want
        });
        assert!(
            ok,
            "/clients did not list exactly the {} clients within {within:?}: got {seen:?}, want {want:?}",
            want.len()
        );
    }

    /// Starts one real client per target, its FQDN the target's IP, and waits until
    /// `/clients` lists exactly them.
    pub fn clients_for(&self, targets: &[Target]) -> Vec<Client> {
        let clients: Vec<Client> = targets
            .iter()
            .map(|t| Client::start(&[self.port], &t.ip))
            .collect();
        let fqdns: Vec<String> = targets.iter().map(|t| t.ip.clone()).collect();
        self.wait_for_clients(&fqdns, Duration::from_secs(15));
        clients
    }

    /// Waits until the proxy holds at least `n` polls (10 s at most).
    pub fn wait_for_polls_at_least(&self, n: usize) {
        let mut last = None;
        let ok = wait_until(Duration::from_secs(10), || {
            last = self.metric(POLLS_WAITING);
            last.is_some_and(|v| v >= n as f64)
        });
        assert!(ok, "{POLLS_WAITING} did not reach {n}: {last:?}");
    }

    /// Waits until the proxy holds exactly `n` polls (5 s at most).
    pub fn wait_for_polls(&self, n: usize) {
        let mut last = None;
        let ok = wait_until(Duration::from_secs(5), || {
            last = self.metric(POLLS_WAITING);
            last == Some(n as f64)
        });
        assert!(ok, "{POLLS_WAITING} did not reach {n} within 5s: {last:?}");
    }

    /// Waits until a series reaches `value`; returns what it was last.
    pub fn wait_for_metric(&self, series: &str, value: f64, within: Duration) -> Option<f64> {
        let mut last = None;
        wait_until(within, || {
            last = self.metric(series);
            last == Some(value)
        });
        last
    }
}

/// A running `pushprox-client`, its metrics and health on a free 127.0.0.1 port.
pub struct Client {
    pub fqdn: String,
    pub metrics_port: u16,
    proc: Proc,
}

impl Client {
    /// Starts a client of the proxies on `proxy_ports` for `fqdn`, retrying after 100 ms up to
    /// 1 s, and waits until its `/-/healthy` answers. Whether it polls yet is for the caller to
    /// check in the proxy's `/clients`.
    pub fn start(proxy_ports: &[u16], fqdn: &str) -> Client {
        Client::start_with(proxy_ports, fqdn, &[])
    }

    /// [`Client::start`] with `extra` flags.
    pub fn start_with(proxy_ports: &[u16], fqdn: &str, extra: &[&str]) -> Client {
        let mut last = String::new();
        for _ in 0..5 {
            match Client::start_once(proxy_ports, fqdn, extra) {
                Ok(c) => return c,
                Err(e) => last = e,
            }
        }
        panic!("the client for {fqdn} did not start in 5 tries; last:\n{last}");
    }

    fn start_once(proxy_ports: &[u16], fqdn: &str, extra: &[&str]) -> Result<Client, String> {
        let metrics_port = free_port();
        let args = client_args(proxy_ports, fqdn, metrics_port, extra);
        let mut proc = Proc::spawn(&format!("client-{fqdn}"), &client_bin(), &args);
        let until = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = proc.exited() {
                return Err(format!(
                    "client {fqdn} exited with {status}\n{}",
                    proc.log_tail(20)
                ));
            }
            if exchange(
                metrics_port,
                &get_request("/-/healthy"),
                Duration::from_secs(1),
            )
            .is_ok_and(|r| r.status == 200)
            {
                return Ok(Client {
                    fqdn: fqdn.to_string(),
                    metrics_port,
                    proc,
                });
            }
            if Instant::now() >= until {
                let tail = proc.log_tail(20);
                return Err(format!(
                    "client {fqdn} not healthy within {READY_WITHIN:?}\n{tail}"
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}

/// The arguments of a client of the proxies on `proxy_ports` for `fqdn`, metrics on
/// `metrics_port`, retrying after 100 ms up to 1 s, debug logs, then `extra`.
pub fn client_args(
    proxy_ports: &[u16],
    fqdn: &str,
    metrics_port: u16,
    extra: &[&str],
) -> Vec<String> {
    let urls: Vec<String> = proxy_ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/"))
        .collect();
    client_args_to(&urls, fqdn, metrics_port, extra)
}

/// [`client_args`] for the proxies at `proxy_urls` (such as `https://127.0.0.1:PORT/`).
pub fn client_args_to(
    proxy_urls: &[String],
    fqdn: &str,
    metrics_port: u16,
    extra: &[&str],
) -> Vec<String> {
    let mut args = Vec::new();
    for url in proxy_urls {
        args.push("--proxy-url".to_string());
        args.push(url.clone());
    }
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    for a in [
        "--fqdn",
        fqdn,
        "--metrics-addr",
        &metrics_addr,
        "--proxy.retry.initial-wait",
        "100ms",
        "--proxy.retry.max-wait",
        "1s",
        "--log.level",
        "debug",
    ] {
        args.push(a.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The flags every client of the client's own tests gets: `proxy_url`, FQDN 127.0.0.1, any
/// free metrics port and `log_level`.
pub fn client_flags<'a>(proxy_url: &'a str, log_level: &'a str) -> Vec<&'a str> {
    vec![
        "--proxy-url",
        proxy_url,
        "--fqdn",
        "127.0.0.1",
        "--metrics-addr",
        "127.0.0.1:0",
        "--log.level",
        log_level,
    ]
}
