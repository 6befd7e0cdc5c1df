//! Warnings about refused requests, at most one line per interval and kind of refusal: a
//! flood of refusals writes a bounded number of lines, each saying how many it stands for,
//! and never hides a refusal of another kind.

use pushprox_daemon::sync::lock;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One line per `interval` and kind; the lines in between are counted, not written.
pub struct WarnLimit {
    interval: Duration,
    /// By kind: a few fixed names, so a list.
    state: Mutex<Vec<(&'static str, Throttle)>>,
}

/// When a line about a repeated event is due (at most once per interval) and how many
/// events it stands for: the state of every "one line per interval, with a count" log.
#[derive(Default)]
pub struct Throttle {
    last: Option<Instant>,
    /// Events not written about since the last line.
    left_out: u64,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle {
            last: None,
            left_out: 0,
        }
    }

    /// Counts an event at `now`; when a line is due (the first event, or the first one
    /// `interval` after the last line), the events since the last line, this one included.
    pub fn due(&mut self, now: Instant, interval: Duration) -> Option<u64> {
        self.left_out += 1;
        if self.last.is_some_and(|t| now.duration_since(t) < interval) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.left_out))
    }
}

impl WarnLimit {
    pub const fn new(interval: Duration) -> WarnLimit {
        WarnLimit {
            interval,
            state: Mutex::new(Vec::new()),
        }
    }

    /// Writes `line()` as a warning, unless one of the same `kind` was written less than the
    /// interval ago; the next line of that kind says how many were left out.
    pub fn warn(&self, kind: &'static str, line: impl FnOnce() -> String) {
        let now = Instant::now();
        let due = {
            let mut kinds = lock(&self.state);
            let at = match kinds.iter().position(|(k, _)| *k == kind) {
                Some(at) => at,
                None => {
                    kinds.push((kind, Throttle::new()));
                    kinds.len() - 1
                }
            };
            kinds[at].1.due(now, self.interval)
        };
        let Some(count) = due else {
            return;
        };
        let line = line();
        match count - 1 {
            0 => log::warn!("{line}"),
            left_out => log::warn!(
                "{line} ({left_out} more in the last {}s)",
                self.interval.as_secs()
            ),
        }
    }
}

/// Refused requests and connections: logs stay readable under a flood (they are counted
/// in full in /metrics).
pub static REFUSALS: WarnLimit = WarnLimit::new(Duration::from_secs(10));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_one_line_per_interval() {
        let limit = WarnLimit::new(Duration::from_secs(3600));
        let mut written = 0;
        for _ in 0..10_000 {
            limit.warn("poll", || {
                written += 1;
                String::new()
            });
        }
        assert_eq!(written, 1);
        assert_eq!(limit.state.lock().unwrap()[0].1.left_out, 9_999);
        // Another kind is not hidden by the flood.
        limit.warn("push", || {
            written += 1;
            String::new()
        });
        assert_eq!(written, 2);
        let limit = WarnLimit::new(Duration::ZERO);
        let mut written = 0;
        for _ in 0..3 {
            limit.warn("poll", || {
                written += 1;
                String::new()
            });
        }
        assert_eq!(written, 3);
    }
}
