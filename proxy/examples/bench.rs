//! The load tool behind `scripts/bench.sh` (issue 5). Run that script rather than this tool;
//! it starts the proxy, the clients and the targets, calls the subcommands below and turns
//! their `key=value` lines into the figures.
//!
//! ```text
//! bench target     --hosts 127.0.0.2 --count 100 --port P [--seconds S]
//!                  serves GET /20k (the known 20 KiB body) and GET /big/N (N bytes of a
//!                  deterministic pseudo-random stream) on 127.0.0.2..=127.0.0.101:P
//! bench write-body --out FILE       the 20 KiB body, for an nginx target
//! bench load       [--proxy ADDR] --hosts H --count N --port P [--path /20k|/big/N]
//!                  [--connections 8] [--seconds 10] [--warmup 1] [--label L]
//!                  keep-alive scrapers, absolute-form through the proxy or origin-form direct;
//!                  every body checked byte for byte; latency percentiles and throughput
//! bench idle-polls --proxy ADDR --count N --proxy-pid PID [--timeout 120]
//!                  [--connection keep-alive|close]
//!                  holds N raw `POST /poll`s open, waits for pushprox_polls_waiting == N,
//!                  then reads the proxy's VmRSS and thread count; `close` sends them with
//!                  `Connection: close`, as our client does once idle (default keep-alive, as
//!                  the Go client)
//! bench big        --proxy ADDR --url http://H:P/big/N --pids proxy=PID,client=PID
//!                  one large scrape, checked byte for byte as it streams, with the peak
//!                  VmRSS of the given processes sampled every 10 ms
//! bench rss        --pid PID        VmRSS, VmHWM and threads of a process
//! ```
//!
//! Loopback only, synchronous, one named thread per connection; every loop stops at a count
//! or a deadline. Exit 1 on any wrong status or byte, with the reason on stderr.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pushprox_protocol::{BodyReader, ResponseHead, DEFAULT_MAX_HEAD};

/// Size of the known scrape body (`/20k`).
const SMALL_LEN: usize = 20 * 1024;
/// Stack of every thread here: they copy through heap buffers.
const STACK: usize = 128 * 1024;
/// No single socket operation of the benchmark should take longer.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Latency samples kept per scraper thread: far more than 8 threads can do in the run.
const MAX_SAMPLES: usize = 20_000_000;
/// Largest body `load` checks (`--path /big/N`): each scraper holds it to compare.
const MAX_LOAD_BODY: usize = 16 << 20;
/// Seed of the pseudo-random stream of `/big/N`.
const SEED: u64 = 0x0005_eed0_fb16_b0d1;

