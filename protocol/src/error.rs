//! The one error type of the codec.

use std::fmt;
use std::io;

/// What was wrong with bytes that should have been a PushProx message.
///
/// `Display` is written for operators: it says what was expected and shows a short, escaped
/// excerpt of what arrived instead.
#[derive(Debug)]
pub enum ProtocolError {
    /// The input ended before the message was complete.
    UnexpectedEof {
        /// What was being read: "request head", "chunked body", ...
        context: &'static str,
    },
    /// The head (request or status line plus headers) is longer than the limit.
    HeadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request line alone is longer than the head limit.
    TargetTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// More header fields than the limit.
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// Not an HTTP/1.x head: a bare CR or LF, an invalid token, field name or value.
    MalformedHead {
        /// "request head", "response head", ...
        what: &'static str,
        /// What is wrong, with an escaped excerpt where it helps.
        why: String,
    },
    /// Framing that two readers could understand differently (RFC 9112 6.3).
    AmbiguousFraming(String),
    /// An `Expect` other than `100-continue`.
    UnsupportedExpectation(String),
    /// The body is longer than the limit the caller set.
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The first line is not `METHOD absolute-URL HTTP/1.x`.
    MalformedRequestLine(String),
    /// The first line is not `HTTP/1.x CODE reason`.
    MalformedStatusLine(String),
    /// A header line without a colon, with an empty or invalid name, or with control characters.
    MalformedHeader(String),
    /// The request target is not an absolute `http://` or `https://` URL with a host.
    MalformedUrl(String),
    /// `Content-Length` is not a decimal number, or two of them disagree.
    InvalidContentLength(String),
    /// A `Transfer-Encoding` other than `chunked`.
    UnsupportedTransferEncoding(String),
    /// A chunk size line or chunk terminator that is not valid chunked encoding.
    InvalidChunk(String),
    /// `X-Prometheus-Scrape-Timeout-Seconds` is not a positive decimal number of seconds.
    InvalidScrapeTimeout(String),
    /// A duration that is not in Prometheus or Go style (`500ms`, `15s`, `1m30s`).
    InvalidDuration(String),
    /// Reading the underlying stream failed.
    Io(io::Error),
}

/// At most this many characters of offending input are quoted in an error.
const EXCERPT_CHARS: usize = 60;

/// A short, printable excerpt of input for error messages.
pub(crate) fn quoted(bytes: &[u8]) -> String {
    excerpt(bytes, EXCERPT_CHARS)
}

/// The first `max` characters of `bytes` (invalid UTF-8 shown as U+FFFD), escaped as Rust
/// escapes them (`\r`, `\n`, `\u{1f}`) so that a log line or error message stays one line;
/// `…` marks a cut.
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let cut = text.chars().nth(max).is_some();
    let escaped = text.chars().take(max).flat_map(char::escape_debug);
    escaped.chain(cut.then_some('…')).collect()
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnexpectedEof { context } => {
                write!(f, "the {context} ended early: the peer closed the stream or sent a truncated message")
            }
            ProtocolError::HeadTooLarge { limit } => {
                write!(f, "message head is larger than {limit} bytes")
            }
            ProtocolError::BodyTooLarge { limit } => {
                write!(f, "body is larger than the limit of {limit} bytes")
            }
            ProtocolError::TargetTooLong { limit } => write!(
                f,
                "the request line is longer than the head limit of {limit} bytes"
            ),
            ProtocolError::TooManyHeaders { limit } => {
                write!(f, "the head has more than {limit} header fields")
            }
            ProtocolError::MalformedHead { what, why } => write!(f, "malformed {what}: {why}"),
            ProtocolError::AmbiguousFraming(why) => write!(f, "ambiguous framing refused: {why}"),
            ProtocolError::UnsupportedExpectation(what) => {
                write!(f, "Expect: {what} is not supported (only 100-continue is)")
            }
            ProtocolError::MalformedRequestLine(s) => write!(
                f,
                "malformed scrape request line \"{s}\": expected \"GET http://host:port/path HTTP/1.1\""
            ),
            ProtocolError::MalformedStatusLine(s) => write!(
                f,
                "malformed HTTP response \"{s}\": expected a status line like \"HTTP/1.1 200 OK\""
            ),
            ProtocolError::MalformedHeader(s) => {
                write!(f, "malformed header line \"{s}\": expected \"Name: value\"")
            }
            ProtocolError::MalformedUrl(s) => write!(
                f,
                "malformed scrape target \"{s}\": expected an absolute URL such as http://host:9100/metrics"
            ),
            ProtocolError::InvalidContentLength(s) => {
                write!(f, "invalid Content-Length \"{s}\": not a decimal number")
            }
            ProtocolError::UnsupportedTransferEncoding(s) => {
                write!(f, "unsupported Transfer-Encoding \"{s}\": only chunked is understood")
            }
            ProtocolError::InvalidChunk(s) => write!(f, "invalid chunked encoding near \"{s}\""),
            ProtocolError::InvalidScrapeTimeout(s) => write!(
                f,
                "invalid X-Prometheus-Scrape-Timeout-Seconds \"{s}\": expected a positive number of seconds such as 10 or 0.5"
            ),
            ProtocolError::InvalidDuration(s) => write!(
                f,
                "invalid duration \"{s}\": expected a number with a unit, such as 500ms, 15s, 5m, 1h or 1m30s"
            ),
            ProtocolError::Io(e) => write!(f, "read failed: {e}"),
        }
    }
}

impl ProtocolError {
    /// The status that answers a request refused with this error: 414 and 431 for heads over
    /// the limits, 413 for a body, 417 for an expectation, 400 for the rest.
    pub fn status(&self) -> u16 {
        match self {
            ProtocolError::TargetTooLong { .. } => 414,
            ProtocolError::HeadTooLarge { .. } | ProtocolError::TooManyHeaders { .. } => 431,
            ProtocolError::BodyTooLarge { .. } => 413,
            ProtocolError::UnsupportedExpectation(_) => 417,
            _ => 400,
        }
    }
}

impl std::error::Error for ProtocolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProtocolError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ProtocolError {
    /// Unwraps a `ProtocolError` that travelled inside an `io::Error` (from [`crate::BodyReader`]).
    fn from(e: io::Error) -> Self {
        match e.downcast::<ProtocolError>() {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                ProtocolError::UnexpectedEof { context: "stream" }
            }
            Err(e) => ProtocolError::Io(e),
        }
    }
}

impl From<ProtocolError> for io::Error {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Io(io) => io,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_one_escaped_line() {
        assert_eq!(
            excerpt(b"<html>\r\n<body>502</body>", 80),
            "<html>\\r\\n<body>502</body>"
        );
        assert_eq!(excerpt(b"abcdef", 3), "abc…");
        assert_eq!(excerpt(&[0x1f, 0x8b], 10), "\\u{1f}\u{fffd}");
    }
}
