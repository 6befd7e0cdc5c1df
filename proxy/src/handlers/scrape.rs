//! A scrape in absolute form (`GET http://fqdn:port/path`): handed to a poll of that FQDN,
//! answered with what the client pushes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pushprox_protocol::{
    format_duration, format_scrape_timeout, parse_scrape_timeout, Framing, Headers, ResponseHead,
    ScrapeRequest, Target, HOP_BY_HOP, ID_HEADER, SCRAPE_TIMEOUT_HEADER,
};
use tiny_http::{Request, Response, StatusCode};

use crate::handlers::push::{Delivery, PushBody};
use crate::metrics::ScrapeOutcome;
use crate::rendezvous::{ScrapeError, Taken};
use crate::server::State;

/// Request headers that belong to the hop between scraper and proxy, not to the target.
const NOT_FORWARDED: &[&str] = &["Proxy-Authorization", ID_HEADER];

/// Relays one scrape; returns the status the scraper got (for the scrape thread's log).
pub fn handle(state: &Arc<State>, request: Request) -> u16 {
    let started = Instant::now();
    let url = request.url().to_string();
    let bad = |request: Request, reason: String| {
        log::warn!("refused scrape url={url}: {reason}");
        state
            .metrics
            .scrape(ScrapeOutcome::BadRequest, 400, started.elapsed());
        super::text(request, 400, &reason)
    };
    let target = match Target::parse(&url) {
        Ok(t) => t,
        Err(e) => return bad(request, e.to_string()),
    };
    let mut headers = Headers::new();
    for h in request.headers() {
        let name = h.field.as_str().as_str();
        let skip = NOT_FORWARDED
            .iter()
            .chain(HOP_BY_HOP)
            .any(|n| n.eq_ignore_ascii_case(name));
        if !skip {
            headers.append(name, h.value.as_str());
        }
    }
    let requested = match headers.get(SCRAPE_TIMEOUT_HEADER).map(parse_scrape_timeout) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return bad(request, e.to_string()),
    };
    let deadline_in = state.config.effective_deadline(requested);
    headers.set(SCRAPE_TIMEOUT_HEADER, format_scrape_timeout(deadline_in));
    let id = pushprox_daemon::ids::scrape_id();
    headers.set(ID_HEADER, id.clone());
    let scrape = ScrapeRequest {
        method: request.method().as_str().to_string(),
        url: url.clone(),
        headers,
    };
    let fqdn = target.host.clone();
    log::debug!(
        "scrape waiting for a poll fqdn={fqdn} scrape_id={id} url={url} deadline={}",
        format_duration(deadline_in)
    );
    let request_bytes = scrape.to_proxy_bytes();
    let deadline = started + deadline_in;
    let key = fqdn.to_ascii_lowercase();
    let wait = state.rendezvous.expect_push(&id, &key, deadline);
    let handed = loop {
        match state.rendezvous.take_poll(&key, deadline) {
            Taken::Poll(poll) => match poll.hand_over(&request_bytes) {
                Ok(()) => break Ok(()),
                // Only a write that fails is seen; the next poll of the client gets it.
                Err(e) => log::warn!(
                    "hand-over to poll failed fqdn={fqdn} scrape_id={id}: {e}; offering the scrape to the next poll"
                ),
            },
            Taken::NoPoll { stale } => {
                if let Some(poll) = stale {
                    poll.superseded();
                }
                break Err(ScrapeError::NoPoll);
            }
            Taken::ShuttingDown => break Err(ScrapeError::ShuttingDown),
        }
    };
    let pushed = match handed {
        Ok(()) => {
            log::debug!("scrape handed to poll fqdn={fqdn} scrape_id={id}");
            state.rendezvous.wait_push(wait)
        }
        Err(e) => {
            state.rendezvous.abandon(wait);
            Err(e)
        }
    };
    match pushed {
        Ok(Delivery::Pushed { head, body }) => relay(request, head, body, started),
        Ok(Delivery::Refused { reason }) => {
            log::warn!("scrape failed fqdn={fqdn} scrape_id={id}: {reason}");
            state
                .metrics
                .scrape(ScrapeOutcome::RelayFailed, 502, started.elapsed());
            super::text(request, 502, &reason)
        }
        Err(err) => {
            let (outcome, status, reason) = explain(state, err, &fqdn, &url, &id, deadline_in);
            log::warn!("scrape failed fqdn={fqdn} scrape_id={id}: {reason}");
            state.metrics.scrape(outcome, status, started.elapsed());
            super::text(request, status, &reason)
        }
    }
}

/// The status and one-line reason of a scrape that got no push.
fn explain(
    state: &State,
    err: ScrapeError,
    fqdn: &str,
    url: &str,
    id: &str,
    deadline: Duration,
) -> (ScrapeOutcome, u16, String) {
    let within = format_duration(deadline);
    match err {
        ScrapeError::NoPoll if state.registry.is_known(fqdn, state.rendezvous.has_poll(fqdn)) => (
            ScrapeOutcome::NoPoll,
            504,
            format!("Error scraping \"{url}\": client {fqdn} is registered but no poll of it arrived within {within} (it may be reconnecting or too busy)"),
        ),
        ScrapeError::NoPoll => (
            ScrapeOutcome::NoPoll,
            504,
            format!("Error scraping \"{url}\": no client polled for {fqdn} within {within}; is pushprox-client running there with --fqdn={fqdn} and --proxy-url pointing at this proxy?"),
        ),
        ScrapeError::NoPush => (
            ScrapeOutcome::NoPush,
            504,
            format!("Error scraping \"{url}\": client {fqdn} took the scrape but sent no answer within {within}; look for scrape_id={id} in its log"),
        ),
        ScrapeError::ShuttingDown => (ScrapeOutcome::ShuttingDown, 503, "the proxy is shutting down".into()),
    }
}

fn relay(request: Request, head: ResponseHead, mut body: PushBody, started: Instant) -> u16 {
    body.scrape_started = Some(started);
    let status = body.status();
    let length = match head.framing() {
        Ok(Framing::Length(n)) => usize::try_from(n).ok(),
        _ => None,
    };
    let headers = head
        .end_to_end_headers()
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case(ID_HEADER) && !n.eq_ignore_ascii_case(SCRAPE_TIMEOUT_HEADER)
        })
        .filter_map(|(n, v)| super::header(n, v))
        .collect();
    let response = Response::new(StatusCode(status), headers, body, length, None)
        .with_chunked_threshold(usize::MAX);
    // A failure here means the scraper hung up; the push body reports it when dropped.
    let _ = request.respond(response);
    status
}
