//! What a client of ours announces with each poll for service discovery: its labels
//! (`X-PushProx-Labels`) and the ports of its exporters with their own labels
//! (`X-PushProx-Targets`), the limits an announcement must keep, and the target groups
//! `/clients` makes of them. A Go client announces nothing and is listed as its FQDN with no
//! labels, as the Go proxy lists it.
//!
//! An announcement is kept once per client, behind an `Arc`: the target groups are written
//! straight from it, a target's labels merged over the client's as they are written, so
//! neither a registry snapshot nor `/clients` copies any label.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::RegistrationLimits;
use crate::metrics::PollRefused;

/// Labels by name.
pub type Labels = BTreeMap<String, String>;

/// One announced exporter: its port and its own labels.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnouncedTarget {
    pub port: u16,
    #[serde(default)]
    pub labels: Labels,
}

/// What one poll announced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announcement {
    pub labels: Labels,
    pub targets: Vec<AnnouncedTarget>,
}

/// Why an announcement was refused: the header, the rule (the metric's reason) and the
/// words for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceError {
    header: &'static str,
    pub rule: PollRefused,
    reason: String,
}

impl fmt::Display for AnnounceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} refused, {}", self.header, self.reason)
    }
}

impl std::error::Error for AnnounceError {}

impl Announcement {
    /// Reads the two headers' values (absent: nothing announced) of a client polling as
    /// `fqdn`, and checks them against `limits`.
    pub fn parse(
        labels: Option<&str>,
        targets: Option<&str>,
        fqdn: &str,
        limits: &RegistrationLimits,
    ) -> Result<Self, AnnounceError> {
        use pushprox_protocol::{LABELS_HEADER, TARGETS_HEADER};
        let bad = |header, rule, reason: String| AnnounceError {
            header,
            rule,
            reason,
        };
        let invalid = |header, reason| bad(header, PollRefused::Invalid, reason);
        let labels: Labels = json(labels).map_err(|e| {
            invalid(
                LABELS_HEADER,
                format!("it is not a JSON object of strings ({e})"),
            )
        })?;
        check(&labels, limits).map_err(|(rule, r)| bad(LABELS_HEADER, rule, r))?;
        let targets: Vec<AnnouncedTarget> = json(targets).map_err(|e| {
            let expected = "a JSON array of {\"port\":N,\"labels\":{...}}";
            invalid(TARGETS_HEADER, format!("it is not {expected} ({e})"))
        })?;
        if targets.len() > limits.max_targets {
            return Err(bad(
                TARGETS_HEADER,
                PollRefused::Targets,
                format!(
                    "over --registration.max-targets={}: {} targets; announce fewer --sd.target ports, or raise the flag on the proxy",
                    limits.max_targets,
                    targets.len()
                ),
            ));
        }
        for t in &targets {
            if t.port == 0 {
                return Err(invalid(TARGETS_HEADER, "it announces port 0".into()));
            }
            check(&t.labels, limits).map_err(|(rule, r)| bad(TARGETS_HEADER, rule, r))?;
        }
        let count = labels.len() + targets.iter().map(|t| t.labels.len()).sum::<usize>();
        if count > limits.max_labels {
            return Err(bad(
                TARGETS_HEADER,
                PollRefused::Labels,
                format!(
                    "over --registration.max-labels={}: {count} labels in all, the client's and its targets' own; announce fewer, or raise the flag on the proxy",
                    limits.max_labels
                ),
            ));
        }
        let announced = Announcement { labels, targets };
        let mut size = ByteCount(0);
        // Writing to a counter cannot fail.
        let _ = write_groups(&mut size, fqdn, &announced);
        if size.0 > limits.max_label_bytes {
            let header = if announced.targets.is_empty() {
                LABELS_HEADER
            } else {
                TARGETS_HEADER
            };
            return Err(bad(
                header,
                PollRefused::Bytes,
                format!(
                    "over --registration.max-label-bytes={}: the client's target groups in /clients would take {} bytes (its labels repeat in each target's group); announce fewer or shorter labels, or raise the flag on the proxy",
                    limits.max_label_bytes, size.0
                ),
            ));
        }
        Ok(announced)
    }
}

/// The JSON value of an announcement header; absent: nothing announced.
fn json<T: DeserializeOwned + Default>(value: Option<&str>) -> serde_json::Result<T> {
    value.map_or_else(|| Ok(T::default()), serde_json::from_str)
}

