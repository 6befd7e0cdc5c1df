//! What the integration tests share: the real binaries started on free loopback ports and
//! killed on drop, tiny targets that name themselves in every body (so cross-talk shows), a
//! small blocking HTTP/1.1 client, a raw poller, and readers of metrics and /proc.
//!
//! Everything binds to 127.0.0.0/8 only, and every wait has a bound.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use pushprox_protocol::{Headers, Response, DEFAULT_MAX_HEAD};

/// How long a binary may take to answer its health check.
pub const READY_WITHIN: Duration = Duration::from_secs(10);
/// Read/write time-out of one exchange when the test does not say.
pub const EXCHANGE_WITHIN: Duration = Duration::from_secs(10);
/// Largest body the test client accepts.
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// Polls `cond` every 20 ms until it holds or `within` passed; true when it held.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A port that was free on 127.0.0.1 a moment ago (callers retry on collision).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

/// The proxy binary cargo built for these tests.
pub fn proxy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pushprox-proxy"))
}

/// The client binary: cargo does not build it for the proxy's tests, so it is looked up
/// beside the proxy binary.
pub fn client_bin() -> PathBuf {
    let path =
        proxy_bin().with_file_name(format!("pushprox-client{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first (scripts/test.sh does), the proxy's \
         integration tests start the real client binary",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------------------------
// Child processes

static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A child process whose stdout and stderr go to a log file; killed (SIGKILL) on drop, and its
/// log printed when the test is failing.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    dead: bool,
}

impl Proc {
    /// Starts `program` with `args`.
    pub fn spawn(name: &str, program: &Path, args: &[String]) -> Proc {
        let seq = LOG_SEQ.fetch_add(1, Ordering::SeqCst);
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{}-{}-{seq}.log",
            name.replace(['/', ':', ' '], "_"),
            std::process::id()
        ));
        let file = File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create log file {}: {e}", log.display()));
        let out = file.try_clone().expect("cannot clone the log file handle");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            name: name.to_string(),
            child,
            log,
            dead: false,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) {
        if !self.dead {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.dead = true;
        }
    }

    /// The last `lines` lines of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- last {} lines of {} ({}) ---\n{}\n--- end of {} ---",
            all.len() - from,
            self.name,
            self.log.display(),
            all[from..].join("\n"),
            self.name
        )
    }

    /// Whether its output contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|t| t.contains(needle))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            eprintln!("{}", self.log_tail(60));
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
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
            if proc.log_contains(&listening)
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

    /// Threads of the proxy process now.
    pub fn threads(&self) -> usize {
        threads(self.pid())
    }

    /// Peak resident memory of the proxy process so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_else(|e| panic!("cannot read the proxy's /proc status: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmHWM: line in /proc/PID/status")
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

/// `127.0.0.N` for the `n`-th distinct loopback "host".
pub fn host(n: u8) -> String {
    format!("127.0.0.{n}")
}

// ---------------------------------------------------------------------------------------------
// Targets

/// How a target answers.
#[derive(Clone)]
pub enum Answer {
    /// `200`, body `target=IP:PORT path=PATH n=COUNT\n`: names itself and the request.
    Echo,
    /// `200` with these headers and body; `chunks` set means `Transfer-Encoding: chunked` in
    /// pieces of these sizes (and no `Content-Length`), otherwise `Content-Length`.
    Bytes {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        chunks: Option<Vec<usize>>,
    },
    /// Reads the request, sleeps this long, then answers as [`Answer::Echo`].
    Stall(Duration),
}

/// A tiny HTTP server on `IP:free port`, one thread per connection, closing each connection
/// after its answer.
pub struct Target {
    pub ip: String,
    pub port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    events: Events,
}

/// What a target saw, with UTC times of day as in the binaries' logs, for failure messages.
type Events = Arc<Mutex<Vec<String>>>;

fn note(events: &Events, what: String) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let (s, micros) = (now.as_secs() % 86_400, now.subsec_micros());
    let line = format!(
        "{:02}:{:02}:{:02}.{micros:06} {what}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
    events.lock().unwrap_or_else(|p| p.into_inner()).push(line);
}

