//! A serialized HTTP/1.1 response: what a client pushes, and what the proxy returns to the
//! scraper.

use std::io::BufRead;

use crate::body::{read_body, Framing};
use crate::error::{quoted, ProtocolError};
use crate::headers::{read_head_line, Headers};

/// Status line and headers of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code, 100..=999.
    pub status: u16,
    /// The reason phrase, possibly empty.
    pub reason: String,
    /// Every header, in arrival order.
    pub headers: Headers,
}

/// Headers that describe one hop's connection or framing; they are never relayed.
pub const HOP_BY_HOP: &[&str] = &[
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "Transfer-Encoding",
    "Content-Length",
    "Upgrade",
    "Trailer",
];

/// `HTTP/x.y` with one digit each, as Go's `http.ParseHTTPVersion` accepts. The Go client
/// pushes its scrape errors as `HTTP/0.0 500 Internal Server Error` (a `http.Response` built
/// without a version), and the Go proxy relays them: so must we.
fn is_http_version(version: &str) -> bool {
    let b = version.as_bytes();
    b.len() == 8
        && b.starts_with(b"HTTP/")
        && b[5].is_ascii_digit()
        && b[6] == b'.'
        && b[7].is_ascii_digit()
}

impl ResponseHead {
    /// A head with the standard reason phrase for `status` and no headers.
    pub fn new(status: u16) -> ResponseHead {
        ResponseHead {
            status,
            reason: reason_phrase(status).to_string(),
            headers: Headers::new(),
        }
    }

    /// Parses a status line and headers from `r`, reading at most `max_head` bytes; the body
    /// is left in `r`.
    pub fn parse<R: BufRead>(r: &mut R, max_head: usize) -> Result<ResponseHead, ProtocolError> {
        let mut budget = max_head;
        let line = read_head_line(r, &mut budget, max_head, "response head")?;
        let bad = || ProtocolError::MalformedStatusLine(quoted(&line));
        let text = std::str::from_utf8(&line).map_err(|_| bad())?;
        let (version, rest) = text.split_once(' ').ok_or_else(bad)?;
        if !is_http_version(version) {
            return Err(bad());
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let status: u16 = code.parse().map_err(|_| bad())?;
        if status < 100 || reason.bytes().any(|b| b < b' ' && b != b'\t') {
            return Err(bad());
        }
        let headers = Headers::read_from(r, &mut budget, max_head, "response head")?;
        Ok(ResponseHead {
            status,
            reason: reason.to_string(),
            headers,
        })
    }

    /// How this response's body is framed.
    pub fn framing(&self) -> Result<Framing, ProtocolError> {
        Framing::of_response(&self.headers)
    }

    /// Writes the status line, the headers and the empty line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.headers.write_to(out);
        out.extend_from_slice(b"\r\n");
    }

    /// The headers without hop-by-hop ones: what may be relayed to the next party.
    pub fn end_to_end_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .filter(|(n, _)| !HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(n)))
    }
}

/// A whole response held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status and headers, as received (framing headers included).
    pub head: ResponseHead,
    /// The body, de-chunked; content encodings such as gzip are untouched.
    pub body: Vec<u8>,
}

impl Response {
    /// Parses a complete serialized response with any framing; the body may be at most
    /// `max_body` bytes.
    pub fn parse<R: BufRead>(
        r: &mut R,
        max_head: usize,
        max_body: Option<u64>,
    ) -> Result<Response, ProtocolError> {
        let head = ResponseHead::parse(r, max_head)?;
        let framing = head.framing()?;
        let body = read_body(r, framing, max_body)?;
        Ok(Response { head, body })
    }

    /// Parses a complete serialized response from bytes.
    pub fn from_bytes(
        bytes: &[u8],
        max_head: usize,
        max_body: Option<u64>,
    ) -> Result<Response, ProtocolError> {
        let mut r = bytes;
        Response::parse(&mut r, max_head, max_body)
    }

    /// A response with a plain-text body, as pushed for a failed scrape.
    pub fn text(status: u16, text: &str) -> Response {
        let mut head = ResponseHead::new(status);
        head.headers
            .append("Content-Type", "text/plain; charset=utf-8");
        Response {
            head,
            body: text.as_bytes().to_vec(),
        }
    }

    /// Serializes with `Content-Length` framing (replacing whatever framing headers were there).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = self.head.clone();
        head.headers.remove("Transfer-Encoding");
        head.headers
            .set("Content-Length", self.body.len().to_string());
        let mut out = Vec::with_capacity(256 + self.body.len());
        head.write_to(&mut out);
        out.extend_from_slice(&self.body);
        out
    }
}

/// The standard reason phrase of a status code, or "" for an unknown one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let r = Response::from_bytes(b"HTTP/1.1 200\r\n\r\n", 1024, None).unwrap();
        assert_eq!((r.head.status, r.head.reason.as_str()), (200, ""));
        for bad in [
            &b"garbage"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 099 X\r\n\r\n",
            b"<html>\r\n",
        ] {
            let err = Response::from_bytes(bad, 1024, None).unwrap_err();
            assert!(
                matches!(
                    err,
                    ProtocolError::MalformedStatusLine(_) | ProtocolError::UnexpectedEof { .. }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn garbage_error_names_the_input() {
        let err = Response::from_bytes(b"HTTP/1.1 200 OK", 1024, None).unwrap_err();
        assert!(matches!(err, ProtocolError::UnexpectedEof { .. }), "{err}");
        let err = Response::from_bytes(b"garbage", 1024, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed HTTP response \"garbage\": expected a status line like \"HTTP/1.1 200 OK\""
        );
    }

    #[test]
    fn text_response_round_trips() {
        let r = Response::text(500, "target down");
        let bytes = r.to_bytes();
        assert!(bytes.starts_with(b"HTTP/1.1 500 Internal Server Error\r\n"));
        let back = Response::from_bytes(&bytes, 1024, None).unwrap();
        assert_eq!(back.body, b"target down");
        assert_eq!(back.head.headers.get("content-length"), Some("11"));
    }
}
