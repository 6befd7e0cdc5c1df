//! One client connection: its stream (plain or TLS), the bytes read ahead, the request being
//! answered, and the loop that serves request after request on a pooled thread.
//!
//! A [`Connection`] is a value: a handler may answer it at once, or keep it (a parked poll, a
//! push whose body a scrape relays) and answer it later from another thread; [`Connection::resume`]
//! then hands it back to the pool for its next request. Between requests it holds no buffer.

use std::cell::Cell;
use std::io::{self, BufRead, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushprox_protocol::{
    parse_request, reason_phrase, reason_text, BodyReader, Framing, Headers, ProtocolError,
};

use super::listener::{Front, Slot};
use super::shares::Held;
use super::tls::Stream;
use super::{RequestHead, Version};

/// Size of the buffer a request is read into: a head and a 20 KiB pushed body in one read. A
/// head larger than this (up to the head limit) grows it.
const READ_BUFFER: usize = 32 * 1024;
/// How much longer than the time left a socket's read time-out may stay: a read that blocks
/// ends at most this late.
const REARM_SLACK: Duration = Duration::from_millis(50);

/// How long a connection beyond its address's idle share may wait for its first byte.
const OVER_SHARE_GRACE: Duration = Duration::from_millis(500);
/// Most bytes read past what a handler consumed to reach the end of a request body, so the
/// connection can be kept alive.
const MAX_DRAIN: u64 = 64 * 1024;
/// Most read buffers kept for reuse beyond one per thread: buffers move between threads (a
/// push's connection is read on one and answered on another), so a few wait here.
const SPARE_BUFFERS: usize = 16;

thread_local! {
    /// The read buffer a connection thread keeps between connections: a connection takes it
    /// for a request and gives it back once nothing is read ahead, so an idle or parked
    /// connection holds no buffer and a busy one allocates none per request.
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Buffers given back on a thread whose own spare was taken already.
static SPARES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn spares() -> std::sync::MutexGuard<'static, Vec<Vec<u8>>> {
    SPARES.lock().unwrap_or_else(|p| p.into_inner())
}

/// A read buffer: this thread's spare, another kept one, or a new one.
fn take_buffer() -> Vec<u8> {
    let spare = SPARE.with(Cell::take);
    if spare.len() == READ_BUFFER {
        return spare;
    }
    spares().pop().unwrap_or_else(|| vec![0; READ_BUFFER])
}

/// Keeps `buf` for reuse, unless it grew for a large head or enough are kept.
fn give_back(buf: Vec<u8>) {
    if buf.len() != READ_BUFFER {
        return;
    }
    let other = SPARE.with(|s| s.replace(buf));
    if other.len() == READ_BUFFER {
        let mut kept = spares();
        if kept.len() < SPARE_BUFFERS {
            kept.push(other);
        }
    }
}

/// A request as a handler sees it: its head. The body is read from the [`Connection`].
#[derive(Debug)]
pub struct Request {
    pub head: RequestHead,
}

impl Request {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name)
    }

    pub fn method(&self) -> &str {
        &self.head.method
    }

    pub fn target(&self) -> &str {
        &self.head.target
    }
}

/// What a handler did with the connection.
pub enum After {
    /// Answered; the connection reads its next request.
    Next(Connection),
    /// Kept by the handler, or closed.
    Kept,
}

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the caller's limit.
    TooLarge { limit: u64 },
    /// Broken framing, a stall past the read time-out, or a peer that went away.
    Broken(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit } => {
                write!(f, "the request body is larger than {limit} bytes")
            }
            BodyError::Broken(why) => write!(f, "the request body could not be read: {why}"),
        }
    }
}

impl BodyError {
    /// Sorts an error of a body reader by its cause.
    pub fn from_io(e: &io::Error) -> BodyError {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ProtocolError>())
        {
            Some(ProtocolError::BodyTooLarge { limit }) => BodyError::TooLarge { limit: *limit },
            _ => BodyError::Broken(e.to_string()),
        }
    }
}