impl Target {
    /// Starts a target on `ip` (a 127.0.0.0/8 address).
    pub fn start(ip: &str, answer: Answer) -> Target {
        assert!(ip.starts_with("127."), "targets are loopback only: {ip}");
        let listener = TcpListener::bind((ip, 0))
            .unwrap_or_else(|e| panic!("cannot bind a target on {ip}: {e}"));
        let port = listener.local_addr().expect("target address").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let events = Events::default();
        let (h, s, e, name) = (
            hits.clone(),
            stop.clone(),
            events.clone(),
            format!("{ip}:{port}"),
        );
        thread::Builder::new()
            .name(format!("target-{name}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::SeqCst) {
                        return;
                    }
                    let conn = match conn {
                        Ok(c) => c,
                        Err(err) => {
                            note(&e, format!("accept failed: {err}"));
                            continue;
                        }
                    };
                    let (h, e, answer, name) = (h.clone(), e.clone(), answer.clone(), name.clone());
                    let _ = thread::Builder::new()
                        .name("target-conn".into())
                        .stack_size(128 * 1024)
                        .spawn(move || serve_target(conn, &name, &h, &e, &answer));
                }
            })
            .expect("cannot start a target thread");
        Target {
            ip: ip.to_string(),
            port,
            hits,
            stop,
            events,
        }
    }

    /// What it saw, one line per event, for failure messages.
    pub fn events(&self) -> String {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        format!(
            "--- target {}:{} ---\n{}\n",
            self.ip,
            self.port,
            events.join("\n")
        )
    }

    /// `http://IP:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }

    /// The body [`Answer::Echo`] starts with for `path` (the count follows).
    pub fn echo_prefix(&self, path: &str) -> String {
        format!("target={}:{} path={path} n=", self.ip, self.port)
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::new(self.ip.parse().expect("ip"), self.port),
            Duration::from_secs(1),
        );
    }
}

