//! The listening socket. Bound here, not by tiny_http, because tiny_http has no time-outs:
//! SO_RCVTIMEO and SO_SNDTIMEO set on the listening socket are copied by Linux to every
//! socket `accept` returns (checked by `accepted_sockets_inherit_the_time_outs` below), so
//! each connection gets them without tiny_http knowing.
//!
//! The catch: SO_RCVTIMEO also bounds `accept` itself, which then fails with EAGAIN after
//! that long without a new connection (`accept_times_out_too` below), and tiny_http's accept
//! thread stops at its first error. [`keep_accepting`] connects to the listener a little
//! more often than that, so `accept` always returns in time; the server loop restarts the accept thread
//! should it stop anyway.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

#[cfg(target_os = "linux")]
mod sys {
    use std::os::raw::{c_int, c_long, c_void};

    pub const SOL_SOCKET: c_int = 1;
    pub const SO_RCVTIMEO: c_int = 20;
    pub const SO_SNDTIMEO: c_int = 21;
    pub const IPPROTO_TCP: c_int = 6;
    pub const TCP_NODELAY: c_int = 1;

    #[repr(C)]
    pub struct Timeval {
        pub tv_sec: c_long,
        pub tv_usec: c_long,
    }

    extern "C" {
        pub fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
    }
}

/// Binds `addr` and gives the socket (and so every accepted connection) read and write
/// time-outs of `timeout`; zero leaves them off.
pub fn bind(addr: &str, timeout: Duration) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    set_nodelay(&listener)?;
    if !timeout.is_zero() {
        set_timeouts(&listener, timeout)?;
    }
    Ok(listener)
}

/// Where to connect to reach `bound` from this host: loopback for a wildcard address.
fn reachable(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// How often the keeper looks for starved connections.
const SCAN_EVERY: Duration = Duration::from_millis(200);
/// Longest time between two looks at /proc/net/tcp while connections are being accepted.
const MAX_LOOK_EVERY: Duration = Duration::from_secs(1);
/// Most empty connections opened in one round.
const MAX_NUDGES: usize = 512;

/// Works around two flaws of tiny_http 0.12 that its users cannot fix from outside:
///
/// - Its accept thread stops at the first error, and with SO_RCVTIMEO set `accept` fails
///   after `timeout` without a connection: an empty connection at least that often
///   prevents it.
/// - Its connection pool queues a new connection whenever one of its threads is idle, even
///   when a burst brings more connections than there are idle threads; the surplus then
///   waits until some thread's connection ends, which for keep-alive clients with a parked
///   poll may be never (a Go client would hang for good after a proxy restart). Such a
///   connection is visible in /proc/net/tcp: established, with received bytes nobody reads.
///   An empty connection arriving while no thread is idle makes the pool start a thread,
///   which takes the oldest queued connection once the empty one ends; so for each
///   connection found starved in two scans in a row, the keeper opens one empty connection.
///   (Over TLS tiny_http does the handshake on its accept thread, an empty connection never
///   reaches the pool, and only the first point holds.)
pub fn keep_accepting(bound: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    let target = reachable(bound);
    // Well inside the time-out: a loaded machine may run this thread late.
    let keep_alive_every =
        (!timeout.is_zero()).then(|| (timeout / 4).max(Duration::from_millis(20)));
    let tick = keep_alive_every.map_or(SCAN_EVERY, |e| (e / 2).min(SCAN_EVERY));
    let nudge = move || {
        if let Err(e) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            log::debug!("accept keeper could not connect to {target}: {e}");
        }
    };
    thread::Builder::new()
        .name("accept-keeper".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut last_connect = std::time::Instant::now();
            let mut unread_before: Vec<u64> = Vec::new();
            let mut opens_before = passive_opens();
            let mut last_look = std::time::Instant::now();
            let mut look_every = tick;
            while !pushprox_daemon::signals::requested() {
                thread::sleep(tick);
                // Reading /proc/net/tcp walks every socket of the host (under load it took a
                // tenth of the CPU): look only when new connections were accepted or the last
                // look saw unread bytes, and then only once `look_every` has passed.
                let opens = passive_opens();
                let look = (opens.is_none() || opens != opens_before || !unread_before.is_empty())
                    && last_look.elapsed() >= look_every;
                if look {
                    opens_before = opens;
                    last_look = std::time::Instant::now();
                    let unread = unread_connections(bound);
                    let starved = unread.iter().filter(|i| unread_before.contains(i)).count();
                    // Soon again after starved connections, or to confirm a first sighting of
                    // unread bytes; otherwise less and less often, up to MAX_LOOK_EVERY: under
                    // load some request is nearly always being read, and those come and go.
                    let first_sighting = unread_before.is_empty() && !unread.is_empty();
                    look_every = if starved > 0 || first_sighting {
                        tick
                    } else {
                        (look_every * 2).min(MAX_LOOK_EVERY)
                    };
                    if starved > 0 {
                        log::debug!("{starved} connection(s) waiting in tiny_http's queue; starting threads for them");
                        for _ in 0..starved.min(MAX_NUDGES) {
                            nudge();
                        }
                        last_connect = std::time::Instant::now();
                    }
                    unread_before = unread;
                }
                if keep_alive_every.is_some_and(|every| last_connect.elapsed() >= every) {
                    nudge();
                    last_connect = std::time::Instant::now();
                }
            }
        })
        .map(|_| ())
}

