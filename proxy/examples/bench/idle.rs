//! `bench idle-polls`: the proxy holding N idle polls.

use super::*;

/// `GET /metrics` from the proxy and the value of one unlabelled gauge.
pub(crate) fn gauge(proxy: SocketAddr, name: &str) -> Result<f64, Fail> {
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
pub(crate) const POLL_BATCH: usize = 100;

/// Waits until the gauge reaches `want` or the deadline passes; returns its last value.
/// A failed `GET /metrics` is retried until the deadline (the proxy may be busy accepting).
pub(crate) fn wait_gauge(
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

pub(crate) fn idle_polls(o: &IdleArgs) -> Result<(), Fail> {
    let (proxy, count) = (o.proxy, o.count);
    if count == 0 || count > 50_000 {
        return Err("--count must be 1..=50000".into());
    }
    let (pid, timeout, prefix) = (o.proxy_pid, o.timeout, o.prefix.as_str());
    let connection = match o.connection.as_str() {
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
