//! `GET /metrics`: the proxy's own metrics.

use tiny_http::Request;

use crate::metrics::Gauges;
use crate::server::State;

/// Renders the exposition with the current gauges.
pub fn handle(state: &State, request: Request) -> u16 {
    let gauges = Gauges {
        clients: state
            .registry
            .live(|key| state.rendezvous.has_poll(key))
            .len(),
        polls_waiting: state.rendezvous.polls_waiting(),
        scrapes_waiting: state.rendezvous.scrapes_waiting(),
    };
    let text = state.metrics.render(&gauges);
    super::body(
        request,
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        text,
    )
}
