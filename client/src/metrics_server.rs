//! The small HTTP server on `--metrics-addr`: `GET /metrics` (the client's counters) and
//! `GET /-/healthy`, one request per connection, plain std.

use std::io::{BufReader, Read, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushprox_protocol::{
    read_request, reason_phrase, HeadLimits, ProtocolError, RequestHead, Version,
};

use crate::config::{ListenAddr, THREAD_STACK};
use crate::error::StartupError;
use crate::metrics::Metrics;

/// Binds `--metrics-addr`. `:PORT` binds every interface: IPv6 and IPv4 where the host has
/// both, IPv4 alone where it has no IPv6.
pub fn bind(addr: &ListenAddr) -> Result<TcpListener, StartupError> {
    addr.bind().map_err(|e| StartupError::MetricsBind {
        addr: addr.text.clone(),
        source: e.source,
    })
}

/// The request heads the metrics server reads: at most 8 KiB, with at most 100 header fields;
/// a longer head or more fields get a 431.
const LIMITS: HeadLimits = HeadLimits {
    max_bytes: 8 * 1024,
    max_headers: 100,
};
/// Time a connection has to send its request head, and then to take the response.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections answered side by side on threads of their own; more wait for the accept thread.
/// Silent connections hold a thread each until [`CONNECTION_TIMEOUT`]: with 4, eight of them
/// delayed every /metrics by 5 to 10 s.
const MAX_CONNECTION_THREADS: usize = 16;

/// Serves `GET /metrics` and `GET /-/healthy` on `listener`: one thread accepts, and each
/// connection is answered (one request, then `Connection: close`) on a thread of its own, or
/// on the accept thread when [`MAX_CONNECTION_THREADS`] are busy. Plain std: the client needs
/// no more of HTTP than this.
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> Result<(), StartupError> {
    let addr_text = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    log::info!("serving metrics on http://{addr_text}/metrics");
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("metrics-http".into())
        .stack_size(THREAD_STACK)
        .spawn(move || loop {
            let conn = match listener.accept() {
                Ok((conn, _)) => conn,
                Err(e) => {
                    // Out of file descriptors, for instance; do not spin.
                    log::warn!("metrics server: accepting a connection failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if busy.fetch_add(1, Ordering::Relaxed) < MAX_CONNECTION_THREADS {
                let metrics = Arc::clone(&metrics);
                let done = Arc::clone(&busy);
                let spawned = std::thread::Builder::new()
                    .name("metrics-conn".into())
                    .stack_size(THREAD_STACK)
                    .spawn(move || {
                        answer(conn, &metrics);
                        done.fetch_sub(1, Ordering::Relaxed);
                    });
                if let Err(e) = spawned {
                    // The connection went with the closure: it is closed unanswered.
                    log::warn!("metrics server: cannot start a connection thread: {e}");
                    busy.fetch_sub(1, Ordering::Relaxed);
                }
            } else {
                busy.fetch_sub(1, Ordering::Relaxed);
                answer(conn, &metrics);
            }
        })
        .map_err(|e| StartupError::MetricsBind {
            addr: addr_text,
            source: e,
        })?;
    Ok(())
}

/// Reads one request head from `conn` and answers it; every failure just ends the connection.
fn answer(mut conn: TcpStream, metrics: &Metrics) {
    let deadline = Instant::now() + CONNECTION_TIMEOUT;
    let _ = conn.set_write_timeout(Some(CONNECTION_TIMEOUT));
    let head = read_request(
        &mut BufReader::new(Deadlined {
            conn: &conn,
            deadline,
        }),
        LIMITS,
    );
    let (version, head_only, (status, content_type, body)) = match head {
        Ok(head) => (
            match head.version {
                Version::Http10 => "HTTP/1.0",
                Version::Http11 => "HTTP/1.1",
            },
            head.method == "HEAD",
            route(&head, metrics),
        ),
        Err(ProtocolError::Io(e)) => {
            log::debug!("metrics server: reading a request failed: {e}");
            return;
        }
        Err(ProtocolError::UnexpectedEof { .. }) => return,
        Err(e) => ("HTTP/1.1", false, (e.status(), TEXT, format!("{e}\n"))),
    };
    let mut bytes = format!(
        "{version} {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        reason_phrase(status),
        body.len(),
        if status == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        },
    )
    .into_bytes();
    if !head_only {
        bytes.extend_from_slice(body.as_bytes());
    }
    if let Err(e) = conn.write_all(&bytes).and_then(|()| conn.flush()) {
        log::debug!("metrics server: writing a response failed: {e}");
        return;
    }
    // Read what the client still sends (a body we did not want) before closing, so that the
    // close does not reset the connection under the response. Bounded like the head.
    let _ = conn.shutdown(Shutdown::Write);
    let rest = Deadlined {
        conn: &conn,
        deadline,
    };
    let _ = std::io::copy(&mut rest.take(64 * 1024), &mut std::io::sink());
}

/// Reads from a connection until a deadline for all reads together.
struct Deadlined<'a> {
    conn: &'a TcpStream,
    deadline: Instant,
}

impl Read for Deadlined<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let wait = self
            .deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(std::io::ErrorKind::TimedOut)?;
        self.conn.set_read_timeout(Some(wait))?;
        (&mut &*self.conn).read(out)
    }
}