/// Connections accepted by any process of this network namespace so far (TCP PassiveOpens of
/// /proc/net/snmp, IPv4 and IPv6 alike); None where it cannot be read, which makes every tick
/// look.
fn passive_opens() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let column = names.split_whitespace().position(|n| n == "PassiveOpens")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

/// Inodes of established connections to the listener bound to `bound` with received bytes
/// not yet read.
///
/// Only the table of the listener's family is read (connections accepted by a `[::]`
/// listener are IPv6 sockets, IPv4 ones included): each table walks every socket of the host.
/// It is read a line at a time into one buffer: with 10,000 clients it is 3 MB, and a scan
/// must not cost the proxy that much memory each time it runs.
fn unread_connections(bound: SocketAddr) -> Vec<u64> {
    use std::io::BufRead;
    let port = bound.port();
    let table = if bound.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let mut out = Vec::new();
    let Ok(file) = std::fs::File::open(table) else {
        return out;
    };
    let mut reader = std::io::BufReader::with_capacity(16 * 1024, file);
    let mut line = String::with_capacity(256);
    let mut header = true;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if std::mem::take(&mut header) {
            continue;
        }
        if let Some(inode) = unread_inode(&line, port) {
            out.push(inode);
        }
    }
    out
}

/// The socket inode of one `/proc/net/tcp` line if it is an established connection to local
/// `port` with bytes in its receive queue.
fn unread_inode(line: &str, port: u16) -> Option<u64> {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    let mut f = line.split_whitespace();
    let local = f.nth(1)?;
    let state = f.nth(1)?;
    let queues = f.next()?;
    let inode = f.nth(4)?;
    let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
    let rx_waiting = queues
        .split(':')
        .nth(1)
        .is_some_and(|rx| rx.bytes().any(|b| b != b'0'));
    if local_port == port && state == "01" && rx_waiting {
        inode.parse().ok()
    } else {
        None
    }
}

