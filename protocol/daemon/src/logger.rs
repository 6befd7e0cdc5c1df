//! Logs: one plain line per event on stderr, `time [LEVEL] message`, the time in RFC 3339 UTC
//! (`2025-01-31T12:00:00.123456Z`). A few lines of our own instead of a logging crate: this is
//! all the daemons need, and each static binary is smaller for it.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Starts logging at `level`, for the events of the crates whose names (as `log` targets,
/// `pushprox_client`) start with one of `crates`. The libraries' own lines (ureq, rustls,
/// tiny_http) would drown ours, and their errors reach us as values anyway.
pub fn init(level: log::LevelFilter, crates: &'static [&'static str]) {
    let logger = Box::leak(Box::new(StderrLogger { crates }));
    // Only fails if a logger is already set, which a daemon does once.
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

struct StderrLogger {
    crates: &'static [&'static str],
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
            && self.crates.iter().any(|c| metadata.target().starts_with(c))
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "{} [{}] {}\n",
            rfc3339(SystemTime::now()),
            record.level(),
            record.args()
        );
        // One write per line, so that lines of several threads do not mix; a log line that
        // cannot be written has nowhere else to go.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// `time` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60,
        since.subsec_micros()
    )
}

/// Year, month and day of the day `days` after 1970-01-01 in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |secs: u64, micros: u64| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(at(1_738_324_800, 123_456), "2025-01-31T12:00:00.123456Z");
        assert_eq!(at(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z");
    }

    #[test]
    fn only_the_named_crates_are_logged() {
        let logger = StderrLogger {
            crates: &["pushprox_client", "pushprox_daemon"],
        };
        log::set_max_level(log::LevelFilter::Debug);
        let meta = |target| {
            log::Metadata::builder()
                .level(log::Level::Info)
                .target(target)
                .build()
        };
        use log::Log as _;
        assert!(logger.enabled(&meta("pushprox_client::poller")));
        assert!(logger.enabled(&meta("pushprox_daemon::workers")));
        assert!(!logger.enabled(&meta("rustls::client")));
        assert!(!logger.enabled(&meta("tiny_http")));
    }
}
