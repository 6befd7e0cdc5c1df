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
//! One file per subcommand (`target.rs`, `load.rs`, `idle.rs`, `big.rs`), with the known
//! bodies, the response checks and /proc beside them; the flags are clap's, below.
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

use clap::Parser;
use pushprox_protocol::{BodyReader, ResponseHead, DEFAULT_MAX_HEAD};

mod big;
mod body;
mod check;
mod idle;
mod load;
mod procfs;
mod target;

use big::*;
use body::*;
use check::*;
use idle::*;
use load::*;
use procfs::*;
use target::*;

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

/// The load tool behind scripts/bench.sh; see this file's doc comment.
#[derive(Parser)]
#[command(name = "bench")]
enum Cmd {
    /// Serves GET /20k and GET /big/N on --count addresses from --hosts, port --port.
    Target {
        #[command(flatten)]
        hosts: Hosts,
        /// How long the target lives, in seconds.
        #[arg(long, default_value = "3600", value_parser = seconds)]
        seconds: Duration,
    },
    /// Writes the 20 KiB body to a file, for an nginx target.
    WriteBody {
        #[arg(long)]
        out: String,
    },
    /// Keep-alive scrapers, every body checked; latency percentiles and throughput.
    Load(LoadArgs),
    /// Holds --count raw polls open and reads the proxy's VmRSS and threads.
    IdlePolls(IdleArgs),
    /// One large scrape, checked as it streams, with the peak VmRSS of --pids.
    Big(BigArgs),
    /// VmRSS, VmHWM and threads of a process.
    Rss {
        #[arg(long)]
        pid: u32,
    },
}

/// `--hosts 127.0.0.2 --count N --port P`: N consecutive loopback addresses.
#[derive(clap::Args, Clone)]
struct Hosts {
    #[arg(long)]
    hosts: Ipv4Addr,
    #[arg(long, default_value_t = 1)]
    count: u32,
    #[arg(long)]
    port: u16,
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Scrape through this proxy (absolute form); without it, straight to the targets.
    #[arg(long, value_parser = loopback)]
    proxy: Option<SocketAddr>,
    #[command(flatten)]
    hosts: Hosts,
    #[arg(long, default_value = "/20k")]
    path: String,
    #[arg(long, default_value_t = 8)]
    connections: usize,
    #[arg(long, default_value = "10", value_parser = seconds)]
    seconds: Duration,
    #[arg(long, default_value = "1", value_parser = seconds)]
    warmup: Duration,
    #[arg(long, default_value = "load")]
    label: String,
}

#[derive(clap::Args)]
struct IdleArgs {
    #[arg(long, value_parser = loopback)]
    proxy: SocketAddr,
    #[arg(long)]
    count: usize,
    #[arg(long)]
    proxy_pid: u32,
    #[arg(long, default_value = "120", value_parser = seconds)]
    timeout: Duration,
    #[arg(long, default_value = "idle")]
    prefix: String,
    /// keep-alive (as the Go client) or close.
    #[arg(long, default_value = "keep-alive")]
    connection: String,
}

#[derive(clap::Args)]
struct BigArgs {
    #[arg(long, value_parser = loopback)]
    proxy: SocketAddr,
    /// http://H:P/big/BYTES
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "120", value_parser = seconds)]
    timeout: Duration,
    /// name=PID,name=PID: the processes whose peak VmRSS is sampled.
    #[arg(long, default_value = "")]
    pids: String,
}

fn main() -> ExitCode {
    let cmd = Cmd::parse();
    let result = match &cmd {
        Cmd::Target { hosts, seconds } => target(hosts, *seconds),
        Cmd::WriteBody { out } => write_body(out),
        Cmd::Load(a) => load(a),
        Cmd::IdlePolls(a) => idle_polls(a),
        Cmd::Big(a) => big(a),
        Cmd::Rss { pid } => rss(*pid),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: FAIL: {e}");
            ExitCode::from(1)
        }
    }
}

/// A duration in seconds, 0 to a day.
fn seconds(text: &str) -> Result<Duration, String> {
    let s: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !(0.0..=86_400.0).contains(&s) {
        return Err(format!("{s} is out of range"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// A loopback `host:port`.
fn loopback(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not host:port"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address"));
    }
    Ok(addr)
}

impl Hosts {
    /// The addresses, all in 127.0.0.0/8.
    fn targets(&self) -> Result<Vec<SocketAddr>, Fail> {
        let base = u32::from(self.hosts);
        if self.count == 0 || self.count > 250 || !self.hosts.is_loopback() {
            return Err("--hosts must be in 127.0.0.0/8 and --count 1..=250".into());
        }
        let addrs: Vec<SocketAddr> = (0..self.count)
            .map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(base + i)), self.port))
            .collect();
        if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(format!("{bad} is outside 127.0.0.0/8"));
        }
        Ok(addrs)
    }
}