#[cfg(target_os = "linux")]
fn set_timeouts(listener: &TcpListener, timeout: Duration) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let tv = sys::Timeval {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as _,
        tv_usec: timeout.subsec_micros() as _,
    };
    for option in [sys::SO_RCVTIMEO, sys::SO_SNDTIMEO] {
        // SAFETY: the fd is open for the listener's lifetime; tv outlives the call and its
        // size is passed with it.
        let rc = unsafe {
            sys::setsockopt(
                listener.as_raw_fd(),
                sys::SOL_SOCKET,
                option,
                (&tv as *const sys::Timeval).cast(),
                std::mem::size_of::<sys::Timeval>() as u32,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Turns off Nagle's algorithm for every accepted connection (Linux copies TCP_NODELAY from
/// the listener too): the last small write of a relayed response would otherwise wait for
/// the peer's delayed ACK, about 40 ms per scrape on a keep-alive connection.
#[cfg(target_os = "linux")]
fn set_nodelay(listener: &TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: std::os::raw::c_int = 1;
    // SAFETY: the fd is open; `one` outlives the call and its size is passed with it.
    let rc = unsafe {
        sys::setsockopt(
            listener.as_raw_fd(),
            sys::IPPROTO_TCP,
            sys::TCP_NODELAY,
            (&one as *const std::os::raw::c_int).cast(),
            std::mem::size_of::<std::os::raw::c_int>() as u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_nodelay(_listener: &TcpListener) -> std::io::Result<()> {
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_timeouts(_listener: &TcpListener, _timeout: Duration) -> std::io::Result<()> {
    log::warn!("--web.read-timeout is only applied on Linux; connections have no time-out here");
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::Instant;

    #[test]
    fn accepted_sockets_inherit_the_time_outs() {
        let listener = bind("127.0.0.1:0", Duration::from_millis(300)).unwrap();
        let _peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        // std reads these back with getsockopt on the accepted socket.
        assert_eq!(
            accepted.read_timeout().unwrap(),
            Some(Duration::from_millis(300))
        );
        assert_eq!(
            accepted.write_timeout().unwrap(),
            Some(Duration::from_millis(300))
        );
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is inherited too");
        let start = Instant::now();
        let err = accepted.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        assert!(start.elapsed() >= Duration::from_millis(250));
    }

    #[test]
    fn accept_times_out_too() {
        let listener = bind("127.0.0.1:0", Duration::from_millis(200)).unwrap();
        let start = Instant::now();
        let err = listener.accept().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        assert!(start.elapsed() >= Duration::from_millis(150));
    }

    #[test]
    fn unread_bytes_of_a_connection_are_seen() {
        use std::io::Write;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_accepted, _) = listener.accept().unwrap();
        let bound = listener.local_addr().unwrap();
        assert!(unread_connections(bound).is_empty());
        peer.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let until = Instant::now() + Duration::from_secs(2);
        while unread_connections(bound).is_empty() && Instant::now() < until {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            unread_connections(bound).len(),
            1,
            "the request waits unread"
        );
    }

    #[test]
    fn table_lines_are_read_by_column() {
        // Port 0x1F90 = 8080, state 01 (established), 0x1C bytes unread, inode 4242.
        let line = "   3: 0100007F:1F90 0100007F:A1B2 01 00000000:0000001C 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(unread_inode(line, 8080), Some(4242));
        assert_eq!(unread_inode(line, 8081), None, "another port");
        let read = line.replace("00000000:0000001C", "00000000:00000000");
        assert_eq!(unread_inode(&read, 8080), None, "nothing unread");
        let listening = line.replace(" 01 ", " 0A ");
        assert_eq!(unread_inode(&listening, 8080), None, "not established");
        assert_eq!(unread_inode("  sl  local_address rem_address", 8080), None);
    }

    #[test]
    fn accepted_connections_are_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let before = passive_opens().expect("/proc/net/snmp is readable");
        let _peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _accepted = listener.accept().unwrap();
        assert!(passive_opens().unwrap() > before);
    }

    #[test]
    fn keeper_targets_loopback_for_wildcards() {
        assert_eq!(
            reachable("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            reachable("[::]:8080".parse().unwrap()),
            "[::1]:8080".parse().unwrap()
        );
        assert_eq!(
            reachable("10.1.2.3:80".parse().unwrap()),
            "10.1.2.3:80".parse().unwrap()
        );
    }

    #[test]
    fn zero_means_no_time_out() {
        let listener = bind("127.0.0.1:0", Duration::ZERO).unwrap();
        let _peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(accepted.read_timeout().unwrap(), None);
    }
}