type Fail = String;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else {
        eprintln!("usage: bench target|write-body|load|idle-polls|big|rss [--flag value]...; see the doc comment of proxy/examples/bench.rs");
        return ExitCode::from(2);
    };
    let opts = match Opts::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench {cmd}: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd.as_str() {
        "target" => target(&opts),
        "write-body" => write_body(&opts),
        "load" => load(&opts),
        "idle-polls" => idle_polls(&opts),
        "big" => big(&opts),
        "rss" => rss(&opts),
        other => Err(format!("unknown subcommand {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench {cmd}: FAIL: {e}");
            ExitCode::from(1)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Flags

struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Opts, Fail> {
        let mut map = HashMap::new();
        while let Some(flag) = args.next() {
            let Some(name) = flag.strip_prefix("--") else {
                return Err(format!("expected --flag value, got {flag:?}"));
            };
            let value = args
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_string(), value);
        }
        Ok(Opts(map))
    }

    fn str(&self, name: &str) -> Result<&str, Fail> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn str_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.0.get(name).map_or(default, String::as_str)
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: Option<T>) -> Result<T, Fail> {
        match self.0.get(name) {
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name} {v:?} is not a number")),
            None => default.ok_or_else(|| format!("--{name} is required")),
        }
    }

    fn secs(&self, name: &str, default: f64) -> Result<Duration, Fail> {
        let s: f64 = self.num(name, Some(default))?;
        if !(0.0..=86_400.0).contains(&s) {
            return Err(format!("--{name} {s} is out of range"));
        }
        Ok(Duration::from_secs_f64(s))
    }

    /// `--hosts 127.0.0.2 --count N --port P`: N consecutive loopback addresses.
    fn targets(&self) -> Result<Vec<SocketAddr>, Fail> {
        let first: Ipv4Addr = self
            .str("hosts")?
            .parse()
            .map_err(|_| "--hosts must be an IPv4 address such as 127.0.0.2".to_string())?;
        let count: u32 = self.num("count", Some(1))?;
        let port: u16 = self.num("port", None)?;
        let base = u32::from(first);
        if count == 0 || count > 250 || !first.is_loopback() {
            return Err("--hosts must be in 127.0.0.0/8 and --count 1..=250".into());
        }
        let addrs: Vec<SocketAddr> = (0..count)
            .map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(base + i)), port))
            .collect();
        if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(format!("{bad} is outside 127.0.0.0/8"));
        }
        Ok(addrs)
    }

    fn proxy(&self) -> Result<Option<SocketAddr>, Fail> {
        match self.0.get("proxy") {
            None => Ok(None),
            Some(a) => {
                let addr: SocketAddr = a
                    .parse()
                    .map_err(|_| format!("--proxy {a:?} is not host:port"))?;
                if !addr.ip().is_loopback() {
                    return Err(format!("--proxy {addr} is not a loopback address"));
                }
                Ok(Some(addr))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The known bodies

/// The `/20k` body: Prometheus-like text, the same in every run.
fn small_body() -> Vec<u8> {
    let mut body = Vec::with_capacity(SMALL_LEN + 64);
    let mut i = 0u64;
    while body.len() < SMALL_LEN {
        let line = format!(
            "bench_series_total{{series=\"{i:05}\",job=\"pushprox-bench\"}} {}\n",
            mix(i) % 1_000_000_007
        );
        body.extend_from_slice(line.as_bytes());
        i += 1;
    }
    body.truncate(SMALL_LEN);
    body[SMALL_LEN - 1] = b'\n';
    body
}

/// splitmix64's finaliser: a good 64-bit mix of the block number.
fn mix(k: u64) -> u64 {
    let mut z = SEED.wrapping_add(k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with the bytes of the `/big` stream at `offset`: byte i is byte i%8 of mix(i/8).
fn stream_at(offset: u64, out: &mut [u8]) {
    let mut pos = offset;
    let mut i = 0;
    while i < out.len() {
        let word = mix(pos / 8).to_le_bytes();
        let within = (pos % 8) as usize;
        let n = (8 - within).min(out.len() - i);
        out[i..i + n].copy_from_slice(&word[within..within + n]);
        i += n;
        pos += n as u64;
    }
}

// ---------------------------------------------------------------------------------------------
// target

fn write_body(o: &Opts) -> Result<(), Fail> {
    let path = o.str("out")?;
    std::fs::write(path, small_body()).map_err(|e| format!("cannot write {path}: {e}"))
}

fn target(o: &Opts) -> Result<(), Fail> {
    let addrs = o.targets()?;
    let lifetime = o.secs("seconds", 3600.0)?;
    let mut small = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {SMALL_LEN}\r\n\r\n"
    )
    .into_bytes();
    small.extend_from_slice(&small_body());
    let small: Arc<[u8]> = small.into();
    for addr in &addrs {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let small = small.clone();
        thread::Builder::new()
            .name("target-accept".into())
            .stack_size(STACK)
            .spawn(move || accept_loop(listener, small))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
    }
    println!("target ready addresses={} first={}", addrs.len(), addrs[0]);
    let _ = io::stdout().flush();
    // Lives until killed, or at most --seconds.
    thread::sleep(lifetime);
    Ok(())
}

fn accept_loop(listener: TcpListener, small: Arc<[u8]>) {
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                eprintln!("bench target: accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let small = small.clone();
        let spawned = thread::Builder::new()
            .name("target-conn".into())
            .stack_size(STACK)
            .spawn(move || {
                if let Err(e) = serve_target(conn, &small) {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::BrokenPipe
                    ) {
                        eprintln!("bench target: connection failed: {e}");
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("bench target: cannot start a connection thread: {e}");
        }
    }
}

/// Answers keep-alive requests on one connection until the peer closes it.
fn serve_target(conn: TcpStream, small: &[u8]) -> io::Result<()> {
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(300)))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::with_capacity(8 * 1024, conn.try_clone()?);
    let mut writer = conn;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut close = line.trim_end().ends_with("HTTP/1.0");
        // Headers: only Connection and a (never expected) body length matter.
        let mut body_len = 0u64;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                } else if name.eq_ignore_ascii_case("content-length") {
                    body_len = value.parse().unwrap_or(0);
                }
            }
        }
        io::copy(&mut (&mut reader).take(body_len), &mut io::sink())?;
        // Absolute form (a scraper that talks to us as if we were a proxy) or origin form.
        let path = match target.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => target.as_str(),
        };
        if method != "GET" && method != "HEAD" {
            writer.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")?;
        } else if path == "/20k" {
            let n = if method == "HEAD" {
                small.len() - SMALL_LEN
            } else {
                small.len()
            };
            writer.write_all(&small[..n])?;
        } else if let Some(n) = path
            .strip_prefix("/big/")
            .and_then(|n| n.parse::<u64>().ok())
        {
            write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n"
            )?;
            if method == "GET" {
                let mut buf = vec![0u8; 64 * 1024];
                let mut sent = 0u64;
                while sent < n {
                    let k = buf.len().min((n - sent) as usize);
                    stream_at(sent, &mut buf[..k]);
                    writer.write_all(&buf[..k])?;
                    sent += k as u64;
                }
            }
        } else {
            writer.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n")?;
        }
        if close {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading and checking a response

/// One keep-alive connection of a scraper.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Result<Conn, Fail> {
        let s =
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| connect_error(addr, &e))?;
        let setup = || -> io::Result<Conn> {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            Ok(Conn {
                reader: BufReader::with_capacity(64 * 1024, s.try_clone()?),
                writer: s,
            })
        };
        setup().map_err(|e| format!("cannot set up the connection to {addr}: {e}"))
    }
}

