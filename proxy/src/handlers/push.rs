//! `POST /push`: a client returns a scrape's response. The pushed head is read here, the
//! scrape waiting for its id taken, and the body relayed to its scraper on this thread (see
//! `delivery`), which then goes on with the client's next request.

use std::time::{Duration, Instant};

use pushprox_protocol::{Framing, ProtocolError, ResponseHead, DEFAULT_MAX_HEAD, ID_HEADER};

use super::Guard;
use crate::auth::Refusal;
use crate::delivery::PushedBody;
use crate::http::{After, Connection, Request, RequestBody};
use crate::rendezvous::PushError;
use crate::state::State;

/// How long the head of a push declared too large may take to arrive: it is read only to
/// tell its scrape why it fails.
const OVERSIZED_HEAD_WAIT: Duration = Duration::from_secs(1);

/// Parses the pushed response head and hands the push to the scrape waiting for its id.
pub fn handle(state: &State, request: Request, mut conn: Connection) -> After {
    let from = conn.peer();
    // The client certificate's end entity, for its names once the scrape's FQDN is known.
    let certs = conn.peer_certificates().and_then(|c| c.first()).cloned();
    let certs = certs.as_ref().map(std::slice::from_ref);
    let token = match state.auth.client_token(request.header("Authorization")) {
        Ok(t) => t.map(str::to_string),
        Err(refusal) => return super::refuse(state, &request, conn, Guard::Client, &refusal),
    };
    // Whether the token and the certificate may answer scrapes sent to `fqdn`.
    let may_answer = |fqdn: &str| {
        let by_token = state.auth.client_may(token.as_deref(), fqdn);
        by_token.and_then(|()| state.auth.certificate_may(certs, fqdn))
    };
    let max = match state.config.push_max_body {
        0 => u64::MAX,
        max => max,
    };
    let declared = match conn.body_framing() {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    if declared.is_some_and(|n| n > max) {
        if request.header("Expect").is_some() {
            // The client waits for 100 Continue before its body: tell it no at once, rather
            // than invite a body that will be refused.
            let reason = format!(
                "Error pushing: the push of {} bytes is larger than --push.max-body ({max} bytes)",
                declared.unwrap_or_default()
            );
            crate::warn_limit::REFUSALS
                .warn("push", || format!("refused push from {from}: {reason}"));
            return conn.respond_text(413, &[], &reason);
        }
        // Refused at once; the pushed head (its Id) is read, briefly, only to fail its scrape
        // with the reason rather than at its deadline.
        conn.set_read_deadline(Instant::now() + OVERSIZED_HEAD_WAIT);
    }
    let mut body = match conn.into_body(None) {
        Ok(body) => body,
        Err(e) => {
            log::debug!("push from {from} ended before its body: {e}");
            return After::Kept;
        }
    };
    let fail = |body: RequestBody, status: u16, reason: String| -> After {
        crate::warn_limit::REFUSALS.warn("push", || format!("refused push from {from}: {reason}"));
        Connection::finish_body(body).respond_text(status, &[], &format!("Error pushing: {reason}"))
    };
    let parsed = ResponseHead::parse(&mut body, DEFAULT_MAX_HEAD);
    let oversized = declared.is_some_and(|n| n > max)
        || matches!(parsed.as_ref().map(ResponseHead::framing), Ok(Ok(Framing::Length(n))) if n > max);
    if oversized {
        let id = parsed
            .ok()
            .and_then(|h| h.headers.get(ID_HEADER).map(str::to_string));
        let for_id = id
            .as_deref()
            .map(|id| format!("scrape_id={id}: "))
            .unwrap_or_default();
        if let Some(id) = &id {
            let fqdn = state.rendezvous.fqdn_of(id);
            if let Some(fqdn) = fqdn.filter(|f| may_answer(f).is_ok()) {
                let reason = format!(
                    "Error scraping: the response of client {fqdn} is larger than the proxy's --push.max-body of {max} bytes"
                );
                if let Ok(pending) = state.rendezvous.push(id) {
                    pending.refused(&state.metrics, reason);
                }
            }
        }
        return fail(
            body,
            413,
            format!("{for_id}the push is larger than --push.max-body ({max} bytes)"),
        );
    }
    let head = match parsed {
        Ok(h) => h,
        Err(e @ ProtocolError::HeadTooLarge { .. }) => return fail(body, 431, e.to_string()),
        Err(e) => return fail(body, 400, e.to_string()),
    };
    let Some(id) = head.headers.get(ID_HEADER).map(str::to_string) else {
        return fail(
            body,
            400,
            "the pushed response has no Id header: it must echo the Id of the scrape request"
                .into(),
        );
    };
    let framing = match head.framing() {
        Ok(f) => f,
        Err(e) => return fail(body, 400, format!("scrape_id={id}: {e}")),
    };
    // The rest of the push must arrive before its scrape gives up: a push trickled a byte
    // at a time holds a thread no longer than that.
    if let Some(deadline) = state.rendezvous.deadline_of(&id) {
        body.get_mut().set_read_deadline(deadline);
    }
    // A refusal of this push's credentials, saying which scrape it was for.
    let refuse = |body: RequestBody, refusal| {
        let (conn, refusal) = (Connection::finish_body(body), for_scrape(refusal, &id));
        super::refuse(state, &request, conn, Guard::Client, &refusal)
    };
    if let Some(fqdn) = state.rendezvous.fqdn_of(&id) {
        if let Err(refusal) = may_answer(&fqdn) {
            return refuse(body, refusal);
        }
    }
    let pending = match state.rendezvous.push(&id) {
        Ok(pending) => pending,
        Err(err) => {
            let (status, reason) = match err {
                PushError::UnknownId => (404, format!("Error pushing: no scrape with id {id} is waiting (unknown id, or it expired long ago)")),
                PushError::Expired { fqdn, .. } if state.auth.client_may(token.as_deref(), &fqdn).is_err() => {
                    return refuse(body, Refusal::Wrong(format!("the bearer token is not valid for client {fqdn}")));
                }
                PushError::Expired { fqdn, .. } if state.auth.certificate_may(certs, &fqdn).is_err() => {
                    return refuse(body, Refusal::Wrong(format!("the client certificate is not valid for client {fqdn}")));
                }
                PushError::Expired { fqdn, ago } => (
                    410,
                    format!(
                        "Error pushing: scrape {id} for {fqdn} gave up {:.1}s ago at its deadline; the target answered too slowly for the scrape timeout",
                        ago.as_secs_f64()
                    ),
                ),
            };
            if status == 410 {
                state.metrics.late_push();
                log::info!("late push from={from} scrape_id={id}: {reason}");
            } else if !state.config.scrape_unknown_fqdn_wait.is_zero() {
                // A shard: the push of a scrape another shard sent, which the balancer
                // retries there on this 404 while a client moves between shards.
                log::debug!("unknown push from={from} scrape_id={id}: {reason}");
            } else {
                log::warn!("unknown push from={from} scrape_id={id}: {reason}");
            }
            return Connection::finish_body(body).respond_text(status, &[], &reason);
        }
    };
    let body = PushedBody::new(body, framing, Some(max));
    pending.relay(&state.metrics, head, body)
}

/// Says which scrape a client's token was refused for.
fn for_scrape(refusal: Refusal, id: &str) -> Refusal {
    match refusal {
        Refusal::Wrong(r) => {
            Refusal::Wrong(format!("{r}, the FQDN that scrape_id={id} was sent to"))
        }
        missing => missing,
    }
}