fn serve_target(conn: TcpStream, name: &str, hits: &AtomicUsize, events: &Events, answer: &Answer) {
    let peer = conn
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    note(events, format!("accepted from {peer}"));
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => return note(events, format!("{peer} closed before a request")),
        Err(e) => return note(events, format!("{peer} reading the request line: {e}")),
        Ok(_) => {}
    }
    let path = line.split(' ').nth(1).unwrap_or("").to_string();
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) => return note(events, format!("{peer} closed within the head of {path}")),
            Err(e) => return note(events, format!("{peer} reading the head of {path}: {e}")),
            Ok(_) if header.trim_end().is_empty() => break,
            Ok(_) => {}
        }
    }
    let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
    note(events, format!("{peer} asked for {path} (request {n})"));
    let echo = || {
        let body = format!("target={name} path={path} n={n}\n");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let bytes = match answer {
        Answer::Echo => echo(),
        Answer::Stall(d) => {
            thread::sleep(*d);
            echo()
        }
        Answer::Bytes {
            headers,
            body,
            chunks,
        } => {
            let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
            for (n, v) in headers {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            match chunks {
                None => {
                    out.extend_from_slice(
                        format!(
                            "Content-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    out.extend_from_slice(body);
                }
                Some(sizes) => {
                    out.extend_from_slice(
                        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                    );
                    let mut rest = &body[..];
                    for size in sizes.iter().copied().chain(std::iter::repeat(4096)) {
                        if rest.is_empty() {
                            break;
                        }
                        let (chunk, after) = rest.split_at(size.min(rest.len()));
                        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                        out.extend_from_slice(chunk);
                        out.extend_from_slice(b"\r\n");
                        rest = after;
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                }
            }
            out
        }
    };
    let mut conn = conn;
    match conn.write_all(&bytes).and_then(|()| conn.flush()) {
        Ok(()) => note(
            events,
            format!("{peer} answered {path} ({} bytes)", bytes.len()),
        ),
        Err(e) => note(events, format!("{peer} answering {path}: {e}")),
    }
}

/// `len` pseudo-random bytes (xorshift), the same for the same seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A blocking HTTP/1.1 client

/// An answer as the test received it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Headers,
    /// De-chunked; content encodings untouched.
    pub body: Vec<u8>,
    /// From the request's first byte written to the answer's last byte read.
    pub took: Duration,
}

impl Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// `GET path` with `Connection: close`.
pub fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").into_bytes()
}

/// `POST path` with `body`, `Content-Length` and `Connection: close`.
pub fn post_request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A scrape in absolute form, as Prometheus sends it through `proxy_url`; `timeout` is the
/// `X-Prometheus-Scrape-Timeout-Seconds` value, if any.
pub fn scrape_request(url: &str, timeout: Option<&str>, extra: &[(&str, &str)]) -> Vec<u8> {
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split(['/', '?']).next().unwrap_or(""));
    let mut out =
        format!("GET {url} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: pushprox-tests\r\n");
    if let Some(t) = timeout {
        out.push_str(&format!("X-Prometheus-Scrape-Timeout-Seconds: {t}\r\n"));
    }
    for (n, v) in extra {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

/// Asserts that the scraper got an error status (5xx) whose one-line reason names `name`.
pub fn assert_error_naming(r: &Reply, name: &str) {
    assert!(
        r.status >= 500,
        "the scraper gets an error status: {} {:?}",
        r.status,
        r.text()
    );
    assert!(
        r.text().contains(name),
        "the reason names {name}: {:?}",
        r.text()
    );
}

/// Connects to `127.0.0.1:port`, writes `request` and reads one answer, each step bounded by
/// `within`.
pub fn exchange(port: u16, request: &[u8], within: Duration) -> Result<Reply, String> {
    let started = Instant::now();
    let mut stream = connect(port)?;
    stream
        .write_all(request)
        .map_err(|e| format!("writing the request: {e}"))?;
    read_reply(stream, within, started)
}

/// A connection to `127.0.0.1:port` with 10 s read and write time-outs.
pub fn connect(port: u16) -> Result<TcpStream, String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_write_timeout(Some(EXCHANGE_WITHIN))
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(EXCHANGE_WITHIN))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Reads one response from `stream`; each read waits at most `within`. `took` counts from
/// `started`.
pub fn read_reply(stream: TcpStream, within: Duration, started: Instant) -> Result<Reply, String> {
    stream
        .set_read_timeout(Some(within))
        .map_err(|e| e.to_string())?;
    read_reply_from(&mut BufReader::new(stream), started)
}

/// Reads one response from a buffered connection that stays open afterwards (keep-alive).
pub fn read_reply_from(
    reader: &mut BufReader<TcpStream>,
    started: Instant,
) -> Result<Reply, String> {
    let r = Response::parse(reader, DEFAULT_MAX_HEAD, Some(MAX_BODY))
        .map_err(|e| format!("reading the answer after {:?}: {e}", started.elapsed()))?;
    Ok(Reply {
        status: r.head.status,
        headers: r.head.headers,
        body: r.body,
        took: started.elapsed(),
    })
}

/// Scrapes `url` through the proxy on `proxy_port`, waiting for the answer 5 s longer than the
/// scrape's own `timeout` (20 s without one), so the proxy's answer at the deadline is seen.
pub fn scrape(proxy_port: u16, url: &str, timeout: Option<&str>) -> Result<Reply, String> {
    let within = timeout
        .and_then(|t| t.parse::<f64>().ok())
        .map_or(Duration::from_secs(20), |t| {
            Duration::from_secs_f64(t) + Duration::from_secs(5)
        });
    exchange(proxy_port, &scrape_request(url, timeout, &[]), within)
}

/// A poll sent by the test itself, as a client would, whose answer is read later.
pub struct RawPoll {
    stream: TcpStream,
    pub sent: Instant,
}

impl RawPoll {
    /// Sends `POST /poll` with body `fqdn`.
    pub fn send(proxy_port: u16, fqdn: &str) -> RawPoll {
        let mut stream = connect(proxy_port).expect("connecting a raw poll");
        let sent = Instant::now();
        stream
            .write_all(&post_request("/poll", fqdn.as_bytes()))
            .expect("writing a raw poll");
        RawPoll { stream, sent }
    }

    /// Reads the poll's answer, waiting at most `within`; `took` counts from the poll's
    /// sending.
    pub fn answer(self, within: Duration) -> Result<Reply, String> {
        read_reply(self.stream, within, self.sent)
    }
}

/// The serialized response a client pushes for scrape `id`: `status`, `headers`, `body` with
/// `Content-Length`.
pub fn push_body(id: &str, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nId: {id}\r\n",
        pushprox_protocol::reason_phrase(status)
    )
    .into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

// ---------------------------------------------------------------------------------------------
// Metrics and /proc

/// The value of `series` (`name{labels}` exactly as exposed) in a text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// `Threads:` of /proc/PID/status.
pub fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Threads: line in /proc/PID/status")
}

/// Entries of /proc/PID/fd.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/fd: {e}"))
        .count()
}

