//! The scrapes in flight: at most `--scrape.max-in-flight` of them, whatever the proxies hand
//! out, and a shutdown lets them finish within their deadlines.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushprox_daemon::AtomicU64;

/// Refusals are logged at most this often, with their count.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The scrapes running now, their limit, and the latest time one of them may still be busy.
#[derive(Debug)]
pub struct InFlight {
    count: Arc<AtomicUsize>,
    max: usize,
    started: Instant,
    /// Milliseconds after `started` by which every scrape started so far is done.
    latest_end_ms: AtomicU64,
    /// Scrapes refused at the limit since the last log line about them, and when that was
    /// (milliseconds after `started`, 0: never).
    refused: AtomicU64,
    refusal_logged_ms: AtomicU64,
}

/// Held by a scrape thread: counts the scrape in a count of scrapes in flight (all of them, or
/// one proxy's); dropping it marks the scrape done.
pub struct InFlightGuard(Arc<AtomicUsize>);

impl InFlightGuard {
    /// Counts one more scrape in `count`; also returns the count with it.
    pub fn start(count: &Arc<AtomicUsize>) -> (InFlightGuard, usize) {
        let now = count.fetch_add(1, Ordering::SeqCst) + 1;
        (InFlightGuard(Arc::clone(count)), now)
    }
}

impl InFlight {
    /// No scrape in flight; at most `max` at once (at least one).
    pub fn new(max: usize) -> Arc<InFlight> {
        Arc::new(InFlight {
            count: Arc::new(AtomicUsize::new(0)),
            max: max.max(1),
            started: Instant::now(),
            latest_end_ms: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            refusal_logged_ms: AtomicU64::new(0),
        })
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Marks a scrape as started that will be done within `bound`; `None`, and nothing
    /// changed, when `max` scrapes are in flight already.
    pub fn try_start(&self, bound: Duration) -> Option<InFlightGuard> {
        self.count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        let end = (self.started.elapsed() + bound).as_millis() as u64;
        self.latest_end_ms.fetch_max(end, Ordering::SeqCst);
        Some(InFlightGuard(Arc::clone(&self.count)))
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Notes a scrape refused at the limit; returns how many were refused since the last log
    /// line when it is time for another one (at most every 10 s), so a proxy that floods the
    /// client with scrapes does not flood its log too.
    pub fn refused(&self) -> Option<u64> {
        self.refused.fetch_add(1, Ordering::SeqCst);
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.refusal_logged_ms.load(Ordering::SeqCst);
        let due = last == 0 || now.saturating_sub(last) >= REFUSAL_LOG_EVERY.as_millis() as u64;
        if due
            && self
                .refusal_logged_ms
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            return Some(self.refused.swap(0, Ordering::SeqCst));
        }
        None
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
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_idle_returns_when_the_last_guard_drops() {
        let in_flight = InFlight::new(4);
        assert_eq!(in_flight.wait_idle(), 0);
        let guard = in_flight.try_start(Duration::from_secs(5)).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(guard);
        });
        assert_eq!(in_flight.wait_idle(), 0);
        t.join().unwrap();
    }

    #[test]
    fn wait_idle_gives_up_at_the_latest_bound() {
        let in_flight = InFlight::new(4);
        let _stuck = in_flight.try_start(Duration::from_millis(50)).unwrap();
        let started = Instant::now();
        assert_eq!(in_flight.wait_idle(), 1);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn no_more_than_the_limit_start_and_a_finished_one_makes_room() {
        let in_flight = InFlight::new(2);
        let a = in_flight.try_start(Duration::from_secs(5)).unwrap();
        let _b = in_flight.try_start(Duration::from_secs(5)).unwrap();
        assert!(in_flight.try_start(Duration::from_secs(5)).is_none());
        assert_eq!(in_flight.count(), 2);
        drop(a);
        assert!(in_flight.try_start(Duration::from_secs(5)).is_some());
    }

    #[test]
    fn refusals_are_logged_once_then_counted_until_the_next_log() {
        let in_flight = InFlight {
            // A minute old, so that "10 s ago" can be written below.
            started: Instant::now().checked_sub(Duration::from_secs(60)).unwrap(),
            ..Arc::into_inner(InFlight::new(1)).unwrap()
        };
        assert_eq!(in_flight.refused(), Some(1));
        assert_eq!(in_flight.refused(), None);
        assert_eq!(in_flight.refused(), None);
        // The last log line 11 s ago: the next refusal logs the two since, and itself.
        let eleven_ago = in_flight.started.elapsed().as_millis() as u64 - 11_000;
        in_flight
            .refusal_logged_ms
            .store(eleven_ago, Ordering::SeqCst);
        assert_eq!(in_flight.refused(), Some(3));
        assert_eq!(in_flight.refused(), None);
    }
}
