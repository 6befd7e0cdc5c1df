//! The byte stream under a connection: plain TCP, or TLS (rustls) over it. The handshake runs
//! on the connection's own thread, bounded by the read time-out, so a peer that stalls in it
//! holds only its own thread, and only that long.
//!
//! The TLS configuration is read afresh for each handshake from a [`View`] of the reloaded
//! settings (as exporter-toolkit's `GetConfigForClient`): a rotated certificate is served from
//! the first handshake after the reload. A connection remembers the configuration it was
//! accepted with; once that changed, its client certificate is verified again against the new
//! one before its next request ([`Stream::revoked`]).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::reload::View;
use crate::warn_limit::Throttle;
use pushprox_daemon::sync::lock;

/// How long a handshake may take when `--web.read-timeout` is off.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// A TLS server configuration and the verifier of client certificates inside it (rustls
/// does not hand it out), to verify kept-alive connections again after a change.
pub struct TlsSetup {
    pub config: Arc<ServerConfig>,
    pub verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSetup")
    }
}

/// A connection's stream (boxed: a connection value is moved between threads and queues).
pub struct Stream(Box<Inner>);

struct Inner {
    io: Io,
    accepted: Instant,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<Tls>),
}

struct Tls {
    stream: StreamOwned<ServerConnection, TcpStream>,
    source: View<TlsSetup>,
    /// The configuration the peer's certificate was last verified against.
    checked: Mutex<Arc<TlsSetup>>,
}

impl Stream {
    /// A plain TCP connection, accepted now.
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream(Box::new(Inner {
            io: Io::Plain(tcp),
            accepted: Instant::now(),
        }))
    }

    /// The TCP socket under the stream.
    pub fn tcp(&self) -> &TcpStream {
        match &self.0.io {
            Io::Plain(s) => s,
            Io::Tls(s) => &s.stream.sock,
        }
    }

    /// The certificates the TLS peer presented, end entity first.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match &self.0.io {
            Io::Plain(_) => None,
            Io::Tls(s) => s.stream.conn.peer_certificates(),
        }
    }

    /// Tells a TLS peer the connection ends; nothing for plain TCP.
    pub fn close_notify(&mut self) {
        if let Io::Tls(s) = &mut self.0.io {
            s.stream.conn.send_close_notify();
            let _ = s.stream.conn.write_tls(&mut s.stream.sock);
        }
    }

    /// Whether the connection was accepted `max_age` ago or earlier (zero: no limit).
    pub fn expired(&self, max_age: Duration) -> bool {
        !max_age.is_zero() && self.0.accepted.elapsed() >= max_age
    }

    /// Why this connection may not carry another request: its client certificate no longer
    /// verifies against the TLS configuration loaded since it was accepted (another CA,
    /// `client_allowed_sans`, a certificate now required). `None`: it may go on.
    pub fn revoked(&self) -> Option<String> {
        let Io::Tls(tls) = &self.0.io else {
            return None;
        };
        let now = tls.source.get();
        let mut checked = lock(&tls.checked);
        if Arc::ptr_eq(&now, &checked) {
            return None;
        }
        let verifier = &now.verifier;
        let verdict = match tls.stream.conn.peer_certificates() {
            // The new configuration asks for no certificate: whatever was sent proves nothing
            // that is still required.
            _ if !verifier.offer_client_auth() => Ok(()),
            Some([end_entity, intermediates @ ..]) => verifier
                .verify_client_cert(end_entity, intermediates, UnixTime::now())
                .map(|_| ())
                .map_err(|e| format!("its client certificate no longer verifies: {e}")),
            _ if verifier.client_auth_mandatory() => {
                Err("a client certificate is now required, and it sent none".to_string())
            }
            _ => Ok(()),
        };
        match verdict {
            Ok(()) => {
                *checked = now;
                None
            }
            Err(why) => Some(format!("the TLS configuration changed: {why}")),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.0.io {
            Io::Plain(s) => s.read(buf),
            Io::Tls(s) => match s.stream.read(buf) {
                // A peer that closes without close_notify ends the stream all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0.io {
            Io::Plain(s) => s.write(buf),
            Io::Tls(s) => s.stream.write(buf),
        }
    }

    /// A head and the first body bytes leave in one system call (TLS: in one record run).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.0.io {
            Io::Plain(s) => s.write_vectored(bufs),
            Io::Tls(s) => s.stream.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0.io {
            Io::Plain(s) => s.flush(),
            Io::Tls(s) => {
                let s = &mut s.stream;
                s.flush()?;
                while s.conn.wants_write() {
                    s.conn.write_tls(&mut s.sock)?;
                }
                Ok(())
            }
        }
    }
}