/// Label names as Prometheus takes them, not reserved (`__`), within the count and lengths.
fn check(labels: &Labels, limits: &RegistrationLimits) -> Result<(), (PollRefused, String)> {
    if labels.len() > limits.max_labels {
        return Err((
            PollRefused::Labels,
            format!(
                "over --registration.max-labels={}: {} labels in one set; announce fewer, or raise the flag on the proxy",
                limits.max_labels,
                labels.len()
            ),
        ));
    }
    for (name, value) in labels {
        let shown: String = name.chars().take(60).flat_map(char::escape_debug).collect();
        if name.len() > limits.max_label_name_length {
            return Err((
                PollRefused::NameLength,
                format!(
                    "over --registration.max-label-name-length={}: label name \"{shown}...\" is {} bytes long",
                    limits.max_label_name_length,
                    name.len()
                ),
            ));
        }
        if pushprox_protocol::check_label_name(name).is_err() {
            return Err((
                PollRefused::Invalid,
                format!(
                    "label name \"{shown}\" is not [a-zA-Z_][a-zA-Z0-9_]* without a leading __"
                ),
            ));
        }
        if value.len() > limits.max_label_value_length {
            return Err((
                PollRefused::ValueLength,
                format!(
                    "over --registration.max-label-value-length={}: the value of label \"{shown}\" is {} bytes long",
                    limits.max_label_value_length,
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Counts the bytes written to it.
struct ByteCount(u64);

impl Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the Prometheus file_sd / http_sd target groups of one client, comma-separated:
/// its FQDN with its labels when it announces no target, else `fqdn:port` for each announced
/// target, the target's labels over the client's.
pub fn write_groups(out: &mut dyn Write, fqdn: &str, announced: &Announcement) -> io::Result<()> {
    if announced.targets.is_empty() {
        return write_group(out, fqdn, None, merged(&announced.labels, &Labels::new()));
    }
    for (i, t) in announced.targets.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write_group(
            out,
            fqdn,
            Some(t.port),
            merged(&announced.labels, &t.labels),
        )?;
    }
    Ok(())
}

fn write_group<'a>(
    out: &mut dyn Write,
    fqdn: &str,
    port: Option<u16>,
    labels: impl Iterator<Item = (&'a String, &'a String)>,
) -> io::Result<()> {
    out.write_all(b"{\"targets\":[")?;
    match port {
        Some(port) => serde_json::to_writer(&mut *out, &format!("{fqdn}:{port}"))?,
        None => serde_json::to_writer(&mut *out, fqdn)?,
    }
    out.write_all(b"],\"labels\":{")?;
    for (i, (name, value)) in labels.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, name)?;
        out.write_all(b":")?;
        serde_json::to_writer(&mut *out, value)?;
    }
    out.write_all(b"}}")
}

/// `base` and `over` in name order, `over`'s value where both have a name.
fn merged<'a>(
    base: &'a Labels,
    over: &'a Labels,
) -> impl Iterator<Item = (&'a String, &'a String)> {
    let mut a = base.iter().peekable();
    let mut b = over.iter().peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some((an, _)), Some((bn, _))) => match an.cmp(bn) {
            Ordering::Less => a.next(),
            Ordering::Greater => b.next(),
            Ordering::Equal => {
                a.next();
                b.next()
            }
        },
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RegistrationLimits = RegistrationLimits {
        max_clients: 100,
        max_labels: 64,
        max_label_name_length: 128,
        max_label_value_length: 1024,
        max_label_bytes: 16 * 1024,
        max_targets: 64,
    };

    fn groups(fqdn: &str, a: &Announcement) -> String {
        let mut out = Vec::new();
        write_groups(&mut out, fqdn, a).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn parse(labels: Option<&str>, targets: Option<&str>) -> Result<Announcement, AnnounceError> {
        Announcement::parse(labels, targets, "h.example", &LIMITS)
    }

    #[test]
    fn labels_and_targets_become_target_groups() {
        let a = parse(
            Some(r#"{"env":"prod","site":"Z\u00fcrich","job":"x"}"#),
            Some(r#"[{"port":9100,"labels":{"job":"node"}},{"port":9256,"labels":{"job":"process","a":"1"}}]"#),
        )
        .unwrap();
        assert_eq!(
            groups("h.example", &a),
            r#"{"targets":["h.example:9100"],"labels":{"env":"prod","job":"node","site":"Zürich"}},{"targets":["h.example:9256"],"labels":{"a":"1","env":"prod","job":"process","site":"Zürich"}}"#
        );
        let plain = parse(Some(r#"{"env":"prod","q":"a\"\n"}"#), None).unwrap();
        assert_eq!(
            groups("h.example", &plain),
            r#"{"targets":["h.example"],"labels":{"env":"prod","q":"a\"\n"}}"#
        );
        let go = parse(None, None).unwrap();
        assert_eq!(
            groups("h.example", &go),
            r#"{"targets":["h.example"],"labels":{}}"#
        );
    }

    #[test]
    fn bad_announcements_are_refused_with_the_rule() {
        for (labels, targets, why, rule) in [
            (
                Some(r#"{"__name__":"x"}"#),
                None,
                "leading __",
                PollRefused::Invalid,
            ),
            (
                Some(r#"{"1a":"x"}"#),
                None,
                "[a-zA-Z_]",
                PollRefused::Invalid,
            ),
            (
                Some(r#"{"a-b":"x"}"#),
                None,
                "[a-zA-Z_]",
                PollRefused::Invalid,
            ),
            (
                Some(r#"{"a":1}"#),
                None,
                "JSON object of strings",
                PollRefused::Invalid,
            ),
            (Some("not json"), None, "JSON object", PollRefused::Invalid),
            (
                None,
                Some(r#"[{"port":0}]"#),
                "port 0",
                PollRefused::Invalid,
            ),
            (
                None,
                Some(r#"[{"port":70000}]"#),
                "JSON array",
                PollRefused::Invalid,
            ),
            (
                None,
                Some(r#"[{"port":1,"extra":2}]"#),
                "JSON array",
                PollRefused::Invalid,
            ),
            (
                None,
                Some(r#"[{"port":1,"labels":{"__x":"y"}}]"#),
                "leading __",
                PollRefused::Invalid,
            ),
        ] {
            let e = parse(labels, targets).unwrap_err();
            assert!(e.to_string().contains(why), "{labels:?} {targets:?}: {e}");
            assert_eq!(e.rule, rule, "{e}");
        }
    }

    #[test]
    fn each_limit_is_named_in_its_refusal() {
        let many = |n: usize| {
            let pairs: Vec<String> = (0..n).map(|i| format!("\"l{i}\":\"v\"")).collect();
            format!("{{{}}}", pairs.join(","))
        };
        let e = parse(Some(&many(65)), None).unwrap_err();
        assert_eq!(e.rule, PollRefused::Labels);
        assert!(
            e.to_string().contains("--registration.max-labels=64"),
            "{e}"
        );
        // 40 of the client's and 40 of a target's: each set is under, together over.
        let t = format!(r#"[{{"port":1,"labels":{}}}]"#, many(40));
        let e = parse(Some(&many(40)), Some(&t)).unwrap_err();
        assert_eq!(e.rule, PollRefused::Labels);
        assert!(e.to_string().contains("80 labels in all"), "{e}");
        // The flag comes first: a client quotes the first 80 bytes of a refusal in its log.
        assert!(
            e.to_string()
                .starts_with("X-PushProx-Targets refused, over --registration.max-labels=64:"),
            "{e}"
        );

        let long_name = format!(r#"{{"{}":"v"}}"#, "n".repeat(129));
        let e = parse(Some(&long_name), None).unwrap_err();
        assert_eq!(e.rule, PollRefused::NameLength);
        assert!(
            e.to_string()
                .contains("--registration.max-label-name-length=128"),
            "{e}"
        );
        let long_value = format!(r#"{{"n":"{}"}}"#, "v".repeat(1025));
        let e = parse(Some(&long_value), None).unwrap_err();
        assert_eq!(e.rule, PollRefused::ValueLength);
        assert!(
            e.to_string()
                .contains("--registration.max-label-value-length=1024"),
            "{e}"
        );
        let ports: Vec<String> = (1..=65).map(|p| format!("{{\"port\":{p}}}")).collect();
        let e = parse(None, Some(&format!("[{}]", ports.join(",")))).unwrap_err();
        assert_eq!(e.rule, PollRefused::Targets);
        assert!(
            e.to_string().contains("--registration.max-targets=64"),
            "{e}"
        );
        // 15 values of 1000 bytes fit in one group, but repeated in 2 targets' groups they do
        // not.
        let big: Vec<String> = (0..15)
            .map(|i| format!("\"l{i}\":\"{}\"", "v".repeat(1000)))
            .collect();
        let big = format!("{{{}}}", big.join(","));
        assert!(parse(Some(&big), Some(r#"[{"port":1}]"#)).is_ok());
        let e = parse(Some(&big), Some(r#"[{"port":1},{"port":2}]"#)).unwrap_err();
        assert_eq!(e.rule, PollRefused::Bytes);
        assert!(
            e.to_string()
                .contains("--registration.max-label-bytes=16384"),
            "{e}"
        );
    }

    #[test]
    fn the_byte_limit_is_what_clients_writes() {
        let a = parse(
            Some(r#"{"env":"prod"}"#),
            Some(r#"[{"port":9100,"labels":{"job":"node"}},{"port":9256}]"#),
        )
        .unwrap();
        let size = groups("h.example", &a).len();
        let exact = RegistrationLimits {
            max_label_bytes: size as u64,
            ..LIMITS
        };
        let labels = Some(r#"{"env":"prod"}"#);
        let targets = Some(r#"[{"port":9100,"labels":{"job":"node"}},{"port":9256}]"#);
        assert!(Announcement::parse(labels, targets, "h.example", &exact).is_ok());
        let under = RegistrationLimits {
            max_label_bytes: size as u64 - 1,
            ..LIMITS
        };
        let e = Announcement::parse(labels, targets, "h.example", &under).unwrap_err();
        assert_eq!(e.rule, PollRefused::Bytes);
    }
}
