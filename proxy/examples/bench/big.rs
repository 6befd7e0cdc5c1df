//! `bench big`: one large scrape relayed, and the peak memory it costs.

use super::*;

pub(crate) fn big(o: &BigArgs) -> Result<(), Fail> {
    let proxy = o.proxy;
    let url = o.url.clone();
    let bytes: u64 = url
        .rsplit_once("/big/")
        .and_then(|(_, n)| n.parse().ok())
        .ok_or("--url must end in /big/BYTES")?;
    let timeout = o.timeout;
    let mut pids: Vec<(String, u32)> = Vec::new();
    for part in o.pids.split(',').filter(|p| !p.is_empty()) {
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
