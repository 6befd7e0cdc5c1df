//! What /proc says of a process: VmRSS, VmHWM, threads.

use super::*;

#[derive(Default, Clone, Copy)]
pub(crate) struct ProcStatus {
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
    pub(crate) threads: u64,
}

pub(crate) fn proc_status(pid: u32) -> Result<ProcStatus, Fail> {
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

pub(crate) fn rss(pid: u32) -> Result<(), Fail> {
    let s = proc_status(pid)?;
    println!(
        "rss pid={pid} rss_kib={} hwm_kib={} threads={}",
        s.rss_kib, s.hwm_kib, s.threads
    );
    Ok(())
}
