//! Logs: one line per event on stderr, in logfmt as Go PushProx and node_exporter write it,
//! `ts=2025-01-31T12:00:00.123456Z level=info msg="client registered" fqdn=a.example`; or,
//! with `--log.format json`, one JSON object per line with the same keys,
//! `{"ts":"...","level":"info","msg":"client registered","fqdn":"a.example","status":403}`.
//! The daemons write each event as one sentence with `key=value` words in it (`fqdn=`,
//! `scrape_id=`, `from=`, `status=`...): those words become fields, and `msg` is the rest.
//! A few lines of our own instead of a logging crate: this is all the daemons need, and each
//! static binary is smaller for it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// How each event is written (`--log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `ts=... level=info msg="..." key=value ...` (`--log.format logfmt`, the default).
    Logfmt,
    /// One JSON object per line (`--log.format json`).
    Json,
}

/// Starts logging at `level` in `format`, for the events of the crates whose names (as `log`
/// targets, `pushprox_client`) start with one of `crates`. The libraries' own lines (ureq,
/// rustls) would drown ours, and their errors reach us as values anyway.
pub fn init(level: log::LevelFilter, crates: &'static [&'static str], format: Format) {
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
            Format::Logfmt => logfmt_line(&now, record.level(), &record.args().to_string()),
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

/// Fields whose values are always strings in JSON, even when they look like numbers (an FQDN,
/// a scrape id or a user name made of digits), so that a log store sees one type per field.
const ALWAYS_STRINGS: [&str; 6] = ["fqdn", "scrape_id", "id", "user", "version", "poller"];

/// One event as a logfmt line and a newline, as Go PushProx and node_exporter write them:
/// `ts=... level=info msg="..." fqdn=... scrape_id=...`. The message's `key=value` words
/// become fields of their own and leave `msg`.
pub fn logfmt_line(ts: &str, level: log::Level, message: &str) -> String {
    let (msg, fields) = split(message);
    let mut out = String::with_capacity(message.len() + 64);
    let level = level.as_str().to_ascii_lowercase();
    let _ = write!(out, "ts={ts} level={level} msg=");
    logfmt_value(&mut out, &msg);
    for (key, value) in fields {
        let _ = write!(out, " {key}=");
        logfmt_value(&mut out, value);
    }
    out.push('\n');
    out
}

/// One event as a JSON object and a newline: `ts`, `level`, `msg` (without the fields), then
/// each field, numbers and booleans typed.
pub fn json_line(ts: &str, level: log::Level, message: &str) -> String {
    let (msg, fields) = split(message);
    let mut out = String::with_capacity(message.len() + 64);
    // The time stamp and the level need no escaping.
    let level = level.as_str().to_ascii_lowercase();
    let _ = write!(out, "{{\"ts\":\"{ts}\",\"level\":\"{level}\",\"msg\":");
    json_string(&mut out, &msg);
    for (key, value) in fields {
        // A key is letters, digits, `_`, `.` and `-` ([`split`]): it needs no escaping.
        let _ = write!(out, ",\"{key}\":");
        if !ALWAYS_STRINGS.contains(&key)
            && (is_json_number(value) || value == "true" || value == "false")
        {
            out.push_str(value);
        } else {
            json_string(&mut out, value);
        }
    }
    out.push_str("}\n");
    out
}

/// Whether `v` is a JSON number as written: `0`, `403`, `-1`, `0.25` (no leading zeros, no
/// exponent, at most 15 digits so that every reader keeps it exact).
fn is_json_number(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(int)
        && (int == "0" || !int.starts_with('0'))
        && frac.is_none_or(all_digits)
        && digits.len() <= 16
}

/// A logfmt value: bare when it can be, else quoted with `\"`, `\\`, `\n`, `\r`, `\t` and
/// `\u00XX` escapes (go-logfmt's rules: quoted if empty or holding a space, `=`, `"` or a
/// control character).
fn logfmt_value(out: &mut String, value: &str) {
    let bare = !value.is_empty()
        && !value
            .chars()
            .any(|c| c <= ' ' || c == '=' || c == '"' || c == '\u{7f}');
    if bare {
        out.push_str(value);
    } else {
        json_string(out, value);
    }
}

/// The message without its `key=value` words, and those words as fields, in order. A key is
/// letters, digits, `_`, `.` and `-`, starting with a letter; the value runs to the next space
/// (a trailing `:` `,` or `;` stays in the message) or is in double quotes. A key seen before,
/// and the line's own `ts`, `level` and `msg`, stay in the message as they are.
pub fn split(message: &str) -> (String, Vec<(&str, &str)>) {
    let mut text = String::with_capacity(message.len());
    let mut found: Vec<(&str, &str)> = Vec::new();
    let mut rest = message;
    while !rest.is_empty() {
        let spaces = rest.len() - rest.trim_start_matches(' ').len();
        let word = &rest[spaces..];
        let key_end = word
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
            .unwrap_or(word.len());
        let key = &word[..key_end];
        let is_key = !key.is_empty()
            && key.starts_with(|c: char| c.is_ascii_alphabetic())
            && !RESERVED.contains(&key)
            && !found.iter().any(|(k, _)| *k == key);
        if let Some(value_part) = word[key_end..].strip_prefix('=').filter(|_| is_key) {
            let (value, punctuation, next) = match value_part.strip_prefix('"') {
                Some(quoted) => match quoted.find('"') {
                    Some(end) => (&quoted[..end], "", &quoted[end + 1..]),
                    None => (quoted, "", ""),
                },
                None => {
                    let end = value_part.find(' ').unwrap_or(value_part.len());
                    let raw = &value_part[..end];
                    let value = raw.trim_end_matches([':', ',', ';']);
                    (value, &raw[value.len()..], &value_part[end..])
                }
            };
            found.push((key, value));
            text.push_str(punctuation);
            rest = next;
            continue;
        }
        let end = word.find(' ').unwrap_or(word.len());
        text.push_str(&rest[..spaces + end]);
        rest = &word[end..];
    }
    let msg = text.trim_start_matches([' ', ':', ',', ';']).trim_end();
    (msg.to_string(), found)
}

/// `text` as a JSON string literal.
fn json_string(out: &mut String, text: &str) {
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
    fn key_value_words_become_fields_and_leave_the_message() {
        assert_eq!(
            split("client registered fqdn=a.example scrape_id=3f-1 msg=x reason=\"two words\" =y"),
            (
                "client registered msg=x =y".to_string(),
                vec![
                    ("fqdn", "a.example"),
                    ("scrape_id", "3f-1"),
                    ("reason", "two words")
                ]
            )
        );
        assert_eq!(
            split("serving fqdn=h.example: targets are h.example:PORT"),
            (
                "serving: targets are h.example:PORT".to_string(),
                vec![("fqdn", "h.example")]
            )
        );
        assert_eq!(
            split("fqdn=a fqdn=b x"),
            ("fqdn=b x".to_string(), vec![("fqdn", "a")])
        );
        assert_eq!(
            split("no fields here: a = b"),
            ("no fields here: a = b".to_string(), vec![])
        );
    }

    #[test]
    fn logfmt_lines_quote_as_go_logfmt_does() {
        let line = logfmt_line(
            "2025-01-31T12:00:00.000000Z",
            log::Level::Warn,
            "fqdn=a.example scrape_id=7 refused POST /poll from=127.0.0.1:5 status=403: bad \"x\"\tq=a\\b ts=no",
        );
        assert_eq!(
            line,
            "ts=2025-01-31T12:00:00.000000Z level=warn msg=\"refused POST /poll: bad \\\"x\\\"\\tq=a\\\\b ts=no\" fqdn=a.example scrape_id=7 from=127.0.0.1:5 status=403\n"
        );
        assert_eq!(
            logfmt_line("t", log::Level::Info, "started empty= path=\"/a b\""),
            "ts=t level=info msg=started empty=\"\" path=\"/a b\"\n"
        );
    }

    #[test]
    fn json_lines_have_typed_fields_and_a_message_without_them() {
        let line = json_line(
            "2025-01-31T12:00:00.000000Z",
            log::Level::Warn,
            "refused POST /poll from=127.0.0.1:5 status=403: bad \"x\"\tfqdn=12 ratio=0.5 zip=007 tls=true ts=no",
        );
        assert_eq!(
            line,
            "{\"ts\":\"2025-01-31T12:00:00.000000Z\",\"level\":\"warn\",\"msg\":\"refused POST /poll: bad \\\"x\\\"\\tfqdn=12 ts=no\",\"from\":\"127.0.0.1:5\",\"status\":403,\"ratio\":0.5,\"zip\":\"007\",\"tls\":true}\n"
        );
        let control = json_line("t", log::Level::Info, "\u{1}");
        assert!(control.contains("\"msg\":\"\\u0001\""), "{control}");
        let typed = json_line("t", log::Level::Info, "x fqdn=12 scrape_id=3");
        assert!(
            typed.contains("\"fqdn\":\"12\",\"scrape_id\":\"3\""),
            "{typed}"
        );
    }

    #[test]
    fn only_the_named_crates_are_logged() {
        let logger = StderrLogger {
            crates: &["pushprox_client", "pushprox_daemon"],
            format: Format::Logfmt,
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
