//! The open-files limit, which bounds how many clients the proxy can hold: each connection
//! takes two file descriptors in tiny_http (a read and a write handle).

/// File descriptors one connection needs.
pub const FDS_PER_CONNECTION: u64 = 2;
/// File descriptors kept for everything else (listener, logs, /proc reads, spare).
const RESERVED_FDS: u64 = 64;

#[cfg(target_os = "linux")]
mod sys {
    #[repr(C)]
    pub struct Rlimit {
        pub cur: u64,
        pub max: u64,
    }
    pub const RLIMIT_NOFILE: i32 = 7;
    extern "C" {
        pub fn getrlimit(resource: i32, rlim: *mut Rlimit) -> i32;
        pub fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
    }
}

/// Raises the soft open-files limit to the hard one, as the Go runtime does at start, and
/// returns the limit now in force (None where it cannot be read).
#[cfg(target_os = "linux")]
pub fn raise_open_files() -> Option<u64> {
    let mut lim = sys::Rlimit { cur: 0, max: 0 };
    // SAFETY: lim is a valid, writable rlimit struct for the call.
    if unsafe { sys::getrlimit(sys::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.cur < lim.max {
        let raised = sys::Rlimit {
            cur: lim.max,
            max: lim.max,
        };
        // SAFETY: raised is a valid rlimit struct that outlives the call.
        if unsafe { sys::setrlimit(sys::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(lim.max);
        }
    }
    Some(lim.cur)
}

#[cfg(not(target_os = "linux"))]
pub fn raise_open_files() -> Option<u64> {
    None
}

/// How many connections fit in `open_files` descriptors.
pub fn connections_for(open_files: u64) -> u64 {
    open_files.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION
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
        assert_eq!(super::connections_for(20_000), 9_968);
        assert_eq!(super::connections_for(10), 0);
    }
}
