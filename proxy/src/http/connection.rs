//! One client connection: its stream (plain or TLS), the bytes read ahead, the request being
//! answered, and the loop that serves request after request on a pooled thread.
//!
//! A [`Connection`] is a value: a handler may answer it at once, or keep it (a parked poll, a
//! scrape waiting for its push) and answer it later from another thread; [`Connection::resume`]
//! then hands it back to the pool for its next request. Between requests it holds no buffer.
//! Reading a request (head, body, time-outs) is in `read`, writing its answer in `write`.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushprox_daemon::sync::lock;
use pushprox_protocol::{Framing, ProtocolError};

use super::shared::{Shared, Slot};
use super::shares::{Held, ShareRefusal};
use super::tls::{is_timeout, Stream};
use super::RequestHead;

mod read;
mod write;

pub use read::RequestBody;

/// What answers the requests.
pub trait Service: Send + Sync + 'static {
    /// Answers `request`, or keeps the connection to answer it later.
    fn handle(&self, request: Request, conn: Connection) -> After;
    /// Counts an answer: the endpoint's label, its status (499: the requester went away
    /// before it was written) and how long it took from the end of the request head.
    fn record(&self, label: &'static str, status: u16, took: Duration);
    /// Counts a connection refused at `--web.max-connections` or for want of a thread.
    fn refused_busy(&self);
    /// Counts a connection refused its share (per address, or the reserved share).
    fn refused_share(&self, reason: ShareRefusal);
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
// The connection moves by value from handler to handler; boxing it would allocate per request.
#[allow(clippy::large_enum_variant)]
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
    shared: Arc<Shared>,
    service: Arc<dyn Service>,
    _slot: Slot,
    exchange: Exchange,
    /// When the head being read must be complete.
    deadline: Option<Instant>,
    /// The read time-out the socket has now (`None` until one is set: the outer `Option`),
    /// and whether its write time-out is set.
    read_armed: Option<Option<Duration>>,
    write_armed: bool,
}

impl Connection {
    pub(super) fn new(
        stream: Stream,
        peer: SocketAddr,
        shared: Arc<Shared>,
        service: Arc<dyn Service>,
        slot: Slot,
    ) -> Self {
        Connection {
            stream,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            peer,
            shared,
            service,
            _slot: slot,
            exchange: Exchange::idle(),
            deadline: None,
            read_armed: None,
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

    /// Connections open to the front now, parked polls included.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections()
    }

    /// When this request's head was complete.
    pub fn started(&self) -> Instant {
        self.exchange.started
    }

    /// Records `code` for the request and closes the connection without an answer.
    pub fn abandon(self, code: u16) {
        self.service
            .record(self.exchange.label, code, self.exchange.started.elapsed());
        self.close();
    }

    /// Closes the connection (TLS: with a close_notify).
    pub fn close(mut self) {
        read::give_back(std::mem::take(&mut self.buf));
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
        self.shared
            .shares
            .park(self.peer.ip())
            .map_err(|refusal| self.share_refused(refusal, "refused a poll"))
    }

    /// Counts and logs (`what` from=PEER: why) a share refused to this connection; the why.
    pub(super) fn share_refused(&self, refusal: ShareRefusal, what: &str) -> String {
        self.service.refused_share(refusal);
        let why = refusal.explain(
            &self.shared.shares.limits,
            self.shared.limits.max_connections,
        );
        crate::warn_limit::REFUSALS.warn(refusal.label(), || {
            format!("{what} from={}: {why}", self.peer)
        });
        why
    }

    /// Hands the connection back to the pool to read its next request.
    /// When no thread can be started, the connection is closed.
    pub fn resume(self) {
        self.resume_with(After::Next)
    }

    /// On a pooled thread: `answer` the connection, then read its next request. When no
    /// thread can be started, the connection is closed unanswered.
    pub fn resume_with(self, answer: impl FnOnce(Connection) -> After + Send + 'static) {
        let shared = Arc::clone(&self.shared);
        let cell = Arc::new(std::sync::Mutex::new(Some(self)));
        let task_cell = Arc::clone(&cell);
        let started = shared.workers.run(Box::new(move || {
            let conn = lock(&task_cell).take();
            if let Some(After::Next(conn)) = conn.map(answer) {
                serve(conn);
            }
        }));
        if let Err(e) = started {
            log::error!("cannot start a connection thread: {e}; closing a kept-alive connection");
            let conn = lock(&cell).take();
            if let Some(conn) = conn {
                conn.close();
            }
        }
    }
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
    // A request refused here ends the connection with this answer.
    let (status, reason) = loop {
        match conn.next_request() {
            Ok(Some(request)) => {
                // Revocation (issue 16): a kept-alive connection is held to the TLS
                // configuration of now, and lives at most --web.max-connection-age.
                if let Some(why) = conn.stream.revoked() {
                    log::info!(
                        "refused request and closed connection from={}: {why}",
                        conn.peer
                    );
                    break (403, why);
                }
                if conn.stream.expired(conn.shared.limits.max_connection_age) {
                    conn.exchange.keep_alive = false;
                }
                let service = Arc::clone(&conn.service);
                match service.handle(request, conn) {
                    After::Next(next) => conn = next,
                    After::Kept => return,
                }
            }
            Ok(None) | Err(NextError::Closed) => return conn.close(),
            Err(NextError::Head(e)) => {
                log::debug!("refused request from={}: {e}", conn.peer);
                break (e.status(), e.to_string());
            }
            Err(NextError::TimedOut) => {
                log::debug!(
                    "closed connection from={}: its request head did not arrive within --web.read-timeout",
                    conn.peer
                );
                let reason =
                    "the request head did not arrive within the proxy's --web.read-timeout";
                break (408, reason.to_string());
            }
            Err(NextError::Io(e)) => {
                log::debug!("connection from={} failed: {e}", conn.peer);
                return conn.close();
            }
        }
    };
    conn.exchange.keep_alive = false;
    let _ = conn.respond_text(status, &[], &reason);
}
