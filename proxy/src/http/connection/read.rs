//! Reading a request: its head within the read time-out, its body through the connection's
//! one buffer, and the buffers kept for reuse.

use std::cell::Cell;
use std::io::{self, BufRead, Read};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pushprox_daemon::sync::lock;
use pushprox_protocol::{parse_request, BodyReader, Framing};

use super::super::Version;
use super::{is_disconnect, is_timeout, BodyError, Connection, Exchange, NextError, Request};

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

/// A read buffer: this thread's spare, another kept one, or a new one.
fn take_buffer() -> Vec<u8> {
    let spare = SPARE.with(Cell::take);
    if spare.len() == READ_BUFFER {
        return spare;
    }
    lock(&SPARES).pop().unwrap_or_else(|| vec![0; READ_BUFFER])
}

/// Keeps `buf` for reuse, unless it grew for a large head or enough are kept.
pub(super) fn give_back(buf: Vec<u8>) {
    if buf.len() != READ_BUFFER {
        return;
    }
    let other = SPARE.with(|s| s.replace(buf));
    if other.len() == READ_BUFFER {
        let mut kept = lock(&SPARES);
        if kept.len() < SPARE_BUFFERS {
            kept.push(other);
        }
    }
}

impl Connection {
    pub(super) fn read_timeout(&self) -> Option<Duration> {
        Some(self.shared.limits.read_timeout).filter(|t| !t.is_zero())
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
            (Some(Some(armed)), Some(want)) => armed <= want + REARM_SLACK,
            (Some(None), None) => true,
            _ => false,
        };
        if force || !close_enough {
            self.stream.tcp().set_read_timeout(timeout)?;
            self.read_armed = Some(timeout);
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
        let limits = self.shared.limits.head;
        // Between requests: wait for the first byte as long as a read may take, in the idle
        // share of the peer's address; beyond that share, only a moment (a connection just
        // opened sends its request at once), then the connection is closed.
        if self.pos == self.filled {
            self.deadline = self.read_timeout().map(|t| Instant::now() + t);
            // Held (when it is granted) until the first byte came.
            let idle = self.shared.shares.idle(self.peer.ip());
            if idle.is_err() {
                self.deadline = Some(Instant::now() + OVER_SHARE_GRACE);
            }
            match self.read_more(limits.max_bytes) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    if let Err(refusal) = idle {
                        self.share_refused(refusal, "closed an idle connection");
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
        let connection = head.headers.get("Connection").unwrap_or("");
        let has_token = |t: &str| {
            connection
                .split(',')
                .any(|c| c.trim().eq_ignore_ascii_case(t))
        };
        let http10 = head.version == Version::Http10;
        self.exchange = Exchange {
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
            // Label "other" until routed, started now.
            ..Exchange::idle()
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
        if matches!(framing, Framing::Length(n) if n > limit) {
            return Err(BodyError::TooLarge { limit });
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
    /// body too large to hold; [`Connection::finish_body`] gives the connection back. When the
    /// `100 Continue` a client waits for cannot be written, the connection is closed.
    pub fn into_body(mut self, limit: Option<u64>) -> Result<RequestBody, BodyError> {
        if let Err(e) = self.continue_if_expected() {
            self.abandon(499);
            return Err(BodyError::Broken(e.to_string()));
        }
        let framing = self.body_framing();
        Ok(BodyReader::new(self, framing, limit))
    }

    /// The connection back, after reading what is left of its body (up to 64 KiB); a body
    /// that does not end by then leaves the connection to be closed after its answer.
    pub fn finish_body(mut reader: RequestBody) -> Connection {
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

    /// Frees the read buffer once nothing is read ahead, so an idle or parked connection
    /// holds no buffer.
    pub(super) fn release_buffer(&mut self) {
        if self.pos == self.filled {
            give_back(std::mem::take(&mut self.buf));
            self.pos = 0;
            self.filled = 0;
        }
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

/// A request body being read by a handler: the codec's body reader over the connection that
/// owns it; [`Connection::finish_body`] gives the connection back.
pub type RequestBody = BodyReader<Connection>;
