//! The open-files limit, which bounds how many connections the proxy can hold: one file
//! descriptor each, parked polls included.

/// File descriptors kept for everything else (listener, logs, /proc reads, spare).
const RESERVED_FDS: u64 = 64;

/// Raises the soft open-files limit to the hard one, as the Go runtime does at start, and
/// returns the limit now in force (None where it cannot be read).
// rlim_t is u64 on Linux but not on every target libc supports: the conversions stay.
#[allow(clippy::useless_conversion)]
pub fn raise_open_files() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid, writable rlimit struct for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: raised is a valid rlimit struct that outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(u64::from(lim.rlim_max));
        }
    }
    Some(u64::from(lim.rlim_cur))
}

/// How many connections fit in `open_files` descriptors.
pub fn connections_for(open_files: u64) -> u64 {
    open_files.saturating_sub(RESERVED_FDS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn limit_is_read_and_never_lowered() {
        let before = std::fs::read_to_string("/proc/self/limits").unwrap();
        let soft: u64 = before
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok())
            .unwrap();
        let now = super::raise_open_files().expect("readable on Linux");
        assert!(now >= soft, "{now} < {soft}");
        assert_eq!(super::connections_for(20_000), 19_936);
        assert_eq!(super::connections_for(10), 0);
    }
}
