//! The TCP connections under both agents, in place of ureq's own: the same connect, the same
//! time-outs, fewer system calls per request. A scrape is three requests (the poll, the
//! target's, the push); on ureq's connections a scrape took 48 system calls (8 scrapers
//! through one client), 26 of them probes and time-out changes, 7 of them sends:
//!
//! - a request's head is held until its body (or the wait for the answer) and leaves with it in
//!   one `writev`, where ureq sends head and body apart;
//! - a socket time-out is changed only when it no longer fits the time left: at most that time
//!   (a read or write never outlasts its deadline) and more than a 64th of it; a wait that
//!   ends early for that is resumed with the time then left. ureq sets the exact time left
//!   before every read and write, as it changes from one to the next;
//! - whether an idle connection is still open is one `recv(MSG_PEEK | MSG_DONTWAIT)`, asked
//!   when it is taken from the pool, where ureq switches the socket to non-blocking and back
//!   around a read, also as the connection goes back.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    RustlsConnector, ShutdownHandle, Transport,
};
use ureq::{Error, Timeout};

/// Writes up to this size (a request head, a poll's body) wait for the next write or for the
/// wait for the answer, and leave with it.
const HELD_BACK_MAX: usize = 4096;

/// The connectors of an agent: through an HTTP CONNECT proxy if the agent has one, then TCP,
/// then TLS for https URLs; ureq's default chain with our [`TcpConnector`].
pub fn connectors() -> impl Connector<(), Out = impl Transport> {
    ().chain(ConnectProxyConnector::default())
        .chain(TcpConnector)
        .chain(RustlsConnector::default())
}

/// Opens plain TCP connections, unless an earlier connector of the chain (an HTTP CONNECT
/// proxy) already made one.
#[derive(Debug, Default)]
pub struct TcpConnector;

impl<In: Transport> Connector<In> for TcpConnector {
    type Out = Either<In, TcpTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        if let Some(chained) = chained {
            return Ok(Some(Either::A(chained)));
        }
        let stream = Arc::new(connect(details)?);
        if details.config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let handle: Arc<dyn ShutdownHandle> = stream.clone();
        (details.register_shutdown)(Arc::downgrade(&handle))?;
        Ok(Some(Either::B(TcpTransport {
            stream,
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            held: Vec::new(),
            read_timeout: SocketTimeout::default(),
            write_timeout: SocketTimeout::default(),
            answer_read: false,
        })))
    }
}

/// Tries the resolved addresses in turn, as ureq does: the first gets half the connect
/// time-out, the next a quarter, and so on (a single address all of it); an address refused
/// or unreachable passes to the next one.
fn connect(details: &ConnectionDetails) -> Result<TcpStream, Error> {
    let addrs: Vec<SocketAddr> = details.addrs.iter().copied().collect();
    let total = details.timeout.not_zero().map(|d| *d);
    let started = Instant::now();
    let weights: f64 = (0..addrs.len()).map(|i| 0.5f64.powi(i as i32)).sum();
    let mut last = None;
    for (i, addr) in addrs.iter().enumerate() {
        let attempt = match total {
            Some(total) => {
                let share = total.as_secs_f64() * 0.5f64.powi(i as i32) / weights;
                TcpStream::connect_timeout(addr, Duration::from_secs_f64(share).max(MIN_ATTEMPT))
            }
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                if total.is_some_and(|total| started.elapsed() > total) {
                    return Err(Error::Timeout(details.timeout.reason));
                }
                last = Some(Error::Timeout(Timeout::Connect));
            }
            Err(e) if tries_next_address(&e) => last = Some(Error::Io(e)),
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Err(last.unwrap_or_else(|| Error::Io(io::ErrorKind::ConnectionRefused.into())))
}

/// The least time one address is given.
const MIN_ATTEMPT: Duration = Duration::from_millis(10);

/// Failures that concern one address only: the next one may still work (an IPv6 address
/// without an IPv6 route, say).
fn tries_next_address(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::AddrNotAvailable
    )
}

