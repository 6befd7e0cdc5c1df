//! Sending a scrape's result to the proxy: `POST /push` whose body is the target's response,
//! serialized, with the scrape's `Id`. The target's body is streamed, never held whole.

use std::fmt;
use std::io::{self, Cursor, Read};
use std::time::{Duration, Instant};

use pushprox_protocol::{
    excerpt, reason_phrase, ChunkedEncoder, Headers, Response, ResponseHead, HOP_BY_HOP, ID_HEADER,
    PUSH_TIMEOUT_HEADER, SCRAPE_TIMEOUT_HEADER,
};
use ureq::SendBody;

use crate::link::{is_token_refusal, ProxyLink};
use crate::token::TokenRefused;

/// Time a push may take beyond the scrape's deadline, to carry the body over.
pub const PUSH_GRACE: Duration = Duration::from_secs(5);

/// How long after a failure its 500 may still be pushed (the proxy drops late ones anyway).
pub const ERROR_PUSH_WINDOW: Duration = Duration::from_secs(5);

/// At most this much of a refused push's answer is quoted.
const ANSWER_EXCERPT: usize = 200;

/// Why a push did not get through.
#[derive(Debug)]
pub enum PushError {
    /// Reading the target's body failed mid-way (the push was cut short).
    Source(io::Error),
    /// The proxy could not be reached or the connection failed.
    Network(ureq::Error),
    /// The proxy answered 410: the scrape gave up at its deadline before the push arrived (the
    /// target was slower than the scrape timeout); not a fault of the push or the network.
    Late { answer: String },
    /// The proxy answered with something other than 200.
    Refused { status: u16, answer: String },
    /// The proxy answered 401 or 403: it does not accept our token for this scrape's FQDN.
    Token(TokenRefused),
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Source(e) => write!(f, "reading the target's body failed: {e}"),
            PushError::Network(e) => write!(f, "{e}"),
            PushError::Late { answer } => write!(
                f,
                "too late: the proxy had already answered the scraper (410 Gone: \"{answer}\")"
            ),
            PushError::Refused { status, answer } => write!(
                f,
                "the proxy answered {status} {}: \"{answer}\"",
                reason_phrase(*status)
            ),
            PushError::Token(refused) => write!(f, "{refused}"),
        }
    }
}

impl std::error::Error for PushError {}

/// The head of the pushed response: the target's status line and end-to-end headers (names
/// in canonical case), our `Id` and the time left, then the framing header: `Content-Length`
/// when the body's `length` is known, else chunked.
pub fn push_head<'a>(
    status: u16,
    reason: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    id: &str,
    remaining: Duration,
    length: Option<u64>,
) -> Vec<u8> {
    let mut head = ResponseHead::new(status);
    if !reason.is_empty() {
        head.reason = reason.to_string();
    }
    for (name, value) in headers {
        let ours = [ID_HEADER, PUSH_TIMEOUT_HEADER, SCRAPE_TIMEOUT_HEADER];
        if HOP_BY_HOP
            .iter()
            .chain(&ours)
            .any(|h| h.eq_ignore_ascii_case(name))
        {
            continue;
        }
        head.headers.append(canonical_name(name), value);
    }
    stamp(&mut head.headers, id, remaining);
    match length {
        Some(n) => head.headers.append("Content-Length", n.to_string()),
        None => head.headers.append("Transfer-Encoding", "chunked"),
    }
    let mut out = Vec::with_capacity(512);
    head.write_to(&mut out);
    out
}

/// `content-type` -> `Content-Type`, as Go writes header names.
fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// The target's body as it is pushed: counts the bytes that pass, and remembers the first
/// error, so a failed push can tell a broken target body from a broken proxy connection.
struct Source<R> {
    inner: R,
    bytes: u64,
    error: Option<io::Error>,
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            self.error
                .get_or_insert_with(|| io::Error::new(e.kind(), e.to_string()));
        })?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Hands out as many bytes as the buffer holds or the source has before its end, in one
/// `read`: ureq sends each `read` of a push body as one write (and, chunked, one chunk), so the
/// head and a body already received leave in one `send` instead of one per piece. An error
/// after some bytes is kept for the next call, after those bytes are handed out.
struct Gathered<R> {
    inner: R,
    error: Option<io::Error>,
}

impl<R: Read> Read for Gathered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if filled == 0 => return Err(e),
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
        Ok(filled)
    }
}

