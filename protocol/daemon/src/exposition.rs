//! The Prometheus text exposition format (0.0.4): the lines both daemons write for their own
//! metrics.

use std::fmt::Write as _;

/// `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A series without labels: its `# HELP`, `# TYPE` and value lines.
pub fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Milliseconds as seconds with three decimals (`1712.005`), without float formatting.
pub fn millis_as_seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_series_lines() {
        let mut out = String::new();
        single(&mut out, "a_total", "counter", "As.", 3);
        single(&mut out, "b", "gauge", "Bs.", millis_as_seconds(1_005));
        assert_eq!(
            out,
            "# HELP a_total As.\n# TYPE a_total counter\na_total 3\n\
             # HELP b Bs.\n# TYPE b gauge\nb 1.005\n"
        );
    }
}
