//! The accept loop and what every connection shares: the service that answers requests, the
//! limits, the TLS configuration and the count of open connections.
//!
//! The loop only accepts: each connection is served on a pooled thread (TLS handshake, then
//! request after request). Every connection holds a [`Slot`] from accept to close, so
//! `--web.max-connections` bounds what is open, parked polls included. Running out of file
//! descriptors or threads refuses connections and never stops the loop.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::connection::{self, After, Connection, Request};
use super::shares::{ShareRefusal, Shares};
use super::tls::{self, Stream, TlsSetup};
use super::HeadLimits;
use crate::reload::View;
use pushprox_daemon::workers::Workers;

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

/// The limits every connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub head: HeadLimits,
    /// Longest wait for the next request, for a whole head once it started, for each read of
    /// a body and each write; zero: none.
    pub read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// After this long from its accept, a connection's next answer closes it; zero: never.
    pub max_connection_age: Duration,
}

/// How long an idle connection thread waits for work before it ends.
const WORKER_IDLE: Duration = Duration::from_secs(2);
/// Stack of each connection thread: heads and bodies are read into heap buffers.
const CONNECTION_STACK: usize = 128 * 1024;
/// How long the accept loop waits for a connection before it looks at `stop` again.
const ACCEPT_TICK: Duration = Duration::from_millis(100);
/// Longest pause of the accept loop when accepting fails for want of resources.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Why a connection that cannot be served now is refused.
const BUSY: &str =
    "the proxy is at its connection limit (--web.max-connections or open files); retry shortly\n";

/// What every connection shares.
pub struct Front {
    pub(super) service: Arc<dyn Service>,
    pub(super) limits: Limits,
    /// Headers added to every answer (`http_server_config.headers`), as last reloaded.
    extra_headers: View<Vec<(String, String)>>,
    /// The TLS configuration of each new handshake, as last reloaded; `None`: plain HTTP.
    tls: Option<View<TlsSetup>>,
    workers: Workers,
    open: Arc<AtomicUsize>,
    pub(super) shares: Shares,
}

/// One open connection's place under `--web.max-connections`; freed when dropped.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Front {
    pub fn new(
        service: Arc<dyn Service>,
        limits: Limits,
        tls: Option<View<TlsSetup>>,
        extra_headers: View<Vec<(String, String)>>,
        shares: Shares,
    ) -> Arc<Front> {
        Arc::new(Front {
            service,
            limits,
            extra_headers,
            tls,
            workers: Workers::new("connection", CONNECTION_STACK, WORKER_IDLE),
            open: Arc::new(AtomicUsize::new(0)),
            shares,
        })
    }

    /// Connections open now, parked polls included.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// The headers added to every answer.
    pub(super) fn extra_headers(&self) -> Arc<Vec<(String, String)>> {
        self.extra_headers.get()
    }

    fn take_slot(&self) -> Option<Slot> {
        let max = self.limits.max_connections;
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(&self.open)))
    }

    /// Serves `conn`'s next requests on a pooled thread; closes it when none can be started.
    pub(super) fn spawn_serving(self: Arc<Self>, conn: Connection) {
        let cell = Arc::new(Mutex::new(Some(conn)));
        let task_cell = Arc::clone(&cell);
        let started = self.workers.run(Box::new(move || {
            let conn = task_cell.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(conn) = conn {
                connection::serve(conn);
            }
        }));
        if let Err(e) = started {
            log::error!("cannot start a connection thread: {e}; closing a kept-alive connection");
            let conn = cell.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(conn) = conn {
                conn.close();
            }
        }
    }

    /// Starts serving a connection just accepted.
    fn start(self: &Arc<Self>, tcp: TcpStream, slot: Slot) {
        let front = Arc::clone(self);
        let cell = Arc::new(Mutex::new(Some((tcp, slot))));
        let task_cell = Arc::clone(&cell);
        let started = self.workers.run(Box::new(move || {
            let taken = task_cell.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some((tcp, slot)) = taken {
                front.open_and_serve(tcp, slot);
            }
        }));
        if let Err(e) = started {
            self.service.refused_busy();
            log::error!("cannot start a connection thread: {e} (thread or memory limit); refusing the connection with 503");
            if let Some((tcp, _slot)) = cell.lock().unwrap_or_else(|p| p.into_inner()).take() {
                refuse_busy(tcp);
            }
        }
    }

    /// On the connection's thread: the TLS handshake, then its requests.
    fn open_and_serve(self: Arc<Self>, tcp: TcpStream, slot: Slot) {
        let peer = match tcp.peer_addr() {
            Ok(p) => p,
            Err(_) => return,
        };
        let stream = match &self.tls {
            None => Stream::plain(tcp),
            Some(source) => match tls::accept(source, tcp, self.limits.read_timeout) {
                Ok(stream) => stream,
                Err(e) => {
                    log::debug!("TLS handshake with {peer} failed: {e}");
                    return;
                }
            },
        };
        connection::serve(Connection::new(stream, peer, self, slot));
    }

    /// Accepts connections on `listener` until `stop` says so.
    pub fn run(
        self: &Arc<Self>,
        listener: &TcpListener,
        stop: impl Fn() -> bool,
    ) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let mut backoff = Duration::ZERO;
        let mut last_warning: Option<Instant> = None;
        while !stop() {
            if !readable(listener, ACCEPT_TICK) {
                continue;
            }
            match listener.accept() {
                Ok((tcp, _)) => {
                    backoff = Duration::ZERO;
                    let _ = tcp.set_nonblocking(false);
                    let _ = tcp.set_nodelay(true);
                    match self.take_slot() {
                        Some(slot) => self.start(tcp, slot),
                        None => {
                            self.service.refused_busy();
                            if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                                last_warning = Some(Instant::now());
                                log::warn!(
                                    "at the connection limit ({}, from --web.max-connections and the open-files limit): refusing new connections with 503",
                                    self.limits.max_connections
                                );
                            }
                            refuse_busy(tcp);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if out_of_resources(&e) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_BACKOFF);
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        last_warning = Some(Instant::now());
                        log::warn!(
                            "accepting connections failed: {e}; waiting {}ms before accepting again (raise the open-files limit: ulimit -n, systemd LimitNOFILE=)",
                            backoff.as_millis()
                        );
                    }
                    thread::sleep(backoff);
                }
                // The peer went away between its SYN and our accept, and the like.
                Err(e) => log::debug!("accept failed: {e}"),
            }
        }
        Ok(())
    }
}

/// Whether `listener` has a connection waiting, within `wait`.
fn readable(listener: &TcpListener, wait: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut fd, 1, ms) > 0 }
}

fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Answers 503 without waiting for the peer, and closes.
fn refuse_busy(mut tcp: TcpStream) {
    let _ = tcp.set_nonblocking(true);
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{BUSY}",
        BUSY.len()
    );
    let _ = tcp.write(answer.as_bytes());
}
