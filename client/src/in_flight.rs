//! The scrapes in flight, which a shutdown lets finish within their deadlines.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushprox_daemon::AtomicU64;

/// The scrapes running now, and the latest time one of them may still be busy.
#[derive(Debug)]
pub struct InFlight {
    count: AtomicUsize,
    started: Instant,
    /// Milliseconds after `started` by which every scrape started so far is done.
    latest_end_ms: AtomicU64,
}

/// Held by a scrape thread; dropping it marks the scrape done.
pub struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    pub fn new() -> Arc<InFlight> {
        Arc::new(InFlight {
            count: AtomicUsize::new(0),
            started: Instant::now(),
            latest_end_ms: AtomicU64::new(0),
        })
    }

    /// Marks a scrape as started that will be done within `bound`.
    pub fn start(self: &Arc<Self>, bound: Duration) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        let end = (self.started.elapsed() + bound).as_millis() as u64;
        self.latest_end_ms.fetch_max(end, Ordering::SeqCst);
        InFlightGuard(Arc::clone(self))
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until no scrape is in flight, but not past the latest bound any of them gave.
    /// Returns the number still running when it gave up.
    pub fn wait_idle(&self) -> usize {
        let until = self.started + Duration::from_millis(self.latest_end_ms.load(Ordering::SeqCst));
        loop {
            let n = self.count();
            if n == 0 || Instant::now() >= until {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_idle_returns_when_the_last_guard_drops() {
        let in_flight = InFlight::new();
        assert_eq!(in_flight.wait_idle(), 0);
        let guard = in_flight.start(Duration::from_secs(5));
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(guard);
        });
        assert_eq!(in_flight.wait_idle(), 0);
        t.join().unwrap();
    }

    #[test]
    fn wait_idle_gives_up_at_the_latest_bound() {
        let in_flight = InFlight::new();
        let _stuck = in_flight.start(Duration::from_millis(50));
        let started = Instant::now();
        assert_eq!(in_flight.wait_idle(), 1);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
