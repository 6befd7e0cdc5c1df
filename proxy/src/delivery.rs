//! A push finishing the scrape that waits for it. The push's thread reads the pushed head,
//! takes the scraper's connection that the scrape left (its stake), relays the body to it,
//! answers the push and goes on reading the client's next request: no other thread is woken
//! for the push's connection. The scrape's thread is told how it ended, and counts it.

use std::io::{self, BufRead, Read};

use pushprox_protocol::{
    BodyReader, Framing, ResponseHead, ID_HEADER, RETRY_HEADER, SCRAPE_TIMEOUT_HEADER,
};

use crate::http::{After, BodyError, Connection, RequestBody, TEXT};

/// How a push finished its scrape, told to the scrape's thread.
// Moved once per scrape through a hand-off; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Finished {
    /// The pushed response went to the scraper, whole or as far as `end` says.
    Relayed {
        /// What became of the scraper's connection.
        after: After,
        end: RelayEnd,
        status: u16,
        bytes: u64,
    },
    /// The push was refused (too large): the scraper gets a 502 with this reason.
    Refused {
        /// The scraper's connection, to be answered.
        conn: Connection,
        /// One line for the scraper.
        reason: String,
    },
}

/// How the relay of a pushed body ended, which decides the push's answer.
pub enum RelayEnd {
    /// The whole body reached the scraper.
    Relayed,
    /// The push broke off or was malformed.
    PushBroken(BodyError),
    /// The scraper went away.
    ScraperGone,
    /// No scrape took the push: answered with this status and reason.
    Refused { status: u16, reason: String },
}

/// The body of a pushed response, read from the push request's body.
pub struct PushedBody {
    reader: BodyReader<RequestBody>,
}

impl PushedBody {
    /// The pushed body, framed by `framing` inside the push request's body, at most `limit`
    /// bytes (--push.max-body).
    pub fn new(request_body: RequestBody, framing: Framing, limit: u64) -> Self {
        PushedBody {
            reader: BodyReader::new(request_body, framing, Some(limit)),
        }
    }

    /// Whether the pushed body has been read to its end.
    pub fn is_done(&self) -> bool {
        self.reader.is_done()
    }

    /// Bytes of the pushed body read so far.
    pub fn bytes_read(&self) -> u64 {
        self.reader.bytes_read()
    }

    /// Answers the push: `200` when its body was relayed whole, else the reason.
    pub fn answer(self, end: &RelayEnd, id: &str) -> After {
        let bytes = self.bytes_read();
        answer_push(self.reader.into_inner(), end, id, bytes)
    }
}

/// Streams the pushed response to the scraper's connection, then answers the push: how the
/// scrape ended, and what became of the push's connection.
pub fn relay(
    mut scraper: Connection,
    head: ResponseHead,
    mut body: PushedBody,
    id: &str,
) -> (Finished, After) {
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
    // The pushed status line's reason (the client's "why" for a failed scrape), as pushed.
    if !head.reason.is_empty() {
        scraper.set_reason(&head.reason);
    }
    let (after, relay) = scraper.respond_stream(status, &headers, length, &mut body);
    let end = match (relay.source_error, relay.sink_error) {
        (Some(e), _) => RelayEnd::PushBroken(BodyError::from_io(&e)),
        (None, Some(_)) => RelayEnd::ScraperGone,
        (None, None) if body.is_done() => RelayEnd::Relayed,
        (None, None) => RelayEnd::ScraperGone,
    };
    let bytes = body.bytes_read();
    let push_after = body.answer(&end, id);
    let finished = Finished::Relayed {
        after,
        end,
        status,
        bytes,
    };
    (finished, push_after)
}

/// Answers a push whose body is `request_body`; the push's connection goes on with the
/// client's next request on this thread.
pub fn answer_push(request_body: RequestBody, end: &RelayEnd, id: &str, bytes: u64) -> After {
    let conn = request_body.finish();
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
        RelayEnd::Refused { status, reason } => (*status, reason.clone()),
    };
    if status == 200 {
        conn.respond(200, &[], b"")
    } else {
        conn.respond(status, &TEXT, format!("{reason}\n").as_bytes())
    }
}

impl Read for PushedBody {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.reader.read(out)
    }
}

impl BufRead for PushedBody {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.reader.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.reader.consume(n)
    }
}