/// Pushes the target's response, streaming its body; returns the body's size.
pub fn push_response(
    link: &ProxyLink,
    id: &str,
    response: ureq::http::Response<ureq::Body>,
    deadline: Instant,
) -> Result<u64, PushError> {
    let (parts, body) = response.into_parts();
    let body_length = body.content_length();
    // Borrowed where the value is UTF-8, as nearly all are: no copy of each header per scrape.
    let headers: Vec<(&str, std::borrow::Cow<'_, str>)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let remaining = deadline.saturating_duration_since(Instant::now());
    let head = push_head(
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or(""),
        headers.iter().map(|(n, v)| (*n, v.as_ref())),
        id,
        remaining,
        body_length,
    );
    // A body of known length goes with a known length too, as the Go client's push does: no
    // chunk framing, and ureq writes it in as few sends as the body arrives in.
    let length = body_length.map(|n| head.len() as u64 + n);
    let mut body = Source {
        inner: body.into_reader(),
        bytes: 0,
        error: None,
    };
    let result = {
        let reader: Box<dyn Read + '_> = match body_length {
            Some(_) => Box::new(Cursor::new(head).chain(&mut body)),
            None => Box::new(Cursor::new(head).chain(ChunkedEncoder::new(&mut body))),
        };
        let mut reader = Gathered {
            inner: reader,
            error: None,
        };
        send(
            link,
            length,
            SendBody::from_reader(&mut reader),
            remaining + PUSH_GRACE,
        )
    };
    if let Some(e) = body.error {
        return Err(PushError::Source(e));
    }
    result.map(|()| body.bytes)
}

/// Pushes a `status` (500, or 403 for a scrape refused by `--scrape.allow`) whose body is
/// `reason`, for a scrape that failed.
pub fn push_error(
    link: &ProxyLink,
    id: &str,
    status: u16,
    reason: &str,
    deadline: Instant,
) -> Result<(), PushError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let mut response = Response::text(status, reason);
    // Also after the standard phrase in the status line: the proxy relays it, and Prometheus'
    // target page shows a failed scrape's status line, not its body.
    response.head.reason = pushprox_protocol::reason_with(status, reason);
    if status == 405 {
        // RFC 9110: a 405 says which methods are allowed (a scrape's: GET and HEAD).
        response.head.headers.append("Allow", "GET, HEAD");
    }
    stamp(&mut response.head.headers, id, remaining);
    let bytes = response.to_bytes();
    send(
        link,
        Some(bytes.len() as u64),
        SendBody::from_reader(&mut &bytes[..]),
        remaining + PUSH_GRACE,
    )
}

/// `POST /push` with `body`, of `length` bytes if known (else chunked).
fn send(
    link: &ProxyLink,
    length: Option<u64>,
    body: SendBody<'_>,
    timeout: Duration,
) -> Result<(), PushError> {
    let request = link.post("/push");
    let request = match length {
        Some(n) => request.header("Content-Length", n),
        None => request,
    };
    let mut answer = request
        .config()
        .timeout_global(Some(timeout))
        .build()
        .send(body)
        .map_err(PushError::Network)?;
    let status = answer.status().as_u16();
    // Read the answer so the connection can be reused; it is short.
    let text = answer
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    let answer = excerpt(text.trim_end().as_bytes(), ANSWER_EXCERPT);
    match status {
        200 => Ok(()),
        s if is_token_refusal(s) => Err(PushError::Token(link.token_refused(s, answer))),
        410 => Err(PushError::Late { answer }),
        _ => Err(PushError::Refused { status, answer }),
    }
}

/// What every push carries after the target's headers: the scrape's id and the time left
/// until its deadline.
fn stamp(headers: &mut Headers, id: &str, remaining: Duration) {
    headers.append(ID_HEADER, id);
    headers.append(PUSH_TIMEOUT_HEADER, seconds_text(remaining));
}

