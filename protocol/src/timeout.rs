//! The scrape deadline header, and durations written the way Prometheus and Go flags write them.

use std::time::Duration;

use crate::error::{quoted, ProtocolError};

/// The header in which Prometheus sends the scrape timeout, in decimal seconds.
pub const SCRAPE_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";

/// The informational header the Go client adds to a push: the seconds the scrape had left.
pub const PUSH_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout";

/// Parses `X-Prometheus-Scrape-Timeout-Seconds`: a positive, finite decimal number of seconds.
pub fn parse_scrape_timeout(value: &str) -> Result<Duration, ProtocolError> {
    let bad = || ProtocolError::InvalidScrapeTimeout(quoted(value.as_bytes()));
    let secs: f64 = value.trim_matches([' ', '\t']).parse().map_err(|_| bad())?;
    // Refused: not a number of seconds (NaN, infinite, negative), over 1e9 s, under 1 ms.
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| secs <= 1e9 && *d >= Duration::from_millis(1))
        .ok_or_else(bad)
}

/// Formats a deadline for `X-Prometheus-Scrape-Timeout-Seconds` the way Prometheus does:
/// `10`, `0.5`, `2.25` (at most millisecond precision, no trailing zeros).
pub fn format_scrape_timeout(d: Duration) -> String {
    let millis = d.as_millis().max(1);
    let (secs, frac) = (millis / 1000, millis % 1000);
    if frac == 0 {
        return secs.to_string();
    }
    let frac = format!("{frac:03}");
    format!("{secs}.{}", frac.trim_end_matches('0'))
}

/// Parses a duration in Prometheus style (`500ms`, `15s`, `5m`, `1h`, `1d`, `1w`, `1y`,
/// compounds such as `1m30s`) and also Go's style (`1.5s`, `250us`), so flags copied from a
/// Go unit file keep working. A bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, ProtocolError> {
    let bad = || ProtocolError::InvalidDuration(quoted(text.as_bytes()));
    let s = text.trim_matches([' ', '\t']);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)
            .ok_or_else(bad)?;
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "y" => 31_536_000.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration in Prometheus style: `1h30m`, `15s`, `500ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_timeouts() {
        assert_eq!(parse_scrape_timeout("10").unwrap(), Duration::from_secs(10));
        assert_eq!(
            parse_scrape_timeout(" 0.5 ").unwrap(),
            Duration::from_millis(500)
        );
        for bad in ["", "0", "-1", "ten", "NaN", "inf", "1e30"] {
            assert!(parse_scrape_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(format_scrape_timeout(Duration::from_secs(10)), "10");
        assert_eq!(format_scrape_timeout(Duration::from_millis(500)), "0.5");
        assert_eq!(format_scrape_timeout(Duration::from_millis(2250)), "2.25");
        assert_eq!(format_scrape_timeout(Duration::from_micros(10)), "0.001");
    }

    #[test]
    fn durations() {
        let ok = [
            ("500ms", 500),
            ("15s", 15_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("1.5s", 1500),
            ("2d", 172_800_000),
            ("0", 0),
            ("250us", 0),
        ];
        for (text, ms) in ok {
            assert_eq!(parse_duration(text).unwrap().as_millis(), ms, "{text}");
        }
        for bad in ["", "5", "s", "5x", "-1s", "1..5s", "m5"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.to_string().contains("15s"), "{err}");
        }
        assert_eq!(
            format_duration(Duration::from_millis(5_400_500)),
            "1h30m500ms"
        );
        assert_eq!(format_duration(Duration::from_secs(15)), "15s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