fn connect_error(addr: SocketAddr, e: &io::Error) -> Fail {
    if e.raw_os_error() == Some(24) {
        format!("cannot connect to {addr}: out of file descriptors (EMFILE); raise the limit with `ulimit -n 65536` (bench.sh does, up to the hard limit `ulimit -Hn`)")
    } else {
        format!("cannot connect to {addr}: {e}")
    }
}

/// Reads one response and feeds its body to `check` as it arrives. Returns whether the server
/// will close the connection.
fn read_response(
    conn: &mut Conn,
    what: &str,
    mut check: impl FnMut(u64, &[u8]) -> Result<(), Fail>,
) -> Result<bool, Fail> {
    let head = ResponseHead::parse(&mut conn.reader, DEFAULT_MAX_HEAD)
        .map_err(|e| format!("{what}: bad response head: {e}"))?;
    let framing = head
        .framing()
        .map_err(|e| format!("{what}: bad framing: {e}"))?;
    let close = head
        .headers
        .get("Connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let mut body = BodyReader::new(&mut conn.reader, framing, None);
    if head.status != 200 {
        let mut text = Vec::new();
        let _ = body.by_ref().take(300).read_to_end(&mut text);
        return Err(format!(
            "{what}: status {} (expected 200): {}",
            head.status,
            String::from_utf8_lossy(&text).trim_end()
        ));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| format!("{what}: reading the body failed after {at} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        check(at, &buf[..n])?;
        at += n as u64;
    }
    check(at, &[])?;
    Ok(close)
}

/// A checker of the known 20 KiB body: every byte, and the length.
fn small_checker<'a>(
    expected: &'a [u8],
    what: &'a str,
) -> impl FnMut(u64, &[u8]) -> Result<(), Fail> + 'a {
    move |at, chunk| {
        let at = at as usize;
        if chunk.is_empty() {
            return if at == expected.len() {
                Ok(())
            } else {
                Err(format!(
                    "{what}: body has {at} bytes, expected {}",
                    expected.len()
                ))
            };
        }
        let end = at + chunk.len();
        if end > expected.len() {
            return Err(format!(
                "{what}: body longer than the expected {} bytes",
                expected.len()
            ));
        }
        if chunk != &expected[at..end] {
            let i = chunk
                .iter()
                .zip(&expected[at..end])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!("{what}: wrong byte at offset {}", at + i));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// load

struct ThreadResult {
    samples: Vec<u32>,
    requests: u64,
    reconnects: u64,
}

fn load(o: &Opts) -> Result<(), Fail> {
    let proxy = o.proxy()?;
    let targets = o.targets()?;
    let path = o.str_or("path", "/20k").to_string();
    let expected: Arc<[u8]> = match path.strip_prefix("/big/").map(str::parse::<usize>) {
        None if path == "/20k" => small_body().into(),
        // A body of N bytes of the /big stream, checked whole: sizes for the sizing figures.
        Some(Ok(n)) if (1..=MAX_LOAD_BODY).contains(&n) => {
            let mut body = vec![0u8; n];
            stream_at(0, &mut body);
            body.into()
        }
        _ => {
            return Err(format!(
                "--path must be /20k or /big/N with N in 1..={MAX_LOAD_BODY}"
            ))
        }
    };
    let connections: usize = o.num("connections", Some(8))?;
    if connections == 0 || connections > 256 {
        return Err("--connections must be 1..=256".into());
    }
    let seconds = o.secs("seconds", 10.0)?;
    let warmup = o.secs("warmup", 1.0)?;
    let label = o.str_or("label", "load").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let record_from = start + warmup;
    let end = record_from + seconds;
    let mut handles = Vec::new();
    for t in 0..connections {
        let (targets, expected, path, stop) = (
            targets.clone(),
            expected.clone(),
            path.clone(),
            stop.clone(),
        );
        let h = thread::Builder::new()
            .name(format!("scraper-{t}"))
            .stack_size(STACK)
            .spawn(move || {
                let r = scraper(
                    t,
                    connections,
                    proxy,
                    &targets,
                    &path,
                    &expected,
                    record_from,
                    end,
                    &stop,
                );
                if r.is_err() {
                    stop.store(true, Ordering::SeqCst);
                }
                r
            })
            .map_err(|e| format!("cannot start a scraper thread: {e}"))?;
        handles.push(h);
    }
    let mut samples = Vec::new();
    let (mut requests, mut reconnects) = (0u64, 0u64);
    let mut first_error = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => {
                samples.extend_from_slice(&r.samples);
                requests += r.requests;
                reconnects += r.reconnects;
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert("a scraper thread panicked".into());
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let measured = end.saturating_duration_since(record_from).as_secs_f64();
    if samples.is_empty() {
        return Err(format!("{label}: no scrape completed in {measured:.1}s"));
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "load label={label} mode={} targets={} connections={connections} seconds={measured:.2} scrapes={} checked={requests} errors=0 reconnects={reconnects} p50_us={} p90_us={} p99_us={} p999_us={} max_us={} rate={:.0}",
        if proxy.is_some() { "proxied" } else { "direct" },
        targets.len(),
        samples.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        samples[samples.len() - 1],
        samples.len() as f64 / measured
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn scraper(
    t: usize,
    connections: usize,
    proxy: Option<SocketAddr>,
    targets: &[SocketAddr],
    path: &str,
    expected: &[u8],
    record_from: Instant,
    end: Instant,
    stop: &AtomicBool,
) -> Result<ThreadResult, Fail> {
    let mut conns: HashMap<SocketAddr, Conn> = HashMap::new();
    let mut r = ThreadResult {
        samples: Vec::with_capacity(1 << 16),
        requests: 0,
        reconnects: 0,
    };
    let requests: Vec<Vec<u8>> = targets
        .iter()
        .map(|a| match proxy {
            // As Prometheus does, with a deadline well above any sane latency here.
            Some(_) => format!("GET http://{a}{path} HTTP/1.1\r\nHost: {a}\r\nUser-Agent: pushprox-bench\r\nAccept: */*\r\nX-Prometheus-Scrape-Timeout-Seconds: 5\r\n\r\n"),
            None => format!("GET {path} HTTP/1.1\r\nHost: {a}\r\nUser-Agent: pushprox-bench\r\nAccept: */*\r\n\r\n"),
        }
        .into_bytes())
        .collect();
    // Each thread starts at its own place in the list and walks all of it.
    let mut i = t * targets.len() / connections;
    while !stop.load(Ordering::Relaxed) && r.samples.len() < MAX_SAMPLES {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let idx = i % targets.len();
        i += 1;
        let addr = proxy.unwrap_or(targets[idx]);
        let what = format!(
            "scrape of http://{}{path}{}",
            targets[idx],
            if proxy.is_some() {
                " via the proxy"
            } else {
                ""
            }
        );
        let conn = match conns.entry(addr) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Conn::open(addr)?),
        };
        let sent = Instant::now();
        conn.writer
            .write_all(&requests[idx])
            .map_err(|e| format!("{what}: sending failed: {e}"))?;
        let close = read_response(conn, &what, small_checker(expected, &what))?;
        let took = sent.elapsed();
        r.requests += 1;
        if sent >= record_from {
            r.samples
                .push(took.as_micros().min(u32::MAX as u128) as u32);
        }
        if close {
            conns.remove(&addr);
            r.reconnects += 1;
        }
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// /proc

#[derive(Default, Clone, Copy)]
struct ProcStatus {
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
}

fn proc_status(pid: u32) -> Result<ProcStatus, Fail> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e} (did the process exit?)"))?;
    let mut s = ProcStatus::default();
    for line in text.lines() {
        let (key, value) = line.split_once(':').unwrap_or((line, ""));
        let number = || -> u64 {
            value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        match key {
            "VmRSS" => s.rss_kib = number(),
            "VmHWM" => s.hwm_kib = number(),
            "Threads" => s.threads = number(),
            _ => {}
        }
    }
    Ok(s)
}

fn rss(o: &Opts) -> Result<(), Fail> {
    let pid: u32 = o.num("pid", None)?;
    let s = proc_status(pid)?;
    println!(
        "rss pid={pid} rss_kib={} hwm_kib={} threads={}",
        s.rss_kib, s.hwm_kib, s.threads
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// idle-polls

/// `GET /metrics` from the proxy and the value of one unlabelled gauge.
fn gauge(proxy: SocketAddr, name: &str) -> Result<f64, Fail> {
    let mut conn = Conn::open(proxy)?;
    write!(
        conn.writer,
        "GET /metrics HTTP/1.1\r\nHost: {proxy}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("GET /metrics: {e}"))?;
    let mut text = Vec::new();
    read_response(&mut conn, "GET /metrics", |_, chunk| {
        if text.len() < 4 << 20 {
            text.extend_from_slice(chunk);
        }
        Ok(())
    })?;
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("the proxy's /metrics has no {name}"))
}

/// Polls opened before the proxy must have taken them all up.
const POLL_BATCH: usize = 100;

/// Waits until the gauge reaches `want` or the deadline passes; returns its last value.
/// A failed `GET /metrics` is retried until the deadline (the proxy may be busy accepting).
fn wait_gauge(
    proxy: SocketAddr,
    name: &str,
    want: usize,
    deadline: Instant,
) -> Result<usize, Fail> {
    let mut last = 0;
    let mut error: Option<Fail>;
    loop {
        match gauge(proxy, name) {
            Ok(v) => {
                last = v as usize;
                error = None;
            }
            Err(e) => error = Some(e),
        }
        if last >= want {
            return Ok(last);
        }
        if Instant::now() >= deadline {
            return match error {
                Some(e) => Err(format!("{name} stuck at {last} of {want}, and then: {e}")),
                None => Ok(last),
            };
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn idle_polls(o: &Opts) -> Result<(), Fail> {
    let proxy = o.proxy()?.ok_or("--proxy is required")?;
    let count: usize = o.num("count", None)?;
    if count == 0 || count > 50_000 {
        return Err("--count must be 1..=50000".into());
    }
    let pid: u32 = o.num("proxy-pid", None)?;
    let timeout = o.secs("timeout", 120.0)?;
    let prefix = o.str_or("prefix", "idle");
    let connection = match o.str_or("connection", "keep-alive") {
        "keep-alive" => "",
        "close" => "Connection: close\r\n",
        other => {
            return Err(format!(
                "--connection {other:?}: expected keep-alive or close"
            ))
        }
    };
    let deadline = Instant::now() + timeout;
    // Let a fresh proxy settle before the baseline.
    thread::sleep(Duration::from_millis(300));
    let before = proc_status(pid)?;
    let started = Instant::now();
    let mut polls = Vec::with_capacity(count);
    for i in 0..count {
        // In batches, each taken up before the next: a burst of thousands of connects would
        // overflow the listen backlog (128) and measure the kernel instead of the proxy.
        if i > 0 && i % POLL_BATCH == 0 {
            wait_gauge(proxy, "pushprox_polls_waiting", i, deadline)?;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "opened only {i} of {count} polls within {timeout:?}"
            ));
        }
        let s = TcpStream::connect_timeout(&proxy, IO_TIMEOUT)
            .map_err(|e| format!("after {i} polls: {}", connect_error(proxy, &e)))?;
        let fqdn = format!("{prefix}-{i}.example");
        let req = format!(
            "POST /poll HTTP/1.1\r\nHost: {proxy}\r\nUser-Agent: pushprox-bench\r\n{connection}Content-Length: {}\r\n\r\n{fqdn}",
            fqdn.len()
        );
        (&s).write_all(req.as_bytes())
            .map_err(|e| format!("sending poll {i}: {e}"))?;
        polls.push(s);
    }
    let opened = started.elapsed();
    let waiting = wait_gauge(proxy, "pushprox_polls_waiting", count, deadline)?;
    if waiting < count {
        // A poll answered early (503 at --web.max-connections, 5xx) shows why.
        let mut reason = String::new();
        for s in &polls {
            let _ = s.set_nonblocking(true);
            let mut buf = [0u8; 200];
            if let Ok(n @ 1..) = (&*s).read(&mut buf) {
                reason = String::from_utf8_lossy(&buf[..n]).replace("\r\n", " | ");
                break;
            }
        }
        return Err(format!(
            "pushprox_polls_waiting reached only {waiting} of {count} within {timeout:?}; {}",
            if reason.is_empty() {
                "no poll was answered: look at the proxy's log (thread limit? ulimit -n?)"
                    .to_string()
            } else {
                format!("a poll was answered: {reason}")
            }
        ));
    }
    let ready = started.elapsed();
    // Let the allocator and the kernel settle, and the proxy's pool threads, which end 2 s
    // after their last work; then take the figure.
    thread::sleep(Duration::from_millis(3000));
    let after = proc_status(pid)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .map_err(|e| format!("cannot read /proc/{pid}/fd: {e}"))?;
    println!(
        "idle-polls count={count} polls_waiting={waiting} rss_before_kib={} rss_kib={} threads_before={} threads={} fds={fds} open_seconds={:.2} ready_seconds={:.2}",
        before.rss_kib,
        after.rss_kib,
        before.threads,
        after.threads,
        opened.as_secs_f64(),
        ready.as_secs_f64()
    );
    drop(polls);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// big

fn big(o: &Opts) -> Result<(), Fail> {
    let proxy = o.proxy()?.ok_or("--proxy is required")?;
    let url = o.str("url")?.to_string();
    let bytes: u64 = url
        .rsplit_once("/big/")
        .and_then(|(_, n)| n.parse().ok())
        .ok_or("--url must end in /big/BYTES")?;
    let timeout = o.secs("timeout", 120.0)?;
    let mut pids: Vec<(String, u32)> = Vec::new();
    for part in o.str_or("pids", "").split(',').filter(|p| !p.is_empty()) {
        let (name, pid) = part.split_once('=').ok_or("--pids is name=PID,name=PID")?;
        let pid: u32 = pid
            .parse()
            .map_err(|_| format!("bad pid in --pids: {part}"))?;
        proc_status(pid)?;
        pids.push((name.to_string(), pid));
    }
    let before: Vec<ProcStatus> = pids
        .iter()
        .map(|(_, p)| proc_status(*p).unwrap_or_default())
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (pids, done) = (pids.clone(), done.clone());
        let until = Instant::now() + timeout;
        thread::Builder::new()
            .name("rss-sampler".into())
            .stack_size(STACK)
            .spawn(move || {
                let mut peak = vec![0u64; pids.len()];
                let mut samples = 0u64;
                while !done.load(Ordering::SeqCst) && Instant::now() < until {
                    for (i, (_, pid)) in pids.iter().enumerate() {
                        if let Ok(s) = proc_status(*pid) {
                            peak[i] = peak[i].max(s.rss_kib);
                        }
                    }
                    samples += 1;
                    thread::sleep(Duration::from_millis(10));
                }
                (peak, samples)
            })
            .map_err(|e| format!("cannot start the sampler: {e}"))?
    };
    let mut conn = Conn::open(proxy)?;
    conn.reader
        .get_ref()
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let host = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .ok_or("--url must start with http://")?;
    let started = Instant::now();
    write!(
        conn.writer,
        "GET {url} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pushprox-bench\r\nX-Prometheus-Scrape-Timeout-Seconds: {}\r\n\r\n",
        timeout.as_secs()
    )
    .map_err(|e| format!("sending the scrape: {e}"))?;
    let mut expected = vec![0u8; 64 * 1024];
    let what = format!("scrape of {url} via the proxy");
    let result = read_response(&mut conn, &what, |at, chunk| {
        if chunk.is_empty() {
            return if at == bytes {
                Ok(())
            } else {
                Err(format!("{what}: body has {at} bytes, expected {bytes}"))
            };
        }
        if at + chunk.len() as u64 > bytes {
            return Err(format!(
                "{what}: body longer than the expected {bytes} bytes"
            ));
        }
        let want = &mut expected[..chunk.len()];
        stream_at(at, want);
        if chunk != want {
            let i = chunk
                .iter()
                .zip(want.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!("{what}: wrong byte at offset {}", at + i as u64));
        }
        Ok(())
    });
    let took = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let (peak, samples) = sampler.join().map_err(|_| "the sampler panicked")?;
    result?;
    let mut line = format!(
        "big bytes={bytes} seconds={:.3} mb_per_s={:.1} rss_samples={samples}",
        took.as_secs_f64(),
        bytes as f64 / 1e6 / took.as_secs_f64()
    );
    for (i, (name, pid)) in pids.iter().enumerate() {
        let s = proc_status(*pid)?;
        line.push_str(&format!(
            " {name}_rss_before_kib={} {name}_peak_rss_kib={} {name}_hwm_kib={}",
            before[i].rss_kib,
            peak[i].max(s.rss_kib),
            s.hwm_kib
        ));
    }
    println!("{line}");
    Ok(())
}
