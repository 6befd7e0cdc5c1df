//! Readers of metrics and of /proc: threads, fds, TCP connections, memory.

use std::thread;
use std::time::Duration;

use crate::process::wait_until;

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

/// Peak resident memory of `pid` so far (`VmHWM`), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM: line in /proc/PID/status")
}
