//! The listening socket. Bound here, not by tiny_http, because tiny_http has no time-outs:
//! SO_RCVTIMEO and SO_SNDTIMEO set on the listening socket are copied by Linux to every
//! socket `accept` returns (checked by `accepted_sockets_inherit_the_time_outs` below), so
//! each connection gets them without tiny_http knowing.

use std::net::TcpListener;
use std::time::Duration;

#[cfg(target_os = "linux")]
mod sys {
    use std::os::raw::{c_int, c_long, c_void};

    pub const SOL_SOCKET: c_int = 1;
    pub const SO_RCVTIMEO: c_int = 20;
    pub const SO_SNDTIMEO: c_int = 21;

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
    if !timeout.is_zero() {
        set_timeouts(&listener, timeout)?;
    }
    Ok(listener)
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
        let start = Instant::now();
        let err = accepted.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        assert!(start.elapsed() >= Duration::from_millis(250));
    }

    #[test]
    fn zero_means_no_time_out() {
        let listener = bind("127.0.0.1:0", Duration::ZERO).unwrap();
        let _peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(accepted.read_timeout().unwrap(), None);
    }
}
