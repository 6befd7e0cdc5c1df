//! `GET /metrics`: the proxy's own metrics.

use std::sync::atomic::Ordering;

use crate::http::{After, Connection};
use crate::metrics::Gauges;
use crate::state::State;

/// Renders the exposition with the current gauges.
pub fn handle(state: &State, open_connections: usize, conn: Connection) -> After {
    let counts = &state.auth.passwords().counts;
    let gauges = Gauges {
        clients: state
            .registry
            .live(|key| state.rendezvous.has_poll(key))
            .len(),
        polls_waiting: state.rendezvous.polls_waiting(),
        scrapes_waiting: state.rendezvous.scrapes_waiting(),
        open_connections,
        password_checks: counts.checks.load(Ordering::Relaxed),
        password_cache_hits: counts.cache_hits.load(Ordering::Relaxed),
    };
    let text = state.metrics.render(&gauges);
    super::body(
        conn,
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        text.as_bytes(),
    )
}
