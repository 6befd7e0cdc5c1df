//! A serialized HTTP/1.1 response: what a client pushes, and what the proxy returns to the
//! scraper.

use std::io::{BufRead, Write as _};

use crate::body::read_body;
use crate::error::ProtocolError;
use crate::head::{self, Framing, HeadLimits, ResponseHead};
use crate::headers::Headers;

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
        head::read_response(r, HeadLimits::bytes(max_head))
    }

    /// How this response's body is framed.
    pub fn framing(&self) -> Result<Framing, ProtocolError> {
        Framing::of_response(self.status, &self.headers)
    }

    /// Writes the status line, the headers and the empty line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, self.reason);
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
        Response::parse(&mut &bytes[..], max_head, max_body)
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

/// The longest reason phrase we write: a status line stays one short, readable line.
pub const MAX_REASON: usize = 200;

/// `phrase` made safe for a status line: printable ASCII and spaces only (no CR/LF, no
/// obs-text; anything else becomes `?`), at most [`MAX_REASON`] bytes.
pub fn reason_text(phrase: &str) -> String {
    phrase
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .take(MAX_REASON)
        .collect()
}

/// The standard phrase of `status` followed by `detail`, for a status line that says why
/// (Prometheus shows a failed scrape's status line, not its body): `Gateway Timeout: no ...`.
pub fn reason_with(status: u16, detail: &str) -> String {
    match reason_phrase(status) {
        _ if detail.is_empty() => reason_phrase(status).to_string(),
        "" => reason_text(detail),
        standard => reason_text(&format!("{standard}: {detail}")),
    }
}

/// The standard reason phrase of a status code (the IANA registry, RFC 9110 and the codes
/// in common use it cites), or "" for an unregistered one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
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
    fn heads_are_bounded_and_name_a_bad_field() {
        let err = Response::from_bytes(b"HTTP/1.1 200 OK\r\nX-B: 22222222222222\r\n\r\n", 12, None)
            .unwrap_err();
        assert!(
            matches!(err, ProtocolError::HeadTooLarge { limit: 12 }),
            "{err}"
        );
        let err =
            Response::from_bytes(b"HTTP/1.1 200 OK\r\ngarbage\r\n\r\n", 100, None).unwrap_err();
        assert!(err.to_string().contains("garbage"), "{err}");
    }

    /// Every status the proxy and the client answer with (and those a push relays most
    /// often) has its phrase: an empty one is legal but looks broken in every log.
    #[test]
    fn every_status_we_send_has_a_reason_phrase() {
        for status in [
            100, 200, 204, 304, 400, 401, 403, 404, 405, 407, 408, 409, 410, 413, 414, 417, 429,
            431, 500, 502, 503, 504,
        ] {
            assert!(!reason_phrase(status).is_empty(), "{status}");
        }
        assert_eq!(reason_phrase(410), "Gone");
        assert_eq!(reason_phrase(414), "URI Too Long");
        assert_eq!(reason_phrase(417), "Expectation Failed");
        assert_eq!(reason_phrase(299), "");
    }

    #[test]
    fn reasons_with_a_detail_stay_one_bounded_printable_line() {
        assert_eq!(reason_with(504, "no client"), "Gateway Timeout: no client");
        assert_eq!(reason_with(504, ""), "Gateway Timeout");
        assert_eq!(reason_with(299, "x"), "x");
        assert_eq!(
            reason_with(502, "a\r\nb\tcaf\u{e9}"),
            "Bad Gateway: a??b?caf?"
        );
        assert_eq!(reason_with(500, &"x".repeat(500)).len(), MAX_REASON);
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