/// The request being answered.
struct Exchange {
    /// Metric label of the endpoint, set by the router.
    label: &'static str,
    started: Instant,
    keep_alive: bool,
    head_only: bool,
    http10: bool,
    /// Body bytes not read yet, as framed by the head; `None` when the body was read whole.
    body: Option<Framing>,
    expect_continue: bool,
    /// The status line's reason phrase when not the standard one (see [`Connection::set_reason`]);
    /// a thin pointer, so that a `Connection` stays small to move.
    reason: Option<Box<Box<str>>>,
}

impl Exchange {
    fn idle() -> Exchange {
        Exchange {
            label: "other",
            started: Instant::now(),
            keep_alive: false,
            head_only: false,
            http10: false,
            body: None,
            expect_continue: false,
            reason: None,
        }
    }
}

/// A client connection, counted against `--web.max-connections` until it is dropped.
pub struct Connection {
    stream: Stream,
    /// Bytes read ahead: `buf[pos..filled]`.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    peer: SocketAddr,
    front: Arc<Front>,
    _slot: Slot,
    exchange: Exchange,
    /// When the head being read must be complete.
    deadline: Option<Instant>,
    /// The read time-out the socket has now (once `read_armed_set`), and whether its write
    /// time-out is set.
    read_armed: Option<Duration>,
    read_armed_set: bool,
    write_armed: bool,
}

impl Connection {
    pub(super) fn new(stream: Stream, peer: SocketAddr, front: Arc<Front>, slot: Slot) -> Self {
        Connection {
            stream,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            peer,
            front,
            _slot: slot,
            exchange: Exchange::idle(),
            deadline: None,
            read_armed: None,
            read_armed_set: false,
            write_armed: false,
        }
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The DER certificates the peer presented in the TLS handshake, if any.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.stream.peer_certificates()
    }

    /// Names the endpoint in the metrics of this request's answer.
    pub fn set_label(&mut self, label: &'static str) {
        self.exchange.label = label;
    }

    /// When this request's head was complete.
    pub fn started(&self) -> Instant {
        self.exchange.started
    }

    fn read_timeout(&self) -> Option<Duration> {
        Some(self.front.limits.read_timeout).filter(|t| !t.is_zero())
    }