/// Runs the server side of a TLS handshake on `tcp` within `limit` (zero: 10 s), with the
/// configuration `source` holds now.
pub fn accept(source: &View<TlsSetup>, mut tcp: TcpStream, limit: Duration) -> io::Result<Stream> {
    let accepted = Instant::now();
    let limit = Some(limit)
        .filter(|l| !l.is_zero())
        .unwrap_or(HANDSHAKE_LIMIT);
    let deadline = Instant::now() + limit;
    refuse_plain_http(&mut tcp, limit)?;
    let setup = source.get();
    let mut conn = ServerConnection::new(Arc::clone(&setup.config)).map_err(io::Error::other)?;
    let too_slow = || {
        let why = "the TLS handshake did not finish within --web.read-timeout";
        io::Error::new(io::ErrorKind::TimedOut, why)
    };
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(too_slow());
        }
        tcp.set_read_timeout(Some(left))?;
        tcp.set_write_timeout(Some(left))?;
        match conn.complete_io(&mut tcp) {
            Ok((0, 0)) if conn.is_handshaking() => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed during the TLS handshake",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(too_slow()),
            Err(e) => {
                // Tell the peer why, when rustls has an alert for it.
                let _ = conn.write_tls(&mut tcp);
                log_refused_certificate(&tcp, &e);
                return Err(e);
            }
        }
    }
    Ok(Stream(Box::new(Inner {
        io: Io::Tls(Box::new(Tls {
            stream: StreamOwned::new(conn, tcp),
            source: source.clone(),
            checked: Mutex::new(setup),
        })),
        accepted,
    })))
}

/// Whether a socket read or write failed for its time-out (`WouldBlock` where the OS says
/// `EAGAIN`).
pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// What Go's net/http answers to plain HTTP on a TLS port, byte for byte.
const PLAIN_HTTP_ANSWER: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Answers `400` and fails when the peer starts with plain HTTP (a request line begins with
/// an upper-case method; a TLS record with 0x16, or 0x80 for an old SSLv2 hello), so that
/// `curl http://` on the TLS port says what is wrong instead of a handshake failure.
fn refuse_plain_http(tcp: &mut TcpStream, limit: Duration) -> io::Result<()> {
    tcp.set_read_timeout(Some(limit))?;
    let mut first = [0u8; 1];
    let n = loop {
        match tcp.peek(&mut first) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the TLS handshake did not start within --web.read-timeout",
                ))
            }
            Err(e) => return Err(e),
        }
    };
    if n == 1 && first[0].is_ascii_uppercase() {
        // Read what the peer sent of its request, so that closing with unread bytes does not
        // reset the connection before it reads the answer.
        let mut head = vec![0u8; 16 * 1024];
        tcp.set_read_timeout(Some(Duration::from_millis(100)))?;
        let _ = tcp.read(&mut head);
        tcp.set_write_timeout(Some(limit))?;
        let _ = tcp.write_all(PLAIN_HTTP_ANSWER);
        let _ = tcp.shutdown(std::net::Shutdown::Write);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a plain HTTP request on the TLS port (answered 400)",
        ));
    }
    Ok(())
}

/// The last WARN about a refused client certificate, and how many refusals were not logged
/// since: a flood of bad handshakes writes one line per [`REFUSAL_LOG_EVERY`].
static REFUSALS: Mutex<Throttle> = Mutex::new(Throttle::new());
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Logs a handshake refused for its client certificate (missing, not issued by the client
/// CA, outside `client_allowed_sans`, ...) at WARN, at most once per 10 s with a count: the
/// operator sees why a client cannot connect, an attacker cannot fill the log.
fn log_refused_certificate(tcp: &TcpStream, e: &io::Error) {
    let Some(error) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return;
    };
    if !matches!(
        error,
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
    ) {
        return;
    }
    let Some(count) = lock(&REFUSALS).due(Instant::now(), REFUSAL_LOG_EVERY) else {
        return;
    };
    let peer = tcp
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    log::warn!(
        "refused TLS handshake from={peer}: the client certificate: {error} ({count} such refusal(s) in the last {}s, this one included)",
        REFUSAL_LOG_EVERY.as_secs()
    );
}