/// `remaining` in seconds with six decimals, as the Go client writes the push timeout header.
/// Integer arithmetic: formatting an f64 would link the float printing code.
fn seconds_text(remaining: Duration) -> String {
    format!("{}.{:06}", remaining.as_secs(), remaining.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_timeout_has_six_decimals() {
        assert_eq!(seconds_text(Duration::from_micros(9_500_000)), "9.500000");
        assert_eq!(seconds_text(Duration::from_nanos(1_999)), "0.000001");
        assert_eq!(seconds_text(Duration::ZERO), "0.000000");
    }

    #[test]
    fn head_has_status_end_to_end_headers_id_and_framing() {
        let head = push_head(
            200,
            "OK",
            [
                ("content-type", "text/plain; version=0.0.4"),
                ("content-encoding", "gzip"),
                ("transfer-encoding", "chunked"),
                ("connection", "keep-alive"),
                ("content-length", "12"),
                ("id", "spoofed"),
                ("x-custom-header", "a"),
                ("x-custom-header", "b"),
            ],
            "0c6e3a4e",
            Duration::from_micros(9_431_720),
            None,
        );
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 200 OK\r\n\
             Content-Type: text/plain; version=0.0.4\r\n\
             Content-Encoding: gzip\r\n\
             X-Custom-Header: a\r\n\
             X-Custom-Header: b\r\n\
             Id: 0c6e3a4e\r\n\
             X-Prometheus-Scrape-Timeout: 9.431720\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn head_with_length_and_unknown_reason() {
        let head = push_head(299, "", [], "x", Duration::ZERO, Some(5));
        assert_eq!(
            head,
            b"HTTP/1.1 299 \r\nId: x\r\nX-Prometheus-Scrape-Timeout: 0.000000\r\nContent-Length: 5\r\n\r\n"
        );
    }

    #[test]
    fn pushed_head_and_chunked_body_parse_back() {
        let body: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let head = push_head(
            200,
            "OK",
            [("content-encoding", "gzip")],
            "id1",
            Duration::from_secs(1),
            None,
        );
        let mut wire = Vec::new();
        Cursor::new(head)
            .chain(ChunkedEncoder::new(&body[..]))
            .read_to_end(&mut wire)
            .unwrap();
        let parsed = Response::from_bytes(&wire, 64 * 1024, None).unwrap();
        assert_eq!(parsed.head.status, 200);
        assert_eq!(parsed.head.headers.get("id"), Some("id1"));
        assert_eq!(parsed.head.headers.get("Content-Encoding"), Some("gzip"));
        assert_eq!(parsed.body, body);
    }

    /// Hands out its pieces one per `read`, then fails if told to.
    struct Pieces {
        pieces: Vec<&'static [u8]>,
        fail_at_end: bool,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pieces.is_empty() {
                return match self.fail_at_end {
                    true => Err(io::Error::new(io::ErrorKind::ConnectionReset, "cut")),
                    false => Ok(0),
                };
            }
            let piece = self.pieces.remove(0);
            buf[..piece.len()].copy_from_slice(piece);
            Ok(piece.len())
        }
    }

    #[test]
    fn gathered_reads_hand_out_every_piece_in_one_read_up_to_the_buffer() {
        let mut reader = Gathered {
            inner: Pieces {
                pieces: vec![b"head\r\n", b"ab", b"cdef"],
                fail_at_end: false,
            },
            error: None,
        };
        let mut buf = [0u8; 64];
        assert_eq!(reader.read(&mut buf).unwrap(), 12);
        assert_eq!(&buf[..12], b"head\r\nabcdef");
        assert_eq!(reader.read(&mut buf).unwrap(), 0);
        // A small buffer is filled, and the rest comes with the next read.
        let mut reader = Gathered {
            inner: Cursor::new(b"0123456789".to_vec()).chain(&b"ab"[..]),
            error: None,
        };
        let mut small = [0u8; 8];
        assert_eq!(reader.read(&mut small).unwrap(), 8);
        assert_eq!(reader.read(&mut small).unwrap(), 4);
        assert_eq!(&small[..4], b"89ab");
    }

    #[test]
    fn gathered_reads_hand_out_the_bytes_before_an_error_then_the_error() {
        let mut reader = Gathered {
            inner: Pieces {
                pieces: vec![b"abc"],
                fail_at_end: true,
            },
            error: None,
        };
        let mut buf = [0u8; 64];
        assert_eq!(reader.read(&mut buf).unwrap(), 3);
        let error = reader.read(&mut buf).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn header_names_in_canonical_case() {
        assert_eq!(canonical_name("content-type"), "Content-Type");
        assert_eq!(canonical_name("x-prometheus-SCRAPE"), "X-Prometheus-Scrape");
        assert_eq!(canonical_name("etag"), "Etag");
    }
}
