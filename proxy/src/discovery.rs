//! What a client of ours announces with each poll for service discovery: its labels
//! (`X-PushProx-Labels`) and the ports of its exporters with their own labels
//! (`X-PushProx-Targets`), and the target groups `/clients` makes of them. A Go client
//! announces nothing and is listed as its FQDN with no labels, as the Go proxy lists it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Most labels, and most announced targets, one client may carry.
const MAX_ITEMS: usize = 64;
/// Longest label name or value, in bytes.
const MAX_TEXT: usize = 1024;

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

/// Why an announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceError {
    header: &'static str,
    reason: String,
}

impl fmt::Display for AnnounceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the poll's {} header is refused: {}",
            self.header, self.reason
        )
    }
}

impl std::error::Error for AnnounceError {}

impl Announcement {
    /// Reads the two headers' values (absent: nothing announced).
    pub fn parse(labels: Option<&str>, targets: Option<&str>) -> Result<Self, AnnounceError> {
        use pushprox_protocol::{LABELS_HEADER, TARGETS_HEADER};
        let bad = |header, reason: String| AnnounceError { header, reason };
        let labels: Labels = match labels {
            None => Labels::new(),
            Some(v) => serde_json::from_str(v)
                .map_err(|e| bad(LABELS_HEADER, format!("not a JSON object of strings ({e})")))?,
        };
        check(&labels).map_err(|r| bad(LABELS_HEADER, r))?;
        let targets: Vec<AnnouncedTarget> = match targets {
            None => Vec::new(),
            Some(v) => serde_json::from_str(v).map_err(|e| {
                bad(
                    TARGETS_HEADER,
                    format!("not a JSON array of {{\"port\":N,\"labels\":{{...}}}} ({e})"),
                )
            })?,
        };
        if targets.len() > MAX_ITEMS {
            return Err(bad(
                TARGETS_HEADER,
                format!("more than {MAX_ITEMS} targets"),
            ));
        }
        for t in &targets {
            if t.port == 0 {
                return Err(bad(TARGETS_HEADER, "port 0".into()));
            }
            check(&t.labels).map_err(|r| bad(TARGETS_HEADER, r))?;
        }
        Ok(Announcement { labels, targets })
    }
}

/// Label names as Prometheus takes them, not reserved (`__`), bounded in count and size.
fn check(labels: &Labels) -> Result<(), String> {
    if labels.len() > MAX_ITEMS {
        return Err(format!("more than {MAX_ITEMS} labels"));
    }
    for (name, value) in labels {
        let mut bytes = name.bytes();
        let valid = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid || name.starts_with("__") || name.len() > MAX_TEXT || value.len() > MAX_TEXT {
            let shown: String = name.chars().take(60).flat_map(char::escape_debug).collect();
            return Err(format!(
                "label name \"{shown}\" is not [a-zA-Z_][a-zA-Z0-9_]* without a leading __ (or it or its value is over {MAX_TEXT} bytes)"
            ));
        }
    }
    Ok(())
}

/// A Prometheus file_sd / http_sd target group.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct TargetGroup {
    pub targets: [String; 1],
    pub labels: Labels,
}

/// The target groups of one client: its FQDN with its labels when it announces no target,
/// else `fqdn:port` for each announced target, the target's labels over the client's.
pub fn target_groups(fqdn: &str, announced: &Announcement) -> Vec<TargetGroup> {
    if announced.targets.is_empty() {
        return vec![TargetGroup {
            targets: [fqdn.to_string()],
            labels: announced.labels.clone(),
        }];
    }
    announced
        .targets
        .iter()
        .map(|t| {
            let mut labels = announced.labels.clone();
            labels.extend(t.labels.iter().map(|(n, v)| (n.clone(), v.clone())));
            TargetGroup {
                targets: [format!("{fqdn}:{}", t.port)],
                labels,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_targets_become_target_groups() {
        let a = Announcement::parse(
            Some(r#"{"env":"prod","site":"Z\u00fcrich","job":"x"}"#),
            Some(r#"[{"port":9100,"labels":{"job":"node"}},{"port":9256,"labels":{"job":"process"}}]"#),
        )
        .unwrap();
        let json = serde_json::to_string(&target_groups("h.example", &a)).unwrap();
        assert_eq!(
            json,
            r#"[{"targets":["h.example:9100"],"labels":{"env":"prod","job":"node","site":"Zürich"}},{"targets":["h.example:9256"],"labels":{"env":"prod","job":"process","site":"Zürich"}}]"#
        );
        let plain = Announcement::parse(Some(r#"{"env":"prod"}"#), None).unwrap();
        assert_eq!(
            serde_json::to_string(&target_groups("h.example", &plain)).unwrap(),
            r#"[{"targets":["h.example"],"labels":{"env":"prod"}}]"#
        );
        let go = Announcement::parse(None, None).unwrap();
        assert_eq!(
            serde_json::to_string(&target_groups("h.example", &go)).unwrap(),
            r#"[{"targets":["h.example"],"labels":{}}]"#
        );
    }

    #[test]
    fn bad_announcements_are_refused_with_the_rule() {
        for (labels, targets, why) in [
            (Some(r#"{"__name__":"x"}"#), None, "leading __"),
            (Some(r#"{"1a":"x"}"#), None, "[a-zA-Z_]"),
            (Some(r#"{"a-b":"x"}"#), None, "[a-zA-Z_]"),
            (Some(r#"{"a":1}"#), None, "JSON object of strings"),
            (Some("not json"), None, "JSON object"),
            (None, Some(r#"[{"port":0}]"#), "port 0"),
            (None, Some(r#"[{"port":70000}]"#), "JSON array"),
            (None, Some(r#"[{"port":1,"extra":2}]"#), "JSON array"),
            (
                None,
                Some(r#"[{"port":1,"labels":{"__x":"y"}}]"#),
                "leading __",
            ),
        ] {
            let e = Announcement::parse(labels, targets)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{labels:?} {targets:?}: {e}");
        }
        let many: String = (0..65)
            .map(|i| format!("\"l{i}\":\"v\""))
            .collect::<Vec<_>>()
            .join(",");
        let e = Announcement::parse(Some(&format!("{{{many}}}")), None).unwrap_err();
        assert!(e.to_string().contains("more than 64 labels"), "{e}");
    }
}
