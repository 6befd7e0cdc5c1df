//! What our client announces about itself on its polls and pushes, in extension headers that a
//! Go proxy ignores: its FQDN, its labels and the targets (ports) it serves. The values are
//! JSON written in printable ASCII, so that they pass every HTTP stack unchanged.

use std::fmt::Write as _;

/// Ours, on every `/poll` and every `/push` of our client: its FQDN, as in the poll's body,
/// so that a load balancer can route all of one client's requests to the same proxy (a shard
/// key) without reading bodies.
pub const FQDN_HEADER: &str = "X-PushProx-FQDN";

/// Ours, on every `/poll` of a client started with `--label`: its labels, as a JSON object of
/// strings, such as `{"env":"prod","site":"berlin"}`, names in byte order. Every non-ASCII
/// and every control character is written as `\uXXXX` (UTF-16 surrogate pairs beyond the
/// BMP), `"` and `\` as `\"` and `\\`, so the value is printable ASCII. Absent when the
/// client has no labels. The newest poll's labels win.
pub const LABELS_HEADER: &str = "X-PushProx-Labels";

/// Ours, on every `/poll` of a client started with `--sd.target`: the ports it announces, in
/// the order given, each with its own labels only (the proxy merges the client's
/// [`LABELS_HEADER`] labels under them, a target's own winning), as a JSON array written as
/// [`LABELS_HEADER`] is: `[{"port":9100,"labels":{"job":"node"}},{"port":9256,"labels":{}}]`.
/// Absent when the client announces no target.
pub const TARGETS_HEADER: &str = "X-PushProx-Targets";

/// Why a name is not a label name a client may announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelNameError {
    /// It starts with `__`, which Prometheus reserves for its own labels.
    Reserved,
    /// It does not match `[a-zA-Z_][a-zA-Z0-9_]*`.
    Invalid,
}

/// Checks a label name a client announces: a Prometheus label name, `[a-zA-Z_][a-zA-Z0-9_]*`,
/// not one of the reserved `__` names.
pub fn check_label_name(name: &str) -> Result<(), LabelNameError> {
    if name.starts_with("__") {
        return Err(LabelNameError::Reserved);
    }
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(LabelNameError::Invalid);
    }
    Ok(())
}

/// `text` as a JSON string in printable ASCII (see [`LABELS_HEADER`]).
pub fn json_ascii_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// A label: name and value.
pub type Label = (String, String);

/// The JSON object of `labels`, in the order given.
pub fn json_labels(labels: &[Label]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_ascii_string(&mut out, name);
        out.push(':');
        json_ascii_string(&mut out, value);
    }
    out.push('}');
    out
}

/// The [`TARGETS_HEADER`] value of `targets` (port, its labels).
pub fn json_targets(targets: &[(u16, Vec<Label>)]) -> String {
    let targets: Vec<String> = targets
        .iter()
        .map(|(port, labels)| format!("{{\"port\":{port},\"labels\":{}}}", json_labels(labels)))
        .collect();
    format!("[{}]", targets.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_are_printable_ascii_json() {
        assert_eq!(
            json_labels(&labels(&[("env", "prod"), ("site", "berlin")])),
            r#"{"env":"prod","site":"berlin"}"#
        );
        assert_eq!(
            json_labels(&labels(&[
                ("city", "Zürich"),
                ("mood", "🦀"),
                ("q", "a\"b\\c\n\u{7f}")
            ])),
            r#"{"city":"Z\u00fcrich","mood":"\ud83e\udd80","q":"a\"b\\c\u000a\u007f"}"#
        );
        assert_eq!(json_labels(&[]), "{}");
    }

    #[test]
    fn targets_carry_their_own_labels_only() {
        let targets = [
            (9100, labels(&[("job", "node")])),
            (9256, labels(&[("job", "process")])),
        ];
        assert_eq!(
            json_targets(&targets),
            r#"[{"port":9100,"labels":{"job":"node"}},{"port":9256,"labels":{"job":"process"}}]"#
        );
        assert_eq!(
            json_targets(&[(9100, Vec::new())]),
            r#"[{"port":9100,"labels":{}}]"#
        );
    }
}
