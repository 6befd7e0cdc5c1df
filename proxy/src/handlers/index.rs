//! `GET /`: a small self-contained status page for people.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::http::{After, Connection};

use crate::state::State;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `3d 4h`, `5m 2s`, `12s`: the two largest units.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, _) => format!("{mins}m {secs}s"),
        (0, _, _) => format!("{hours}h {mins}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// Most clients the page lists: it is built whole, and each row may carry up to
/// --registration.max-label-bytes of labels; /clients, written as a stream, lists them all.
const MAX_ROWS: usize = 200;

/// Renders the page: the live clients with their last poll age and scrape count.
pub fn render(state: &State) -> String {
    let clients = state.rendezvous.clients();
    let now = Instant::now();
    let mut rows = String::new();
    for c in clients.iter().take(MAX_ROWS) {
        // A client with a poll open is connected now; otherwise say when it was last seen.
        let seen = if c.polling {
            "now (poll open)".to_string()
        } else {
            format!("{} ago", human(now.duration_since(c.last_seen)))
        };
        // How a Prometheus target for this client is written: what users of the Go PushProx
        // most often get wrong.
        let fqdn = escape(&c.fqdn);
        let example = if c.announced.targets.is_empty() {
            format!("<code>{fqdn}:PORT</code>")
        } else {
            let ports = c.announced.targets.iter();
            let codes: Vec<String> = ports
                .map(|t| format!("<code>{fqdn}:{}</code>", t.port))
                .collect();
            codes.join(" ")
        };
        let labels = c
            .announced
            .labels
            .iter()
            .map(|(n, v)| format!("{}={}", escape(n), escape(v)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            rows,
            "<tr><td>{fqdn}</td><td>{example}</td><td>{labels}</td><td>{seen}</td><td>{}</td></tr>",
            c.scrapes
        );
    }
    if clients.len() > MAX_ROWS {
        let _ = writeln!(
            rows,
            "<tr><td colspan=\"5\">... and {} more: <a href=\"/clients\">/clients</a> lists every client.</td></tr>",
            clients.len() - MAX_ROWS
        );
    }
    if clients.is_empty() {
        rows.push_str("<tr><td colspan=\"5\">No client has polled yet. Start one with <code>pushprox-client --proxy-url http://THIS-HOST:PORT/</code>.</td></tr>\n");
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10"><title>PushProx proxy</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
body {{ max-width: 60em; }} table {{ border-collapse: collapse; }}
td, th {{ padding: .3em 1em; border-bottom: 1px solid #ddd; text-align: left; }}
td:last-child, th:last-child {{ text-align: right; font-variant-numeric: tabular-nums; }}
th {{ background: #f4f4f4; }} code {{ background: #f4f4f4; padding: 0 .2em; }}
</style></head>
<body>
<h1>PushProx proxy</h1>
<p>pushprox-rs {version} &middot; up {uptime} &middot; {count} client(s) &middot; {polls} poll(s) waiting &middot; {scrapes} scrape(s) in flight</p>
<table>
<tr><th>Client (FQDN)</th><th>Prometheus target</th><th>Labels</th><th>Last seen</th><th>Scrapes</th></tr>
{rows}</table>
<p><a href="/clients">/clients</a> (service discovery for Prometheus) &middot; <a href="/metrics">/metrics</a> (this proxy's metrics)</p>
</body></html>
"#,
        version = env!("CARGO_PKG_VERSION"),
        uptime = human(state.started.elapsed()),
        count = clients.len(),
        polls = state.rendezvous.polls_waiting(),
        scrapes = state.rendezvous.scrapes_waiting(),
    )
}

/// Serves the page.
pub fn handle(state: &State, conn: Connection) -> After {
    let content_type = ("Content-Type", "text/html; charset=utf-8");
    conn.respond(200, &[content_type], render(state).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::human;
    use std::time::Duration;

    #[test]
    fn ages_read_like_a_person_says_them() {
        assert_eq!(human(Duration::from_secs(12)), "12s");
        assert_eq!(human(Duration::from_secs(302)), "5m 2s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 60)), "3h 1m");
        assert_eq!(
            human(Duration::from_secs(3 * 86_400 + 4 * 3600 + 5)),
            "3d 4h"
        );
    }
}
