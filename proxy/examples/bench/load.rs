//! `bench load`: keep-alive scrapers, latency percentiles and throughput.

use super::*;

pub(crate) struct ThreadResult {
    pub(crate) samples: Vec<u32>,
    pub(crate) requests: u64,
    pub(crate) reconnects: u64,
}

pub(crate) fn load(o: &LoadArgs) -> Result<(), Fail> {
    let proxy = o.proxy;
    let targets = o.hosts.targets()?;
    let path = o.path.clone();
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
    let connections = o.connections;
    if connections == 0 || connections > 256 {
        return Err("--connections must be 1..=256".into());
    }
    let (seconds, warmup, label) = (o.seconds, o.warmup, o.label.clone());
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
pub(crate) fn scraper(
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
