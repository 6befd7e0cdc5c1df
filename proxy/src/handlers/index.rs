//! `GET /`: a small self-contained status page for people.

use std::fmt::Write as _;
use std::time::Instant;

use tiny_http::Request;

use crate::server::State;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the page: the live clients with their last poll age and scrape count.
pub fn render(state: &State) -> String {
    let clients = state.registry.live(|key| state.rendezvous.has_poll(key));
    let now = Instant::now();
    let mut rows = String::new();
    for c in &clients {
        let age = now.duration_since(c.last_seen).as_secs_f64();
        let polling = if c.polling { "polling" } else { "idle" };
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{age:.1} s ago</td><td>{polling}</td><td>{}</td></tr>",
            escape(&c.fqdn),
            c.scrapes
        );
    }
    if clients.is_empty() {
        rows.push_str("<tr><td colspan=\"4\">No client has polled yet. Start one with <code>pushprox-client --proxy-url http://THIS-HOST:PORT/</code>.</td></tr>\n");
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PushProx proxy</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .3em 1em; border-bottom: 1px solid #ddd; text-align: left; }}
th {{ background: #f4f4f4; }} code {{ background: #f4f4f4; padding: 0 .2em; }}
</style></head>
<body>
<h1>PushProx proxy</h1>
<p>pushprox-rs {version} &middot; up {uptime:.0} s &middot; {count} client(s) &middot; {polls} poll(s) waiting &middot; {scrapes} scrape(s) in flight</p>
<table>
<tr><th>Client (FQDN)</th><th>Last poll</th><th>State</th><th>Scrapes</th></tr>
{rows}</table>
<p><a href="/clients">/clients</a> (service discovery for Prometheus) &middot; <a href="/metrics">/metrics</a> (this proxy's metrics)</p>
</body></html>
"#,
        version = env!("CARGO_PKG_VERSION"),
        uptime = state.started.elapsed().as_secs_f64(),
        count = clients.len(),
        polls = state.rendezvous.polls_waiting(),
        scrapes = state.rendezvous.scrapes_waiting(),
    )
}

/// Serves the page.
pub fn handle(state: &State, request: Request) -> u16 {
    super::body(request, 200, "text/html; charset=utf-8", render(state))
}
