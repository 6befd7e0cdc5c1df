//! A scrape in absolute form (`GET http://fqdn:port/path`): written onto a poll of that
//! FQDN, after which this thread goes on with the poll's connection (the client's next poll
//! comes on it) and the scrape waits for its push without a thread (see `delivery`); or, when
//! no poll comes, answered here.

use std::time::{Duration, Instant};

use pushprox_protocol::{
    format_duration, format_scrape_timeout, parse_scrape_timeout, Framing, Headers, ScrapeRequest,
    Target, HOP_BY_HOP, ID_HEADER, RETRY_HEADER, RETRY_NEXT, SCRAPE_TIMEOUT_HEADER,
};

// A scrape the proxy fails itself is answered as the pending scrapes' failures are.
use crate::delivery::{scrape_failed, InProgress, PendingScrape};
use crate::http::{After, Connection, Request};
use crate::metrics::{ScrapeOutcome, ScrapeRefused};
use crate::rendezvous::{ScrapeError, Taken};
use crate::state::State;

/// Request headers that belong to the hop between scraper and proxy, not to the target.
const NOT_FORWARDED: &[&str] = &["Proxy-Authorization", ID_HEADER];

/// The methods a scrape may use: anything else would reach the client's target (an exporter's
/// API, an admin endpoint) through the proxy.
const SCRAPE_METHODS: &[&str] = &["GET", "HEAD"];

/// Refuses a scrape whose method is not GET or HEAD with 405, counted.
fn refuse_method(state: &State, request: &Request, mut conn: Connection) -> After {
    let reason = format!(
        "{} is not allowed through the proxy: a scrape is GET or HEAD",
        request.method().escape_debug()
    );
    log::warn!(
        "refused scrape from={} url={}: {reason}",
        conn.peer(),
        crate::redact::shown(request.target())
    );
    state.metrics.scrape_refused(ScrapeRefused::Method);
    state.metrics.scrape(ScrapeOutcome::BadRequest);
    conn.set_reason(&pushprox_protocol::reason_with(405, &reason));
    conn.respond_text(405, &[("Allow", "GET, HEAD")], &reason)
}