/// One TCP connection and its buffers.
pub struct TcpTransport {
    /// Shared with the agent's shutdown handle, which can shut it down while in use.
    stream: Arc<TcpStream>,
    buffers: LazyBuffers,
    /// Output handed over but not sent yet (at most [`HELD_BACK_MAX`] bytes).
    held: Vec<u8>,
    read_timeout: SocketTimeout,
    write_timeout: SocketTimeout,
    /// An answer was read since the last liveness probe.
    answer_read: bool,
}

impl fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpTransport")
            .field("peer", &self.stream.peer_addr().ok())
            .finish()
    }
}

/// The time an I/O call may take: `None` for no limit; a timeout error when none is left.
fn budget(timeout: NextTimeout) -> Result<Option<Duration>, Error> {
    if timeout.after.is_zero() {
        return Err(Error::Timeout(timeout.reason));
    }
    Ok(timeout.not_zero().map(|d| *d))
}

/// What is left of `budget` since `started`; a timeout error when nothing is.
fn time_left(
    budget: Option<Duration>,
    started: Instant,
    reason: Timeout,
) -> Result<Option<Duration>, Error> {
    match budget {
        None => Ok(None),
        Some(budget) => match budget.checked_sub(started.elapsed()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(Error::Timeout(reason)),
        },
    }
}