/// The names of the threads of `pid` (what the proxy gives `thread::Builder::name`, cut to 15
/// bytes by Linux).
pub fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim_end().to_string())
        .collect();
    names.sort();
    names
}

/// How many threads of `pid` have this name.
pub fn threads_named(pid: u32, name: &str) -> usize {
    thread_names(pid).iter().filter(|n| *n == name).count()
}

/// The TCP connections behind the socket fds of `pid`, as (local port, remote port); listening
/// sockets have remote port 0.
pub fn tcp_connections(pid: u32) -> Vec<(u16, u16)> {
    let inodes: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|target| {
                    let t = target.to_string_lossy().into_owned();
                    t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[9].parse().is_ok_and(|i: u64| inodes.contains(&i)) {
                out.push((port(f[1]), port(f[2])));
            }
        }
    }
    out.sort();
    out
}

/// Threads by name, fds and TCP connections of `pid`, for failure messages.
pub fn resources(pid: u32) -> String {
    let names = thread_names(pid);
    let mut counted: Vec<(String, usize)> = Vec::new();
    for n in names {
        match counted.last_mut() {
            Some((last, c)) if *last == n => *c += 1,
            _ => counted.push((n, 1)),
        }
    }
    format!(
        "threads {counted:?}; {} fds; tcp (local port, remote port) {:?}",
        open_fds(pid),
        tcp_connections(pid)
    )
}

/// The least of ten readings 10 ms apart: a baseline that a connection passing through at
/// that moment does not raise.
pub fn quiet_min(mut read: impl FnMut() -> usize) -> usize {
    (0..10)
        .map(|_| {
            let v = read();
            thread::sleep(Duration::from_millis(10));
            v
        })
        .min()
        .unwrap_or(0)
}

/// Waits until `read()` is at most `limit`; returns the last value read.
pub fn settles_to(within: Duration, limit: usize, mut read: impl FnMut() -> usize) -> usize {
    let mut last = usize::MAX;
    wait_until(within, || {
        last = read();
        last <= limit
    });
    last
}

/// Reads everything `stream` sends until EOF or `within`, for answers that are not HTTP.
pub fn read_all(mut stream: TcpStream, within: Duration) -> Vec<u8> {
    let _ = stream.set_read_timeout(Some(within));
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// The arguments of a client of the proxies on `proxy_ports` for `fqdn`, metrics on
/// `metrics_port`, retrying after 100 ms up to 1 s, debug logs, then `extra`.
pub fn client_args(
    proxy_ports: &[u16],
    fqdn: &str,
    metrics_port: u16,
    extra: &[&str],
) -> Vec<String> {
    let mut args = Vec::new();
    for p in proxy_ports {
        args.push("--proxy-url".to_string());
        args.push(format!("http://127.0.0.1:{p}/"));
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

/// A directory of its own under the target's temporary directory (`PREFIX-NAME-PID`), for
/// certificates and configuration files; removed on drop.
pub struct CertDir(pub PathBuf);

impl CertDir {
    pub fn new(prefix: &str, name: &str) -> CertDir {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{prefix}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        CertDir(path)
    }

    /// The path of `name` in the directory.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    /// Runs openssl in the directory; fails the test, with what to install, when it fails.
    pub fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.0)
            .stdin(Stdio::null())
            .output()
            .expect("openssl is missing: install the Debian package openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
