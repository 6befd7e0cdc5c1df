//! A small blocking HTTP/1.1 client for the tests, with the requests they send (get, post,
//! scrape in proxy form, poll, push), and readers of the heads a fake server receives.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use pushprox_protocol::{BodyReader, Framing, HeadLimits, Headers, Response, DEFAULT_MAX_HEAD};

/// Upper bound of a wait that the test does not bound itself.
pub const WAIT: Duration = Duration::from_secs(10);
/// Read/write time-out of one exchange when the test does not say.
pub const EXCHANGE_WITHIN: Duration = Duration::from_secs(10);
/// Largest body the test client accepts.
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// An answer as the test received it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Headers,
    /// De-chunked; content encodings untouched.
    pub body: Vec<u8>,
    /// From the request's first byte written to the answer's last byte read.
    pub took: Duration,
}

impl Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// `GET path` with `Connection: close`.
pub fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").into_bytes()
}

/// `POST path` with `body`, `Content-Length` and `Connection: close`.
pub fn post_request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A scrape in absolute form, as Prometheus sends it through `proxy_url`; `timeout` is the
/// `X-Prometheus-Scrape-Timeout-Seconds` value, if any.
pub fn scrape_request(url: &str, timeout: Option<&str>, extra: &[(&str, &str)]) -> Vec<u8> {
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split(['/', '?']).next().unwrap_or(""));
    let mut out =
        format!("GET {url} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: pushprox-tests\r\n");
    if let Some(t) = timeout {
        out.push_str(&format!("X-Prometheus-Scrape-Timeout-Seconds: {t}\r\n"));
    }
    for (n, v) in extra {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

/// Asserts that the scraper got an error status (5xx) whose one-line reason names `name`.
pub fn assert_error_naming(r: &Reply, name: &str) {
    assert!(
        r.status >= 500,
        "the scraper gets an error status: {} {:?}",
        r.status,
        r.text()
    );
    assert!(
        r.text().contains(name),
        "the reason names {name}: {:?}",
        r.text()
    );
}

/// Connects to `127.0.0.1:port`, writes `request` and reads one answer, each step bounded by
/// `within`.
pub fn exchange(port: u16, request: &[u8], within: Duration) -> Result<Reply, String> {
    let started = Instant::now();
    let mut stream = connect(port)?;
    stream
        .write_all(request)
        .map_err(|e| format!("writing the request: {e}"))?;
    read_reply(stream, within, started)
}

/// A connection to `127.0.0.1:port` with 10 s read and write time-outs.
pub fn connect(port: u16) -> Result<TcpStream, String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_write_timeout(Some(EXCHANGE_WITHIN))
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(EXCHANGE_WITHIN))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Reads one response from `stream`; each read waits at most `within`. `took` counts from
/// `started`.
pub fn read_reply(stream: TcpStream, within: Duration, started: Instant) -> Result<Reply, String> {
    stream
        .set_read_timeout(Some(within))
        .map_err(|e| e.to_string())?;
    read_reply_from(&mut BufReader::new(stream), started)
}

/// Reads one response from a buffered connection that stays open afterwards (keep-alive).
pub fn read_reply_from(
    reader: &mut BufReader<TcpStream>,
    started: Instant,
) -> Result<Reply, String> {
    let r = Response::parse(reader, DEFAULT_MAX_HEAD, Some(MAX_BODY))
        .map_err(|e| format!("reading the answer after {:?}: {e}", started.elapsed()))?;
    Ok(Reply {
        status: r.head.status,
        headers: r.head.headers,
        body: r.body,
        took: started.elapsed(),
    })
}

/// Scrapes `url` through the proxy on `proxy_port`, waiting for the answer 5 s longer than the
/// scrape's own `timeout` (20 s without one), so the proxy's answer at the deadline is seen.
pub fn scrape(proxy_port: u16, url: &str, timeout: Option<&str>) -> Result<Reply, String> {
    let within = timeout
        .and_then(|t| t.parse::<f64>().ok())
        .map_or(Duration::from_secs(20), |t| {
            Duration::from_secs_f64(t) + Duration::from_secs(5)
        });
    exchange(proxy_port, &scrape_request(url, timeout, &[]), within)
}

/// A poll sent by the test itself, as a client would, whose answer is read later.
pub struct RawPoll {
    stream: TcpStream,
    pub sent: Instant,
}

impl RawPoll {
    /// Sends `POST /poll` with body `fqdn`.
    pub fn send(proxy_port: u16, fqdn: &str) -> RawPoll {
        let mut stream = connect(proxy_port).expect("connecting a raw poll");
        let sent = Instant::now();
        stream
            .write_all(&post_request("/poll", fqdn.as_bytes()))
            .expect("writing a raw poll");
        RawPoll { stream, sent }
    }

    /// Reads the poll's answer, waiting at most `within`; `took` counts from the poll's
    /// sending.
    pub fn answer(self, within: Duration) -> Result<Reply, String> {
        read_reply(self.stream, within, self.sent)
    }
}

/// The serialized response a client pushes for scrape `id`: `status`, `headers`, `body` with
/// `Content-Length`.
pub fn push_body(id: &str, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nId: {id}\r\n",
        pushprox_protocol::reason_phrase(status)
    )
    .into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads everything `stream` sends until EOF or `within`, for answers that are not HTTP.
pub fn read_all(mut stream: TcpStream, within: Duration) -> Vec<u8> {
    let _ = stream.set_read_timeout(Some(within));
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub headers: Headers,
    pub framing: Framing,
}

/// The request line and header fields of the next request on `r` (read by the codec's head
/// reader, as the proxy reads them); `None` at its end.
pub fn read_request_head(r: &mut impl BufRead) -> Option<RequestHead> {
    let head = pushprox_protocol::read_request(r, HeadLimits::bytes(64 * 1024)).ok()?;
    Some(RequestHead {
        method: head.method,
        path: head.target,
        headers: head.headers,
        framing: head.framing,
    })
}

/// The next request on `r`, head and body (framed as its head says); `None` at the end of the
/// connection or when the body breaks off.
pub fn read_request(r: &mut impl BufRead) -> Option<(RequestHead, Vec<u8>)> {
    let head = read_request_head(r)?;
    let mut body = Vec::new();
    BodyReader::new(r, head.framing, None)
        .read_to_end(&mut body)
        .ok()?;
    Some((head, body))
}

/// A GET of `path` over HTTP/1.0; the whole answer.
pub fn http_get(addr: &str, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    out
}

/// Sends `text` on a fresh connection and reads until the peer closes (at most [`WAIT`]).
pub fn request(port: u16, text: &str) -> Vec<u8> {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return Vec::new();
    };
    let _ = conn.set_read_timeout(Some(WAIT));
    let _ = conn.write_all(text.as_bytes());
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    out
}

/// A raw HTTP/1.1 response with `fields` (header lines, each ending in `\r\n`) before its
/// Content-Length.
pub fn raw_response(status: u16, fields: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\n{fields}Content-Length: {}\r\n\r\n",
        pushprox_protocol::reason_phrase(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