    /// Sets the socket's read time-out to what is left until `deadline` (or the read
    /// time-out when there is none); `TimedOut` once it has passed. The socket keeps a
    /// time-out that ends no more than a little later, or any that ends sooner (a read that
    /// times out early is re-armed and retried, once per wait): a push's deadline and the
    /// wait for the next request then cost no system call per request. `force` re-arms.
    fn arm(&mut self, force: bool) -> io::Result<()> {
        let timeout = match (self.deadline, self.read_timeout()) {
            (Some(deadline), _) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the read time-out passed",
                    ));
                }
                Some(left)
            }
            (None, timeout) => timeout,
        };
        let close_enough = match (self.read_armed, timeout) {
            (Some(armed), Some(want)) => armed <= want + REARM_SLACK,
            (None, None) => true,
            _ => false,
        };
        if force || !close_enough || !self.read_armed_set {
            self.stream.tcp().set_read_timeout(timeout)?;
            self.read_armed = timeout;
            self.read_armed_set = true;
        }
        Ok(())
    }

    /// Sets the socket's write time-out once: every write may block at most the read time-out.
    fn arm_writes(&mut self) -> io::Result<()> {
        if !self.write_armed {
            let timeout = self.read_timeout();
            self.stream.tcp().set_write_timeout(timeout)?;
            self.write_armed = true;
        }
        Ok(())
    }

    /// Reads more bytes into the buffer, growing it up to `max`; 0 at the end of the stream.
    fn read_more(&mut self, max: usize) -> io::Result<usize> {
        if self.buf.is_empty() {
            self.buf = take_buffer();
        }
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
        } else if self.pos > 0 && self.filled == self.buf.len() {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        if self.filled == self.buf.len() {
            let grown = (self.buf.len() * 2).min(max.max(self.filled + 1));
            self.buf.resize(grown, 0);
        }
        self.arm(false)?;
        loop {
            match self.stream.read(&mut self.buf[self.filled..]) {
                Ok(n) => {
                    self.filled += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The socket's time-out may end before the deadline (see `arm`): read on.
                Err(e) if is_timeout(&e) && self.deadline.is_none_or(|d| Instant::now() < d) => {
                    self.arm(true)?
                }
                Err(e) if is_timeout(&e) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for the next request and reads its head within the read time-out. `Ok(None)`:
    /// the peer closed, or stayed silent past the time-out between requests.
    pub(super) fn next_request(&mut self) -> Result<Option<Request>, NextError> {
        self.exchange = Exchange::idle();
        self.deadline = None;
        let limits = self.front.limits.head;
        // Between requests: wait for the first byte as long as a read may take, in the idle
        // share of the peer's address; beyond that share, only a moment (a connection just
        // opened sends its request at once), then the connection is closed.
        if self.pos == self.filled {
            self.deadline = self.read_timeout().map(|t| Instant::now() + t);
            let (_idle, over) = match self.front.shares.idle(self.peer.ip()) {
                Ok(held) => (Some(held), None),
                Err(refusal) => {
                    self.deadline = Some(Instant::now() + OVER_SHARE_GRACE);
                    (None, Some(refusal))
                }
            };
            match self.read_more(limits.max_bytes) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    if let Some(refusal) = over {
                        self.front.service.refused_share(refusal);
                        let why = refusal
                            .explain(&self.front.shares.limits, self.front.limits.max_connections);
                        crate::warn_limit::REFUSALS.warn(refusal.label(), || {
                            format!("closed an idle connection from={}: {why}", self.peer)
                        });
                    }
                    return Ok(None);
                }
                Err(e) if is_disconnect(&e) => return Ok(None),
                Err(e) => return Err(NextError::Io(e)),
            }
        }
        // From the first byte on, the whole head must arrive within the read time-out.
        self.deadline = self.read_timeout().map(|t| Instant::now() + t);
        let (head, length) = loop {
            match parse_request(&self.buf[self.pos..self.filled], limits) {
                Ok(Some(done)) => break done,
                Ok(None) => {}
                Err(e) => return Err(NextError::Head(e)),
            }
            match self.read_more(limits.max_bytes + self.pos) {
                Ok(0) => return Err(NextError::Closed),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Err(NextError::TimedOut),
                Err(e) => return Err(NextError::Io(e)),
            }
        };
        self.pos += length;
        // The whole body, not each read of it, must arrive within the read time-out: a body
        // trickled a byte at a time would otherwise hold its thread for ever. A handler may
        // move the deadline (a push: to its scrape's).
        self.deadline = self.read_timeout().map(|t| Instant::now() + t);
        let connection = head
            .headers
            .get("Connection")
            .unwrap_or("")
            .to_ascii_lowercase();
        let has_token = |t: &str| connection.split(',').any(|c| c.trim() == t);
        let http10 = head.version == Version::Http10;
        self.exchange = Exchange {
            label: "other",
            started: Instant::now(),
            keep_alive: if http10 {
                has_token("keep-alive")
            } else {
                !has_token("close")
            },
            head_only: head.method == "HEAD",
            http10,
            body: match head.framing {
                Framing::Length(0) => None,
                f => Some(f),
            },
            expect_continue: !http10 && head.headers.get("Expect").is_some(),
            reason: None,
        };
        Ok(Some(Request { head }))
    }

    /// Says `100 Continue` to a client that waits for it before sending its body.
    fn continue_if_expected(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.exchange.expect_continue) && self.exchange.body.is_some() {
            self.write_raw(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        Ok(())
    }

    /// Moves the time by which this request's whole body must have arrived (by default the
    /// read time-out after its head).
    pub fn set_read_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// The framing of the body still to be read; `Length(0)` for none.
    pub fn body_framing(&self) -> Framing {
        self.exchange.body.unwrap_or(Framing::Length(0))
    }

    /// Reads the whole request body, at most `limit` bytes; a longer declared length is
    /// refused without reading it.
    pub fn read_body(&mut self, limit: u64) -> Result<Vec<u8>, BodyError> {
        let framing = self.body_framing();
        if let Framing::Length(n) = framing {
            if n > limit {
                return Err(BodyError::TooLarge { limit });
            }
        }
        if framing == Framing::Length(0) {
            return Ok(Vec::new());
        }
        self.continue_if_expected()
            .map_err(|e| BodyError::Broken(e.to_string()))?;
        let mut body = Vec::new();
        let mut reader = BodyReader::new(&mut *self, framing, Some(limit));
        let read = reader.read_to_end(&mut body);
        let done = reader.is_done();
        match read {
            Ok(_) if done => {
                self.exchange.body = None;
                self.release_buffer();
                Ok(body)
            }
            Ok(_) => Err(BodyError::Broken("the body ended early".into())),
            Err(e) => Err(BodyError::from_io(&e)),
        }
    }

    /// Turns the connection into a reader of its request body (at most `limit` bytes), for a
    /// body too large to hold; [`RequestBody::finish`] gives the connection back. When the
    /// `100 Continue` a client waits for cannot be written, the connection is closed.
    pub fn into_body(mut self, limit: Option<u64>) -> Result<RequestBody, BodyError> {
        if let Err(e) = self.continue_if_expected() {
            self.abandon(499);
            return Err(BodyError::Broken(e.to_string()));
        }
        let framing = self.body_framing();
        Ok(RequestBody {
            reader: BodyReader::new(self, framing, limit),
        })
    }

    /// Frees the read buffer once nothing is read ahead, so an idle or parked connection
    /// holds no buffer.
    fn release_buffer(&mut self) {
        if self.pos == self.filled {
            give_back(std::mem::take(&mut self.buf));
            self.pos = 0;
            self.filled = 0;
        }
    }

    /// Whether the connection can carry another request after this answer.
    fn reusable(&self) -> bool {
        self.exchange.keep_alive && self.exchange.body.is_none()
    }

    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_raw_no_flush(bytes)?;
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
        let mut out = Vec::with_capacity(256);
        let version = if self.exchange.http10 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        out.extend_from_slice(
            format!(
                "{version} {status} {}\r\n",
                self.exchange
                    .reason
                    .as_deref()
                    .map_or_else(|| reason_phrase(status), |r| &**r)
            )
            .as_bytes(),
        );
        let extra = self.front.extra_headers();
        // A header of the web config (http_server_config.headers) replaces the handler's of
        // the same name: sent once, with the operator's value.
        let configured = |name: &str| extra.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let mut fields = Headers::new();
        for (name, value) in headers
            .iter()
            .copied()
            .filter(|(name, _)| !configured(name))
            .chain(extra.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        {
            fields.append(name, value);
        }
        match length {
            // A 1xx, 204 or 304 declares no framing: it has no body.
            _ if bodiless(status) => {}
            Some(n) => fields.append("Content-Length", n.to_string()),
            None if !self.exchange.http10 => fields.append("Transfer-Encoding", "chunked"),
            None => {}
        }
        let keep = self.reusable() && (length.is_some() || !self.exchange.http10);
        if !keep {
            fields.append("Connection", "close");
        } else if self.exchange.http10 {
            fields.append("Connection", "keep-alive");
        }
        // The codec's writer never writes a field that would read back as another.
        fields.write_to(&mut out);
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Answers the request with a whole body, records it, and says what comes next.
    pub fn respond(self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> After {
        // A failed write was counted as 499 and the connection closed.
        self.respond_checked(status, headers, body)
            .unwrap_or(After::Kept)
    }

    /// [`Connection::respond`] that also says whether the answer could be written.
    pub fn respond_checked(
        mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<After> {
        let mut bytes = self.head_bytes(status, headers, Some(body.len() as u64));
        if !self.exchange.head_only {
            bytes.extend_from_slice(body);
        }
        match self.write_raw(&bytes) {
            Ok(()) => Ok(self.finish(status, Ok(()))),
            Err(e) => {
                self.abandon(499);
                Err(e)
            }
        }
    }

    /// Records `code` for the request and closes the connection without an answer.
    pub fn abandon(self, code: u16) {
        self.front
            .service
            .record(self.exchange.label, code, self.exchange.started.elapsed());
        self.close();
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
            let mut size = ChunkSize::default();
            let (size_line, end): (&[u8], &[u8]) = match chunked {
                true => (size.line(n), b"\r\n"),
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
            relay.bytes += n as u64;
        }
        let last: &[u8] = match chunked && relay.source_done {
            true => b"0\r\n\r\n",
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

    fn write_raw_no_flush(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.arm_writes()?;
        self.stream.write_all(bytes)
    }

    /// Records the answer and decides whether the connection goes on.
    fn finish(mut self, status: u16, written: io::Result<()>) -> After {
        let code = if written.is_ok() { status } else { 499 };
        self.front
            .service
            .record(self.exchange.label, code, self.exchange.started.elapsed());
        if written.is_err() || !self.reusable() {
            self.close();
            return After::Kept;
        }
        self.release_buffer();
        After::Next(self)
    }

    /// Closes the connection (TLS: with a close_notify).
    pub fn close(mut self) {
        give_back(std::mem::take(&mut self.buf));
        self.stream.close_notify();
        let _ = self.stream.tcp().shutdown(Shutdown::Both);
    }

    /// Whether the peer hung up (or sent anything, which a client waiting for its answer
    /// never does): checked for parked polls before a scrape is written to one.
    pub fn peer_gone(&self) -> bool {
        let tcp: &TcpStream = self.stream.tcp();
        if self.pos != self.filled || self.stream.revoked().is_some() {
            return true;
        }
        let mut fd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(tcp),
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a zero time-out.
        let ready = unsafe { libc::poll(&mut fd, 1, 0) };
        ready != 0
    }

    /// A place among the parked connections (a poll about to wait), or why there is none
    /// (counted and logged here): the caller answers `503` with the reason.
    pub fn park_share(&self) -> Result<Held, String> {
        self.front.shares.park(self.peer.ip()).map_err(|refusal| {
            self.front.service.refused_share(refusal);
            let why = refusal.explain(&self.front.shares.limits, self.front.limits.max_connections);
            crate::warn_limit::REFUSALS.warn(refusal.label(), || {
                format!("refused a poll from={}: {why}", self.peer)
            });
            why
        })
    }

    /// Hands the connection back to the pool to read its next request.
    pub fn resume(self) {
        let front = Arc::clone(&self.front);
        front.spawn_serving(self);
    }
}

impl Read for Connection {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(out.len());
            out[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Connection {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.filled {
            self.read_more(READ_BUFFER)?;
        }
        Ok(&self.buf[self.pos..self.filled])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.filled);
    }
}

/// A request body being read by a handler, owning its connection.
pub struct RequestBody {
    reader: BodyReader<Connection>,
}

impl RequestBody {
    /// The connection back, after reading what is left of the body (up to 64 KiB); a body
    /// that does not end by then leaves the connection to be closed after its answer.
    pub fn finish(self) -> Connection {
        let mut reader = self.reader;
        let mut drained = 0u64;
        while !reader.is_done() && drained < MAX_DRAIN {
            match reader.fill_buf() {
                Ok([]) | Err(_) => break,
                Ok(data) => {
                    let n = data.len();
                    reader.consume(n);
                    drained += n as u64;
                }
            }
        }
        let done = reader.is_done();
        let mut conn = reader.into_inner();
        if done {
            conn.exchange.body = None;
        }
        conn
    }
}

impl RequestBody {
    /// Moves the time by which the whole body must have arrived.
    pub fn set_read_deadline(&mut self, deadline: Instant) {
        self.reader.get_mut().set_read_deadline(deadline);
    }
}

impl Read for RequestBody {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.reader.read(out)
    }
}

impl BufRead for RequestBody {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.reader.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.reader.consume(n)
    }
}

/// Whether answers of `status` never have a body (RFC 9112 6.3).
fn bodiless(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// The size line of a chunk, `1f40\r\n`, made without an allocation.
#[derive(Default)]
struct ChunkSize([u8; 18]);

impl ChunkSize {
    fn line(&mut self, n: usize) -> &[u8] {
        let mut at = self.0.len() - 2;
        self.0[at..].copy_from_slice(b"\r\n");
        let mut n = n;
        loop {
            at -= 1;
            self.0[at] = b"0123456789abcdef"[n & 0xf];
            n >>= 4;
            if n == 0 {
                return &self.0[at..];
            }
        }
    }
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
    /// Body bytes written.
    pub bytes: u64,
    /// The source reached its end.
    pub source_done: bool,
    /// The source failed (e.g. a push that broke off).
    pub source_error: Option<io::Error>,
    /// Writing to the requester failed (it went away).
    pub sink_error: Option<String>,
}

/// Why no request could be read.
#[derive(Debug)]
pub(super) enum NextError {
    Head(ProtocolError),
    /// The head did not arrive within the read time-out.
    TimedOut,
    /// The peer closed in the middle of a head.
    Closed,
    Io(io::Error),
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// Serves requests on `conn` until it closes, times out, or a handler keeps it.
pub(super) fn serve(mut conn: Connection) {
    loop {
        match conn.next_request() {
            Ok(Some(request)) => {
                // Revocation (issue 16): a kept-alive connection is held to the TLS
                // configuration of now, and lives at most --web.max-connection-age.
                if let Some(why) = conn.stream.revoked() {
                    log::info!(
                        "refused request and closed connection from={}: {why}",
                        conn.peer
                    );
                    conn.exchange.keep_alive = false;
                    let _ = conn.respond(403, &TEXT, format!("{why}\n").as_bytes());
                    return;
                }
                if conn.stream.expired(conn.front.limits.max_connection_age) {
                    conn.exchange.keep_alive = false;
                }
                let service = Arc::clone(&conn.front.service);
                match service.handle(request, conn) {
                    After::Next(next) => conn = next,
                    After::Kept => return,
                }
            }
            Ok(None) => return conn.close(),
            Err(NextError::Head(e)) => {
                log::debug!("refused request from={}: {e}", conn.peer);
                conn.exchange.keep_alive = false;
                let status = e.status();
                let _ = conn.respond(status, &TEXT, format!("{e}\n").as_bytes());
                return;
            }
            Err(NextError::TimedOut) => {
                log::debug!(
                    "closed connection from={}: its request head did not arrive within --web.read-timeout",
                    conn.peer
                );
                conn.exchange.keep_alive = false;
                let reason =
                    "the request head did not arrive within the proxy's --web.read-timeout\n";
                let _ = conn.respond(408, &TEXT, reason.as_bytes());
                return;
            }
            Err(NextError::Closed) => return conn.close(),
            Err(NextError::Io(e)) => {
                log::debug!("connection from={} failed: {e}", conn.peer);
                return conn.close();
            }
        }
    }
}

/// Headers of the plain-text answers.
pub const TEXT: [(&str, &str); 2] = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("X-Content-Type-Options", "nosniff"),
];