/// Hands one scrape to a poll, or answers why not.
pub fn handle(state: &State, request: Request, conn: Connection) -> After {
    let in_progress = InProgress::start(&state.scrapes_in_progress);
    if !SCRAPE_METHODS.contains(&request.method()) {
        return refuse_method(state, &request, conn);
    }
    let started = conn.started();
    let url = request.target().to_string();
    let bad = |conn: Connection, reason: String| {
        log::warn!(
            "refused scrape url={}: {reason}",
            crate::redact::shown(&url)
        );
        state.metrics.scrape(ScrapeOutcome::BadRequest);
        scrape_failed(conn, 400, &reason, &reason)
    };
    if conn.body_framing() != Framing::Length(0) {
        return bad(conn, "a scrape request has no body".into());
    }
    let target = match Target::parse(&url) {
        Ok(t) => t,
        Err(e) => return bad(conn, e.to_string()),
    };
    // Room for what is forwarded and the two headers set below, in one allocation each.
    let mut headers = Headers::with_capacity(request.head.headers.len() + 2, 512);
    for (name, value) in request.head.headers.iter() {
        let skip = NOT_FORWARDED
            .iter()
            .chain(HOP_BY_HOP)
            .any(|n| n.eq_ignore_ascii_case(name));
        if !skip {
            headers.append(name, value);
        }
    }
    let requested = match headers.get(SCRAPE_TIMEOUT_HEADER).map(parse_scrape_timeout) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return bad(conn, e.to_string()),
    };
    // Answered before the scraper's deadline, and the client's before ours: each reason then
    // reaches the one who waits for it.
    let deadline_in = state
        .config
        .before_deadline(state.config.effective_deadline(requested));
    let client_deadline = state.config.before_deadline(deadline_in);
    headers.set(
        SCRAPE_TIMEOUT_HEADER,
        format_scrape_timeout(client_deadline),
    );
    let id = pushprox_daemon::ids::scrape_id();
    headers.set(ID_HEADER, id.clone());
    let scrape = ScrapeRequest {
        method: request.method().to_string(),
        url: url.clone(),
        headers,
    };
    let fqdn = target.host.clone();
    log::debug!(
        "scrape waiting for a poll fqdn={fqdn} scrape_id={id} url={} deadline={}",
        crate::redact::shown(&url),
        format_duration(deadline_in)
    );
    let request_bytes = scrape.to_proxy_bytes();
    let deadline = started + deadline_in;
    let key = pushprox_protocol::fqdn_key(&fqdn);
    // A shard that does not hold the FQDN passes the scrape on to the balancer's next server
    // soon, rather than at the deadline (--scrape.unknown-fqdn-wait).
    let unknown_wait = state.config.scrape_unknown_fqdn_wait;
    let passes = !unknown_wait.is_zero() && !state.rendezvous.is_known(&key);
    let mut poll_deadline = match passes {
        true => deadline.min(started + unknown_wait),
        false => deadline,
    };
    // Read only where it is used: a proxy that never passes scrapes on takes no lock for it.
    let passed_before = match passes {
        true => state.passing.count(&key),
        false => 0,
    };
    let mut extended = false;
    let pending = PendingScrape {
        conn,
        id: id.clone(),
        fqdn: fqdn.clone(),
        url: url.clone(),
        within: deadline_in,
        in_progress,
    };
    state.rendezvous.expect_push(&id, &key, deadline, pending);
    let err = loop {
        match state.rendezvous.take_poll(&key, poll_deadline) {
            Taken::Poll(poll) => match poll.hand_over(&request_bytes) {
                Ok(after) => {
                    log::debug!("scrape handed to poll fqdn={fqdn} scrape_id={id}");
                    state.rendezvous.handed(&id);
                    return after;
                }
                Err(e) => log::debug!(
                    "hand-over to poll failed fqdn={fqdn} scrape_id={id}: {e}; offering the scrape to the next poll"
                ),
            },
            Taken::NoPoll { stale } => {
                if let Some(poll) = stale {
                    poll.superseded();
                }
                // Another scrape of this FQDN was passed on meanwhile: its client, once
                // scraped there, is likely to poll here next.
                if passes && !extended && state.passing.count(&key) != passed_before {
                    extended = true;
                    poll_deadline = deadline.min(Instant::now() + unknown_wait);
                    continue;
                }
                break ScrapeError::NoPoll;
            }
            Taken::ShuttingDown => break ScrapeError::ShuttingDown,
        }
    };
    // A push with a guessed id may have taken the scrape already: it answers it then.
    let Some(pending) = state.rendezvous.abandon(&id) else {
        return After::Kept;
    };
    // Counted in progress until answered.
    let PendingScrape {
        mut conn,
        in_progress: _in_progress,
        ..
    } = pending;
    let (kind, reason) = match err {
        ScrapeError::NoPoll if passes && poll_deadline < deadline => (
            ScrapeOutcome::PassedOn,
            format!("no client polls this proxy for {fqdn}; if every proxy said so, the target answered 404 itself (balancers retry any 404) or no pushprox-client runs with --fqdn={fqdn} (waited --scrape.unknown-fqdn-wait {})", format_duration(unknown_wait)),
        ),
        ScrapeError::ShuttingDown => (
            ScrapeOutcome::ShuttingDown,
            "the proxy is stopping: a balancer tries its next server".to_string(),
        ),
        ScrapeError::NoPoll => {
            let reason = no_poll(state, &fqdn, deadline_in);
            // The status line (what Prometheus' target page shows) says why; the URL is there.
            let body = format!(
                "Error scraping \"{}\": {reason}",
                crate::redact::shown(&url)
            );
            log::warn!("scrape failed fqdn={fqdn} scrape_id={id}: {body}");
            state.metrics.scrape(ScrapeOutcome::NoPoll);
            return scrape_failed(conn, 504, &reason, &body);
        }
    };
    // This proxy cannot serve the scrape but another may: 404, which a balancer retries on
    // its next server without counting this one as failed, marked as the proxy's own.
    state.passing.passed(&key);
    log::debug!("scrape passed on fqdn={fqdn} scrape_id={id}: {reason}");
    state.metrics.scrape(kind);
    conn.set_reason(&pushprox_protocol::reason_with(404, &reason));
    conn.respond_text(404, &[(RETRY_HEADER, RETRY_NEXT)], &reason)
}

/// The one-line reason of a scrape that no poll came for within `deadline`.
fn no_poll(state: &State, fqdn: &str, deadline: Duration) -> String {
    let within = format_duration(deadline);
    if state.rendezvous.is_known(fqdn) {
        format!("client {fqdn} is registered but no poll of it arrived within {within} (it may be reconnecting or too busy)")
    } else {
        format!("no client polled for {fqdn} within {within}; is pushprox-client running there with --fqdn={fqdn} and --proxy-url pointing at this proxy?")
    }
}
