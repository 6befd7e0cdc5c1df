//! What a push hands to the scrape waiting for it: the pushed response's head, and its body
//! still to be read from the push's connection. The scrape relays the body and then answers
//! the push, so one thread owns the whole exchange.

use std::io::{self, BufRead, Read};

use pushprox_protocol::{BodyReader, Framing, ResponseHead};

use crate::http::{After, BodyError, RequestBody, TEXT};

/// A push delivered to its scrape.
// Moved once per scrape through a channel; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Delivery {
    /// The target's response: its head, and the body still to be read.
    Pushed {
        /// Status line and headers of the target's response.
        head: ResponseHead,
        /// The body, read on demand from the push connection.
        body: PushedBody,
    },
    /// The push was refused (too large): the scraper gets a 502 with this reason.
    Refused {
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

    /// The push request's body, for a push that no scrape took.
    pub fn into_request_body(self) -> RequestBody {
        self.reader.into_inner()
    }

    /// Whether the pushed body has been read to its end.
    pub fn is_done(&self) -> bool {
        self.reader.is_done()
    }

    /// Bytes of the pushed body read so far.
    pub fn bytes_read(&self) -> u64 {
        self.reader.bytes_read()
    }

    /// Answers the push: `200` when its body was relayed whole, else the reason, and hands
    /// its connection back for the client's next request.
    pub fn answer(self, end: &RelayEnd, id: &str) {
        let bytes = self.bytes_read();
        answer_push(self.reader.into_inner(), end, id, bytes);
    }
}

/// Answers a push whose body is `request_body`.
pub fn answer_push(request_body: RequestBody, end: &RelayEnd, id: &str, bytes: u64) {
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
    let after = if status == 200 {
        conn.respond(200, &[], b"")
    } else {
        conn.respond(status, &TEXT, format!("{reason}\n").as_bytes())
    };
    if let After::Next(conn) = after {
        conn.resume();
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
