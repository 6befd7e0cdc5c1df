//! The accept loop: each connection accepted gets its place under the connection limit, a
//! pooled thread, its TLS handshake, and the service that answers its requests.
//!
//! The loop only accepts: each connection is served on a pooled thread (TLS handshake, then
//! request after request). Every connection holds a [`Slot`] from accept to close, so
//! `--web.max-connections` bounds what is open, parked polls included. Running out of file
//! descriptors or threads refuses connections and never stops the loop.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::connection::{self, Connection, Service};
use super::shared::{Limits, Shared, Slot};
use super::shares::Shares;
use super::tls::{self, Stream, TlsSetup};
use crate::reload::View;
use pushprox_daemon::sync::lock;

/// How long the accept loop waits for a connection before it looks at `stop` again.
const ACCEPT_TICK: Duration = Duration::from_millis(100);
/// Longest pause of the accept loop when accepting fails for want of resources.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Why a connection that cannot be served now is refused.
const BUSY: &str =
    "the proxy is at its connection limit (--web.max-connections or open files); retry shortly\n";

/// The listening side of the front: what each accepted connection is given.
pub struct Front {
    shared: Arc<Shared>,
    service: Arc<dyn Service>,
    /// The TLS configuration of each new handshake, as last reloaded; `None`: plain HTTP.
    tls: Option<View<TlsSetup>>,
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
            shared: Arc::new(Shared::new(limits, extra_headers, shares)),
            service,
            tls,
        })
    }

    /// Starts serving a connection just accepted.
    fn start(self: &Arc<Self>, tcp: TcpStream, slot: Slot) {
        let front = Arc::clone(self);
        let cell = Arc::new(Mutex::new(Some((tcp, slot))));
        let task_cell = Arc::clone(&cell);
        let started = self.shared.workers.run(Box::new(move || {
            let taken = lock(&task_cell).take();
            if let Some((tcp, slot)) = taken {
                front.open_and_serve(tcp, slot);
            }
        }));
        if let Err(e) = started {
            self.service.refused_busy();
            log::error!("cannot start a connection thread: {e} (thread or memory limit); refusing the connection with 503");
            if let Some((tcp, _slot)) = lock(&cell).take() {
                refuse_busy(tcp);
            }
        }
    }

    /// On the connection's thread: the TLS handshake, then its requests.
    fn open_and_serve(self: Arc<Self>, tcp: TcpStream, slot: Slot) {
        let Ok(peer) = tcp.peer_addr() else {
            return;
        };
        let stream = match &self.tls {
            None => Stream::plain(tcp),
            Some(source) => match tls::accept(source, tcp, self.shared.limits.read_timeout) {
                Ok(stream) => stream,
                Err(e) => {
                    log::debug!("TLS handshake with {peer} failed: {e}");
                    return;
                }
            },
        };
        let (shared, service) = (Arc::clone(&self.shared), Arc::clone(&self.service));
        connection::serve(Connection::new(stream, peer, shared, service, slot));
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
                    match self.shared.take_slot() {
                        Some(slot) => self.start(tcp, slot),
                        None => {
                            self.service.refused_busy();
                            if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                                last_warning = Some(Instant::now());
                                log::warn!(
                                    "at the connection limit ({}, from --web.max-connections and the open-files limit): refusing new connections with 503",
                                    self.shared.limits.max_connections
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
