//! Writing an answer: its head, a whole body or one streamed from a reader, and what the
//! connection does next.

use std::io::{self, BufRead, IoSlice, Write};

use pushprox_protocol::{
    chunk_size_line, reason_phrase, reason_text, Headers, CHUNK_LINE, LAST_CHUNK,
};

use super::{After, Connection};

/// Headers of the plain-text answers.
const TEXT: [(&str, &str); 2] = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("X-Content-Type-Options", "nosniff"),
];

/// Whether answers of `status` never have a body (RFC 9112 6.3).
fn bodiless(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// Writes all of `parts` (a head, a chunk's framing and data) with as few system calls as the
/// socket allows.
fn write_all_gathered(stream: &mut impl Write, mut parts: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        match stream.write_vectored(parts) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How a streamed answer went.
#[derive(Debug, Default)]
pub struct Relay {
    /// The source reached its end.
    pub source_done: bool,
    /// The source failed (e.g. a push that broke off).
    pub source_error: Option<io::Error>,
    /// Writing to the requester failed (it went away).
    pub sink_error: Option<String>,
}

impl Connection {
    /// Sets the socket's write time-out once: every write may block at most the read time-out.
    fn arm_writes(&mut self) -> io::Result<()> {
        if !self.write_armed {
            let timeout = self.read_timeout();
            self.stream.tcp().set_write_timeout(timeout)?;
            self.write_armed = true;
        }
        Ok(())
    }

    /// Whether the connection can carry another request after this answer.
    fn reusable(&self) -> bool {
        self.exchange.keep_alive && self.exchange.body.is_none()
    }

    pub(super) fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.arm_writes()?;
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Answers this request with `phrase` (made printable and bounded) as the status line's
    /// reason instead of the standard one: a scraper such as Prometheus shows the status line
    /// of a failed scrape, not its body.
    pub fn set_reason(&mut self, phrase: &str) {
        self.exchange.reason = Some(Box::new(reason_text(phrase).into()));
    }

    /// The status line and headers of an answer, with framing and connection headers added.
    fn head_bytes(&self, status: u16, headers: &[(&str, &str)], length: Option<u64>) -> Vec<u8> {
        // Written straight into the bytes that go out: a response head costs one allocation.
        let mut out = Vec::with_capacity(256);
        let version = if self.exchange.http10 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        let reason = self
            .exchange
            .reason
            .as_deref()
            .map_or_else(|| reason_phrase(status), |r| &**r);
        let _ = write!(out, "{version} {status} {reason}\r\n");
        let extra = self.shared.extra_headers();
        // A header of the web config (http_server_config.headers) replaces the handler's of
        // the same name: sent once, with the operator's value.
        let configured = |name: &str| extra.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        for (name, value) in headers
            .iter()
            .copied()
            .filter(|(name, _)| !configured(name))
            .chain(extra.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        {
            Headers::write_field(&mut out, name, value);
        }
        match length {
            // A 1xx, 204 or 304 declares no framing: it has no body.
            _ if bodiless(status) => {}
            Some(n) => {
                let _ = write!(out, "Content-Length: {n}\r\n");
            }
            None if !self.exchange.http10 => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n")
            }
            None => {}
        }
        let keep = self.reusable() && (length.is_some() || !self.exchange.http10);
        if !keep {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if self.exchange.http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Answers the request with a whole body, records it, and says what comes next.
    pub fn respond(self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> After {
        // A failed write was counted as 499 and the connection closed.
        self.respond_checked(status, headers, body)
            .unwrap_or(After::Kept)
    }

    /// Answers with a one-line plain-text `reason` (newline-terminated, as Go's http.Error),
    /// with the headers of every plain-text answer, then `extra`.
    pub fn respond_text(self, status: u16, extra: &[(&str, &str)], reason: &str) -> After {
        let headers: Vec<(&str, &str)> = TEXT.iter().chain(extra).copied().collect();
        self.respond(status, &headers, format!("{reason}\n").as_bytes())
    }

    /// [`Connection::respond`] that also says whether the answer could be written.
    pub fn respond_checked(
        self,
        status: u16,
        headers: &[(&str, &str)],
        mut body: &[u8],
    ) -> io::Result<After> {
        let length = Some(body.len() as u64);
        let (after, relay) = self.respond_stream(status, headers, length, &mut body);
        relay
            .sink_error
            .map_or(Ok(after), |e| Err(io::Error::other(e)))
    }

    /// Answers the request with a body streamed from `body` (of `length` bytes when known:
    /// else chunked, or up to the close on HTTP/1.0). A failure of the source ends the answer
    /// early, so the requester sees a truncated body and never a complete-looking one. The
    /// bytes go from the source's buffer to the socket as they are, the head with the first
    /// of them in one write.
    pub fn respond_stream(
        mut self,
        status: u16,
        headers: &[(&str, &str)],
        length: Option<u64>,
        body: &mut dyn BufRead,
    ) -> (After, Relay) {
        let bodiless = bodiless(status);
        let length = if bodiless { Some(0) } else { length };
        let head = self.head_bytes(status, headers, length);
        let chunked = length.is_none() && !self.exchange.http10;
        if length.is_none() {
            self.exchange.keep_alive &= chunked;
        }
        let mut relay = Relay::default();
        let mut pending: &[u8] = &head;
        let mut written = self.arm_writes();
        // A 1xx, 204 or 304 has no body (RFC 9112 6.3): whatever followed its head is never
        // written, where the scraper would read it as a second response.
        while written.is_ok() && !self.exchange.head_only && !bodiless {
            let data = match body.fill_buf() {
                Ok([]) => {
                    relay.source_done = true;
                    break;
                }
                Ok(data) => data,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    relay.source_error = Some(e);
                    // Cut the answer short: the requester must not take it for complete.
                    self.exchange.keep_alive = false;
                    break;
                }
            };
            let n = data.len();
            let mut line = [0; CHUNK_LINE];
            let (size_line, end): (&[u8], &[u8]) = match chunked {
                true => (chunk_size_line(n, &mut line), b"\r\n"),
                false => (b"", b""),
            };
            let mut parts = [
                IoSlice::new(pending),
                IoSlice::new(size_line),
                IoSlice::new(data),
                IoSlice::new(end),
            ];
            written = write_all_gathered(&mut self.stream, &mut parts);
            pending = b"";
            body.consume(n);
        }
        let last: &[u8] = match chunked && relay.source_done {
            true => LAST_CHUNK,
            false => b"",
        };
        if written.is_ok() {
            let mut parts = [IoSlice::new(pending), IoSlice::new(last)];
            written = write_all_gathered(&mut self.stream, &mut parts);
        }
        let written = written.and_then(|()| self.stream.flush());
        if let Err(e) = &written {
            relay.sink_error = Some(e.to_string());
        }
        (self.finish(status, written), relay)
    }

    /// Records the answer and decides whether the connection goes on.
    pub(super) fn finish(mut self, status: u16, written: io::Result<()>) -> After {
        let code = if written.is_ok() { status } else { 499 };
        self.service
            .record(self.exchange.label, code, self.exchange.started.elapsed());
        if written.is_err() || !self.reusable() {
            self.close();
            return After::Kept;
        }
        self.release_buffer();
        After::Next(self)
    }
}
