//! SIGTERM and SIGINT: a flag the daemons' loops check, instead of the default of dying.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signum: libc::c_int) {
    // Only an atomic store: nothing else is async-signal-safe here.
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Makes SIGTERM and SIGINT request a shutdown instead of killing the process.
pub fn install() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}

/// True once SIGTERM or SIGINT arrived.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Sleeps for `d`, or less if a shutdown is requested meanwhile.
pub fn sleep(d: Duration) {
    let until = Instant::now() + d;
    while !requested() {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigterm_is_a_request_not_a_death() {
        install();
        assert!(!requested());
        // SAFETY: raise(3) sends the signal to this thread; the handler above takes it.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        assert!(requested());
        let started = Instant::now();
        sleep(Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