/// Every answer but `/metrics` is plain text.
const TEXT: &str = "text/plain; charset=utf-8";

/// The status, content type and body that answer a request head: `GET`/`HEAD` of `/metrics`
/// or `/-/healthy`, 404 elsewhere.
fn route(head: &RequestHead, metrics: &Metrics) -> (u16, &'static str, String) {
    let get = matches!(head.method.as_str(), "GET" | "HEAD");
    let path = head.target.split('?').next().unwrap_or("");
    match (path, get) {
        ("/metrics", true) => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("/-/healthy", true) => (200, TEXT, "OK".into()),
        ("/metrics" | "/-/healthy", false) => (405, TEXT, "only GET is allowed here\n".into()),
        _ => (
            404,
            TEXT,
            "not found: this is a pushprox-client; try /metrics or /-/healthy\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// Serves a fresh `Metrics` on a free port and returns its address.
    fn server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve(listener, Arc::new(Metrics::default())).unwrap();
        addr
    }

    /// Sends `request` in pieces and returns the whole answer.
    fn exchange(addr: SocketAddr, request: &[&[u8]]) -> String {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        for piece in request {
            conn.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn metrics_server_routes_get_and_head_and_refuses_the_rest() {
        let addr = server();
        let metrics = exchange(addr, &[b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(
            metrics.contains("\r\nConnection: close\r\n\r\n# HELP "),
            "{metrics}"
        );
        let body = metrics.split("\r\n\r\n").nth(1).unwrap();
        assert!(metrics.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));

        // The head may arrive in pieces, its end split between them.
        let healthy = exchange(addr, &[b"GET /-/healthy HTTP/1.0\r\nHost: a\r", b"\n\r\n"]);
        assert!(healthy.starts_with("HTTP/1.0 200 OK\r\n") && healthy.ends_with("\r\n\r\nOK"));

        let head = exchange(addr, &[b"HEAD /metrics HTTP/1.1\r\n\r\n"]);
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        assert!(!head.contains("Content-Length: 0\r\n"), "{head}");

        let post = exchange(
            addr,
            &[b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"],
        );
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");

        let other = exchange(addr, &[b"GET /nope HTTP/1.1\r\n\r\n"]);
        assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
        assert!(other.ends_with("try /metrics or /-/healthy\n"), "{other}");

        let garbage = exchange(addr, &[b"hello\r\n\r\n"]);
        assert!(
            garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{garbage}"
        );

        let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        long.resize(9000, b'a');
        let too_long = exchange(addr, &[&long]);
        assert!(too_long.starts_with("HTTP/1.1 431 "), "{too_long}");
    }

    #[test]
    fn metrics_server_answers_while_connections_stall() {
        let addr = server();
        // More silent connections than connection threads: the accept thread answers the
        // next one itself, after the stalled ones time out at the latest.
        let stalled: Vec<TcpStream> = (0..MAX_CONNECTION_THREADS + 1)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let started = Instant::now();
        let answer = exchange(addr, &[b"GET /-/healthy HTTP/1.1\r\n\r\n"]);
        assert!(answer.ends_with("\r\n\r\nOK"), "{answer}");
        assert!(
            started.elapsed() < CONNECTION_TIMEOUT * 2,
            "{:?}",
            started.elapsed()
        );
        drop(stalled);
    }

    /// Eight silent connections (a port scanner, a stuck health checker) take a thread each
    /// and leave the rest: /metrics is answered at once, not after their time-out.
    #[test]
    fn metrics_server_is_not_delayed_by_eight_silent_connections() {
        let addr = server();
        let silent: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let answer = exchange(addr, &[b"GET /metrics HTTP/1.1\r\n\r\n"]);
        let took = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("# HELP "), "{answer}");
        assert!(took < Duration::from_secs(2), "answered after {took:?}");
        drop(silent);
    }
}
