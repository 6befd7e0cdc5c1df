//! `GET /metrics`: the proxy's own metrics.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::http::{After, Connection};
use crate::metrics::Gauges;
use crate::state::State;

/// A client whose poll ended this recently (for a scrape, or a 408) still counts as polling:
/// it is about to poll again.
const BETWEEN_POLLS: Duration = Duration::from_secs(10);

/// Renders the exposition with the current gauges.
pub fn handle(state: &State, open_connections: usize, conn: Connection) -> After {
    let counts = &state.auth.passwords().counts;
    let live = state.rendezvous.clients();
    let gauges = Gauges {
        clients: live.len(),
        clients_polling: live
            .iter()
            .filter(|c| c.polling || c.last_seen.elapsed() < BETWEEN_POLLS)
            .count(),
        polls_waiting: state.rendezvous.polls_waiting(),
        scrapes_waiting: state.rendezvous.scrapes_waiting(),
        open_connections,
        password_checks: counts.checks.load(Ordering::Relaxed),
        password_cache_hits: counts.cache_hits.load(Ordering::Relaxed),
    };
    let text = state.metrics.render(&gauges);
    let content_type = ("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    conn.respond(200, &[content_type], text.as_bytes())
}
