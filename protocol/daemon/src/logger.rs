//! Logs: one plain line per event on stderr, `time [LEVEL] message`, the time in RFC 3339 UTC
//! (`2025-01-31T12:00:00.123456Z`); or, with `--log.format json`, one JSON object per line:
//! `{"ts":"...","level":"info","msg":"...","fqdn":"...",...}`, the message whole in `msg` and
//! each of its `key=value` words (`fqdn=`, `scrape_id=`, `from=`, `status=`...) also as a
//! string field, so a log pipeline can select on them. A few lines of our own instead of a
//! logging crate: this is all the daemons need, and each static binary is smaller for it.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Starts logging at `level`, for the events of the crates whose names (as `log` targets,
/// `pushprox_client`) start with one of `crates`. The libraries' own lines (ureq, rustls,
/// tiny_http) would drown ours, and their errors reach us as values anyway.
pub fn init(level: log::LevelFilter, crates: &'static [&'static str]) {
    init_as(level, crates, Format::Plain);
}

/// How each event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `time [LEVEL] message` (`--log.format logfmt`, the default).
    Plain,
    /// One JSON object per line (`--log.format json`).
    Json,
}

/// As [`init`], in the given format.
pub fn init_as(level: log::LevelFilter, crates: &'static [&'static str], format: Format) {
    let logger = Box::leak(Box::new(StderrLogger { crates, format }));
    // Only fails if a logger is already set, which a daemon does once.
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

struct StderrLogger {
    crates: &'static [&'static str],
    format: Format,
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
        let now = rfc3339(SystemTime::now());
        let line = match self.format {
            Format::Plain => format!("{now} [{}] {}\n", record.level(), record.args()),
            Format::Json => json_line(&now, record.level(), &record.args().to_string()),
        };
        // One write per line, so that lines of several threads do not mix; a log line that
        // cannot be written has nowhere else to go.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Names that are the line's own fields, never taken from the message.
const RESERVED: [&str; 3] = ["ts", "level", "msg"];

/// One event as a JSON object and a newline.
pub fn json_line(ts: &str, level: log::Level, msg: &str) -> String {
    let mut out = String::with_capacity(msg.len() + 64);
    out.push_str("{\"ts\":");
    json_string(&mut out, ts);
    out.push_str(",\"level\":");
    json_string(&mut out, &level.as_str().to_ascii_lowercase());
    out.push_str(",\"msg\":");
    json_string(&mut out, msg);
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in fields(msg) {
        if RESERVED.contains(&key) || seen.contains(&key) {
            continue;
        }
        seen.push(key);
        out.push(',');
        json_string(&mut out, key);
        out.push(':');
        json_string(&mut out, value);
    }
    out.push_str("}\n");
    out
}

/// The `key=value` words of a message: the key of letters, digits, `_`, `.` and `-`, the
/// value up to the next space (without a trailing `:` `,` or `;`), or in double quotes.
pub fn fields(msg: &str) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut rest = msg;
    while !rest.is_empty() {
        let word_start = rest.trim_start_matches(' ');
        let key_end = word_start
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
            .unwrap_or(word_start.len());
        let key = &word_start[..key_end];
        let after = &word_start[key_end..];
        if !key.is_empty() && key.starts_with(|c: char| c.is_ascii_alphabetic()) {
            if let Some(value_part) = after.strip_prefix('=') {
                let (value, next) = match value_part.strip_prefix('"') {
                    Some(quoted) => match quoted.find('"') {
                        Some(end) => (&quoted[..end], &quoted[end + 1..]),
                        None => (quoted, ""),
                    },
                    None => {
                        let end = value_part.find(' ').unwrap_or(value_part.len());
                        let value = value_part[..end].trim_end_matches([':', ',', ';']);
                        (value, &value_part[end..])
                    }
                };
                found.push((key, value));
                rest = next;
                continue;
            }
        }
        // Not a field: skip to the next word.
        rest = match word_start.find(' ') {
            Some(space) => &word_start[space..],
            None => "",
        };
    }
    found
}

/// `text` as a JSON string literal.
fn json_string(out: &mut String, text: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
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
    fn json_lines_lift_key_value_words() {
        let line = json_line(
            "2025-01-31T12:00:00.000000Z",
            log::Level::Warn,
            "refused POST /poll from=127.0.0.1:5 status=403: bad \"x\"\tfqdn=a.example ts=no",
        );
        assert_eq!(
            line,
            "{\"ts\":\"2025-01-31T12:00:00.000000Z\",\"level\":\"warn\",\"msg\":\"refused POST /poll from=127.0.0.1:5 status=403: bad \\\"x\\\"\\tfqdn=a.example ts=no\",\"from\":\"127.0.0.1:5\",\"status\":\"403\"}\n"
        );
        assert_eq!(
            fields("client registered fqdn=a.example scrape_id=3f-1 msg=x reason=\"two words\" =y"),
            [
                ("fqdn", "a.example"),
                ("scrape_id", "3f-1"),
                ("msg", "x"),
                ("reason", "two words")
            ]
        );
        assert_eq!(fields("no fields here: a = b"), []);
        let control = json_line("t", log::Level::Info, "\u{1}");
        assert!(control.contains("\"msg\":\"\\u0001\""), "{control}");
    }

    #[test]
    fn only_the_named_crates_are_logged() {
        let logger = StderrLogger {
            crates: &["pushprox_client", "pushprox_daemon"],
            format: Format::Plain,
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