/// Whether an I/O error only says that the socket's time-out (or a signal) ended the wait: the
/// caller waits on with the time left, or reports the time-out if there is none.
fn wait_ended(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

impl TcpTransport {
    /// Sends what is held back, then `output[..amount]`, all of it, within `timeout`.
    fn send(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let timeout = timeout.for_write();
        let budget = budget(timeout)?;
        let started = Instant::now();
        let output = &self.buffers.output()[..amount];
        let total = self.held.len() + amount;
        let mut sent = 0;
        while sent < total {
            let left = time_left(budget, started, timeout.reason)?;
            self.write_timeout
                .fit(left, |t| self.stream.set_write_timeout(t))?;
            let (held, output) = match sent.checked_sub(self.held.len()) {
                None => (&self.held[sent..], output),
                Some(past) => (&[][..], &output[past..]),
            };
            match (&*self.stream).write_vectored(&[IoSlice::new(held), IoSlice::new(output)]) {
                Ok(0) => return Err(Error::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => sent += n,
                // Waited the time-out set, less than the time left: set the time left.
                Err(e) if wait_ended(&e) => self.write_timeout = SocketTimeout::default(),
                Err(e) => return Err(Error::Io(e)),
            }
        }
        self.held.clear();
        Ok(())
    }
}

impl Transport for TcpTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        if self.held.is_empty() && amount <= HELD_BACK_MAX {
            // An HTTP/1 client writes its whole request before it reads: this goes out with
            // the next write or before the first read, whichever comes first.
            self.held
                .extend_from_slice(&self.buffers.output()[..amount]);
            return Ok(());
        }
        self.send(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        if !self.held.is_empty() {
            self.send(0, timeout)?;
        }
        let timeout = timeout.for_read();
        let budget = budget(timeout)?;
        let started = Instant::now();
        let input = self.buffers.input_append_buf();
        let read = loop {
            let left = time_left(budget, started, timeout.reason)?;
            let stream = &self.stream;
            self.read_timeout
                .fit(left, |t| stream.set_read_timeout(t))?;
            match (&**stream).read(input) {
                Ok(n) => break n,
                Err(e) if wait_ended(&e) => self.read_timeout = SocketTimeout::default(),
                Err(e) => return Err(Error::Io(e)),
            }
        };
        self.buffers.input_appended(read);
        self.answer_read = true;
        Ok(read > 0)
    }

    /// Open, with nothing unasked-for waiting to be read. ureq asks twice between two uses of a
    /// connection: as it goes back to the pool, just after its answer was read, and as it is
    /// taken again; the second probe finds whatever the first would have (the peer closed, or
    /// sent more than its answer), and later, so only the second one looks.
    fn is_open(&mut self) -> bool {
        if std::mem::take(&mut self.answer_read) {
            return true;
        }
        let mut byte = 0u8;
        // SAFETY: recv writes at most 1 byte into `byte`, which lives across the call; the
        // descriptor is owned by `self.stream`, open for the call's duration.
        let n = unsafe {
            libc::recv(
                self.stream.as_raw_fd(),
                (&raw mut byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }
}

/// What a socket's `SO_RCVTIMEO` or `SO_SNDTIMEO` is set to (`None`: not known, or none).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct SocketTimeout(Option<Duration>);

impl SocketTimeout {
    /// Makes the time-out fit `left` with `set`, unless it fits already: at most `left`, and
    /// more than a 64th of it (a poll's 200 s and a push's 5 s and more fit the same one). A
    /// new one is the largest power of two milliseconds within `left` (or `left` itself, under
    /// a millisecond), so that it keeps fitting the next requests' times left, which are much
    /// alike. With no limit (`None`) any time-out fits: it only ends a wait early, and the wait
    /// is resumed.
    fn fit(
        &mut self,
        left: Option<Duration>,
        set: impl FnOnce(Option<Duration>) -> io::Result<()>,
    ) -> io::Result<()> {
        let wanted = match (left, self.0) {
            (None, _) => return Ok(()),
            (Some(left), Some(now)) if now <= left && now > left / 64 => return Ok(()),
            (Some(left), _) => power_of_two_millis(left),
        };
        set(Some(wanted))?;
        self.0 = Some(wanted);
        Ok(())
    }
}

/// The largest power of two milliseconds not above `d`; `d` itself below a millisecond.
fn power_of_two_millis(d: Duration) -> Duration {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match ms {
        0 => d,
        _ => Duration::from_millis(1 << (63 - ms.leading_zeros())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    use ureq::unversioned::transport::time;

    /// A transport on a loopback connection, and the peer's end of it.
    fn connected() -> (TcpTransport, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        let transport = TcpTransport {
            stream: Arc::new(stream),
            buffers: LazyBuffers::new(64 * 1024, 64 * 1024),
            held: Vec::new(),
            read_timeout: SocketTimeout::default(),
            write_timeout: SocketTimeout::default(),
            answer_read: false,
        };
        (transport, peer)
    }

    fn within(d: Duration) -> NextTimeout {
        NextTimeout {
            after: time::Duration::Exact(d),
            reason: Timeout::Global,
            per_read: None,
            per_write: None,
        }
    }

    fn transmit(t: &mut TcpTransport, bytes: &[u8]) {
        t.buffers().output()[..bytes.len()].copy_from_slice(bytes);
        t.transmit_output(bytes.len(), within(Duration::from_secs(5)))
            .unwrap();
    }

    /// What the peer can read now, without waiting.
    fn readable_now(peer: &mut TcpStream) -> Vec<u8> {
        peer.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match peer.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        peer.set_nonblocking(false).unwrap();
        got
    }

    #[test]
    fn a_head_waits_for_its_body_or_for_the_read_of_the_answer() {
        let (mut t, mut peer) = connected();
        transmit(&mut t, b"POST /poll HTTP/1.1\r\ncontent-length: 4\r\n\r\n");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(readable_now(&mut peer), b"");
        transmit(&mut t, b"node");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            readable_now(&mut peer),
            b"POST /poll HTTP/1.1\r\ncontent-length: 4\r\n\r\nnode"
        );
        // A request without a body leaves when its answer is awaited.
        transmit(&mut t, b"GET / HTTP/1.1\r\n\r\n");
        peer.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        assert!(t.await_input(within(Duration::from_secs(5))).unwrap());
        assert_eq!(t.buffers().input(), b"HTTP/1.1 200 OK\r\n");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(readable_now(&mut peer), b"GET / HTTP/1.1\r\n\r\n");
        // A large write goes at once, behind what was held.
        transmit(&mut t, b"head");
        let body = vec![b'x'; 10_000];
        transmit(&mut t, &body);
        let mut got = vec![0u8; 10_004];
        peer.read_exact(&mut got).unwrap();
        assert!(got.starts_with(b"headxxx") && got.ends_with(b"xxx"));
    }

    #[test]
    fn a_wait_ended_early_by_the_socket_time_out_goes_on_until_the_answer() {
        let (mut t, mut peer) = connected();
        // A time-out of 100 ms fits the 2 s left, so it is kept: the read wakes early.
        t.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        t.read_timeout = SocketTimeout(Some(Duration::from_millis(100)));
        let answer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            peer.write_all(b"late").unwrap();
            peer
        });
        let started = Instant::now();
        assert!(t.await_input(within(Duration::from_secs(2))).unwrap());
        assert_eq!(t.buffers().input(), b"late");
        assert!(started.elapsed() >= Duration::from_millis(400));
        drop(answer.join().unwrap());
    }

    #[test]
    fn no_answer_within_the_time_left_is_a_timeout_at_the_deadline() {
        let (mut t, _peer) = connected();
        let started = Instant::now();
        let result = t.await_input(within(Duration::from_millis(300)));
        let took = started.elapsed();
        assert!(
            matches!(result, Err(Error::Timeout(Timeout::Global))),
            "{result:?}"
        );
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn an_idle_connection_is_open_until_closed_or_sent_unasked_bytes() {
        let (mut t, peer) = connected();
        assert!(t.is_open());
        assert!(t.is_open(), "the probe consumed nothing");
        drop(peer);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_open());

        let (mut t, mut peer) = connected();
        peer.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_open());
    }

    #[test]
    fn after_an_answer_only_the_probe_of_the_connection_taken_again_looks() {
        let (mut t, mut peer) = connected();
        peer.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert!(t.await_input(within(Duration::from_secs(5))).unwrap());
        // The peer sends more than its answer, and closes.
        peer.write_all(b"junk").unwrap();
        drop(peer);
        std::thread::sleep(Duration::from_millis(50));
        assert!(t.is_open(), "back to the pool: not probed");
        assert!(!t.is_open(), "taken from the pool: probed");
    }

    fn fitted(start: Option<Duration>, left: Option<Duration>) -> (Option<Duration>, bool) {
        let mut timeout = SocketTimeout(start);
        let mut called = false;
        timeout
            .fit(left, |_| {
                called = true;
                Ok(())
            })
            .unwrap();
        (timeout.0, called)
    }

    #[test]
    fn a_time_out_that_fits_the_time_left_is_kept() {
        let ms = Duration::from_millis;
        // Fresh deadlines of the same kind keep the one set before: no system call.
        assert_eq!(
            fitted(Some(ms(8192)), Some(ms(14_990))),
            (Some(ms(8192)), false)
        );
        assert_eq!(
            fitted(Some(ms(8192)), Some(ms(8192))),
            (Some(ms(8192)), false)
        );
        assert_eq!(
            fitted(Some(ms(8192)), Some(ms(131_000))),
            (Some(ms(8192)), false)
        );
        assert_eq!(fitted(None, None), (None, false));
        // No limit: the time-out set only ends waits early, and they are resumed.
        assert_eq!(fitted(Some(ms(8)), None), (Some(ms(8)), false));
    }

    #[test]
    fn a_time_out_beyond_the_time_left_or_far_below_it_is_changed() {
        let ms = Duration::from_millis;
        // Beyond the time left: a wait could outlast the deadline.
        assert_eq!(
            fitted(Some(ms(8192)), Some(ms(8191))),
            (Some(ms(4096)), true)
        );
        assert_eq!(fitted(None, Some(ms(15_000))), (Some(ms(8192)), true));
        // A 64th or less of the time left: too many early wake-ups.
        assert_eq!(
            fitted(Some(ms(2048)), Some(ms(200_000))),
            (Some(ms(131_072)), true)
        );
        assert_eq!(
            fitted(Some(ms(4096)), Some(ms(200_000))),
            (Some(ms(4096)), false)
        );
        // Under a millisecond: exactly the time left.
        let us = Duration::from_micros(700);
        assert_eq!(fitted(Some(ms(1)), Some(us)), (Some(us), true));
    }
}
