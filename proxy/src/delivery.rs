//! A scrape handed to a client, waiting for its push without a thread, and the push that
//! finishes it. The scrape's thread leaves a [`PendingScrape`] (the scraper's connection)
//! in the rendezvous and goes on with the poll's connection. The push's thread reads the
//! pushed head, takes the pending scrape, relays the body to the scraper, answers the push
//! and goes on with the client's next request; at the scrape's deadline with no push, the
//! deadlines thread answers the scraper instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pushprox_protocol::{
    format_duration, BodyReader, Framing, ResponseHead, ID_HEADER, RETRY_HEADER,
    SCRAPE_TIMEOUT_HEADER,
};

use crate::http::{After, BodyError, Connection, RequestBody};
use crate::metrics::{Metrics, ScrapeOutcome};

/// A scrape in progress, counted (in the proxy's scrapes in progress) until dropped: it moves
/// with the scrape from thread to thread (the scrape's, the push's, the deadlines').
pub struct InProgress(Arc<AtomicUsize>);

impl InProgress {
    pub fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        InProgress(Arc::clone(count))
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A scrape written onto a poll, waiting for its push.
pub struct PendingScrape {
    /// The scraper's connection.
    pub conn: Connection,
    pub id: String,
    pub fqdn: String,
    pub url: String,
    /// The scrape's time limit, for the reason when no push comes.
    pub within: Duration,
    pub in_progress: InProgress,
}

impl PendingScrape {
    /// Relays the pushed response to the scraper and answers the push; returns what became
    /// of the push's connection. The scraper's connection goes on on a pooled thread.
    pub fn relay(self, metrics: &Metrics, head: ResponseHead, mut body: PushedBody) -> After {
        let PendingScrape {
            conn: mut scraper,
            id,
            fqdn,
            in_progress,
            ..
        } = self;
        let status = head.status;
        let length = match head.framing() {
            Ok(Framing::Length(n)) => Some(n),
            _ => None,
        };
        let headers: Vec<(&str, &str)> = head
            .end_to_end_headers()
            .filter(|(n, _)| {
                ![ID_HEADER, SCRAPE_TIMEOUT_HEADER, RETRY_HEADER]
                    .iter()
                    .any(|h| n.eq_ignore_ascii_case(h))
            })
            .collect();
        // The pushed status line's reason (the client's "why" for a failed scrape), as pushed;
        // the standard one is what the scraper's status line says anyway.
        if !head.reason.is_empty() && head.reason != pushprox_protocol::reason_phrase(status) {
            scraper.set_reason(&head.reason);
        }
        let (scraper, relay) = scraper.respond_stream(status, &headers, length, &mut body);
        let end = match (relay.source_error, relay.sink_error) {
            (Some(e), _) => RelayEnd::PushBroken(BodyError::from_io(&e)),
            (None, Some(_)) => RelayEnd::ScraperGone,
            (None, None) if body.is_done() => RelayEnd::Relayed,
            (None, None) => RelayEnd::ScraperGone,
        };
        let bytes = body.bytes_read();
        let push_after = answer_push(body.into_inner(), &end, &id, bytes);
        metrics.relayed(bytes);
        match &end {
            RelayEnd::Relayed => {
                log::debug!(
                    "scrape relayed fqdn={fqdn} scrape_id={id} status={status} bytes={bytes}"
                );
                metrics.scrape(ScrapeOutcome::Relayed);
            }
            _ => {
                log::warn!(
                    "relay failed fqdn={fqdn} scrape_id={id} after {bytes} bytes: {}",
                    end.describe()
                );
                metrics.scrape(ScrapeOutcome::RelayFailed);
            }
        }
        drop(in_progress);
        if let After::Next(scraper) = scraper {
            scraper.resume();
        }
        push_after
    }

    /// Fails the scrape with 502: its push was refused (too large).
    pub fn refused(self, metrics: &Metrics, reason: String) {
        log::warn!(
            "scrape failed fqdn={} scrape_id={}: {reason}",
            self.fqdn,
            self.id
        );
        metrics.scrape(ScrapeOutcome::RelayFailed);
        self.answer_elsewhere(502, reason.clone(), reason);
    }

    /// Fails the scrape with 504 at its deadline: no push came.
    pub fn no_push(self, metrics: &Metrics) {
        let reason = format!(
            "client {} took the scrape but sent no answer within {}; look for scrape_id={} in its log",
            self.fqdn,
            format_duration(self.within),
            self.id
        );
        let body = format!(
            "Error scraping \"{}\": {reason}",
            crate::redact::shown(&self.url)
        );
        log::warn!(
            "scrape failed fqdn={} scrape_id={}: {body}",
            self.fqdn,
            self.id
        );
        metrics.scrape(ScrapeOutcome::NoPush);
        self.answer_elsewhere(504, reason, body);
    }

    /// Answers the scraper on a pooled thread (a slow scraper must not hold up the caller),
    /// which then reads the scraper's next request.
    fn answer_elsewhere(self, status: u16, detail: String, body: String) {
        let in_progress = self.in_progress;
        self.conn.resume_with(move |conn| {
            let after = scrape_failed(conn, status, &detail, &body);
            drop(in_progress);
            after
        });
    }
}

/// Answers a scrape the proxy fails itself: `detail` after the standard phrase in the status
/// line (what Prometheus' target page shows as lastError), `body` as the plain-text body.
pub fn scrape_failed(mut conn: Connection, status: u16, detail: &str, body: &str) -> After {
    conn.set_reason(&pushprox_protocol::reason_with(status, detail));
    conn.respond_text(status, &[], body)
}

/// How the relay of a pushed body ended, which decides the push's answer.
enum RelayEnd {
    /// The whole body reached the scraper.
    Relayed,
    /// The push broke off or was malformed.
    PushBroken(BodyError),
    /// The scraper went away.
    ScraperGone,
}

impl RelayEnd {
    fn describe(&self) -> String {
        match self {
            RelayEnd::Relayed => "relayed".into(),
            RelayEnd::PushBroken(e) => format!("the push broke off: {e}"),
            RelayEnd::ScraperGone => "the scraper went away".into(),
        }
    }
}

/// The body of a pushed response, read from the push request's body (framed by the pushed
/// head, at most --push.max-body bytes).
pub type PushedBody = BodyReader<RequestBody>;

/// Answers a push whose body is `request_body`; the push's connection goes on with the
/// client's next request on this thread.
fn answer_push(request_body: RequestBody, end: &RelayEnd, id: &str, bytes: u64) -> After {
    let conn = Connection::finish_body(request_body);
    let (status, reason) = match end {
        RelayEnd::Relayed => (200, String::new()),
        RelayEnd::PushBroken(e @ BodyError::TooLarge { .. }) => (
            413,
            format!(
                "push body for scrape_id={id} broke off after {bytes} bytes: {e} (--push.max-body)"
            ),
        ),
        RelayEnd::PushBroken(e) => (
            400,
            format!("push body for scrape_id={id} broke off after {bytes} bytes: {e}"),
        ),
        RelayEnd::ScraperGone => (
            502,
            format!("the scraper went away after {bytes} bytes of scrape_id={id}"),
        ),
    };
    if status == 200 {
        conn.respond(200, &[], b"")
    } else {
        conn.respond_text(status, &[], &reason)
    }
}
