//! Request heads: parsed in one pass from a bounded buffer (httparse), refused before anything
//! grows past the limits, and checked strictly so that no two readers of the same bytes can
//! disagree on where a header or a body ends (RFC 9112).

use std::fmt;

use pushprox_protocol::{Framing, Headers};

/// HTTP/1.0 or HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A request line and its header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// As sent (methods are case-sensitive).
    pub method: String,
    /// The request target: `/path?query`, `http://host:port/path`, `host:port` or `*`.
    pub target: String,
    pub version: Version,
    pub headers: Headers,
    /// How the body is framed: `Length(0)` when there is none.
    pub framing: Framing,
}

/// The limits a head is read within.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Request line and header fields, in bytes.
    pub max_bytes: usize,
    /// Header fields.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_bytes: 16 * 1024,
            max_headers: 100,
        }
    }
}

/// Why a head was refused; each maps to one status, and the connection is closed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// The request line alone is longer than the head limit: 414.
    TargetTooLong { limit: usize },
    /// The head is longer than its limit: 431.
    TooLarge { limit: usize },
    /// More header fields than allowed: 431.
    TooManyHeaders { limit: usize },
    /// Not an HTTP/1.x request head: 400.
    Malformed(String),
    /// Framing that two readers could understand differently: 400.
    AmbiguousFraming(String),
    /// An `Expect` other than `100-continue`: 417.
    UnsupportedExpectation(String),
}

impl HeadError {
    /// The status that answers it.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TargetTooLong { .. } => 414,
            HeadError::TooLarge { .. } | HeadError::TooManyHeaders { .. } => 431,
            HeadError::Malformed(_) | HeadError::AmbiguousFraming(_) => 400,
            HeadError::UnsupportedExpectation(_) => 417,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TargetTooLong { limit } => write!(
                f,
                "the request line is longer than the proxy's head limit of {limit} bytes"
            ),
            HeadError::TooLarge { limit } => write!(
                f,
                "the request head is larger than the proxy's limit of {limit} bytes"
            ),
            HeadError::TooManyHeaders { limit } => {
                write!(f, "the request has more than {limit} header fields")
            }
            HeadError::Malformed(why) => write!(f, "malformed request head: {why}"),
            HeadError::AmbiguousFraming(why) => write!(f, "request refused: {why}"),
            HeadError::UnsupportedExpectation(what) => {
                write!(f, "Expect: {what} is not supported (only 100-continue is)")
            }
        }
    }
}

impl std::error::Error for HeadError {}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete and may still
/// fit the limits, `Ok(Some((head, length)))` once complete.
pub fn parse(buf: &[u8], limits: HeadLimits) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut fields = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut request = httparse::Request::new(&mut fields);
    let window = &buf[..buf.len().min(limits.max_bytes)];
    let length = match request.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if window.len() < limits.max_bytes {
                check_line_endings(window)?;
                return Ok(None);
            }
            let line_done = window.contains(&b'\n');
            return Err(if line_done {
                HeadError::TooLarge {
                    limit: limits.max_bytes,
                }
            } else {
                HeadError::TargetTooLong {
                    limit: limits.max_bytes,
                }
            });
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooManyHeaders {
                limit: limits.max_headers,
            })
        }
        Err(e) => return Err(HeadError::Malformed(describe(e))),
    };
    check_line_endings(&window[..length])?;
    let version = match request.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HeadError::Malformed("unsupported HTTP version".into())),
    };
    let method = request.method.unwrap_or_default().to_string();
    let target = request.path.unwrap_or_default().to_string();
    let mut headers = Headers::new();
    for field in request.headers.iter() {
        let value = std::str::from_utf8(field.value).map_err(|_| {
            HeadError::Malformed(format!("the value of header {} is not UTF-8", field.name))
        })?;
        headers.append(field.name, value);
    }
    let framing = framing(&headers, version)?;
    if let Some(expect) = headers.get("Expect") {
        if !expect.trim().eq_ignore_ascii_case("100-continue") {
            return Err(HeadError::UnsupportedExpectation(excerpt(expect)));
        }
    }
    Ok(Some((
        RequestHead {
            method,
            target,
            version,
            headers,
            framing,
        },
        length,
    )))
}

/// Every line ends in CRLF: a bare CR or LF would let a reader that splits lines on it see
/// header fields that another reader does not.
fn check_line_endings(head: &[u8]) -> Result<(), HeadError> {
    for (i, &b) in head.iter().enumerate() {
        let bare = match b {
            b'\r' => head.get(i + 1).is_some_and(|&n| n != b'\n'),
            b'\n' => i == 0 || head[i - 1] != b'\r',
            _ => false,
        };
        if bare {
            let which = if b == b'\r' { "CR" } else { "LF" };
            return Err(HeadError::Malformed(format!(
                "a bare {which} at byte {i}: lines must end in CRLF"
            )));
        }
    }
    Ok(())
}

/// The body's framing, refusing every combination that readers could disagree on.
fn framing(headers: &Headers, version: Version) -> Result<Framing, HeadError> {
    let ambiguous = |why: &str| Err(HeadError::AmbiguousFraming(why.to_string()));
    let codings: Vec<String> = headers
        .get_all("Transfer-Encoding")
        .flat_map(|v| v.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let lengths: Vec<&str> = headers
        .get_all("Content-Length")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if !codings.is_empty() {
        if !lengths.is_empty() {
            return ambiguous("Content-Length together with Transfer-Encoding");
        }
        if version == Version::Http10 {
            return ambiguous("Transfer-Encoding in an HTTP/1.0 request");
        }
        if codings != ["chunked"] {
            return Err(HeadError::AmbiguousFraming(format!(
                "unsupported Transfer-Encoding \"{}\" (only chunked is accepted)",
                excerpt(&codings.join(", "))
            )));
        }
        return Ok(Framing::Chunked);
    }
    let Some(first) = lengths.first() else {
        return Ok(Framing::Length(0));
    };
    if lengths.iter().any(|l| l != first) {
        return ambiguous("two different Content-Length values");
    }
    let valid = !first.is_empty() && first.len() <= 19 && first.bytes().all(|b| b.is_ascii_digit());
    match first.parse::<u64>() {
        Ok(n) if valid => Ok(Framing::Length(n)),
        _ => Err(HeadError::AmbiguousFraming(format!(
            "Content-Length \"{}\" is not a decimal number",
            excerpt(first)
        ))),
    }
}

fn describe(e: httparse::Error) -> String {
    match e {
        httparse::Error::HeaderName => "invalid header name".into(),
        httparse::Error::HeaderValue => "invalid character in a header value".into(),
        httparse::Error::NewLine => "invalid line ending".into(),
        httparse::Error::Status => "invalid status".into(),
        httparse::Error::Token => "invalid method or request target".into(),
        httparse::Error::Version => "not HTTP/1.0 or HTTP/1.1".into(),
        other => other.to_string(),
    }
}

/// At most 60 characters of `text`, with control characters escaped.
fn excerpt(text: &str) -> String {
    text.chars().take(60).flat_map(char::escape_debug).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HeadLimits {
        HeadLimits::default()
    }

    fn ok(text: &str) -> RequestHead {
        let (head, n) = parse(text.as_bytes(), limits())
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .expect("complete");
        assert_eq!(n, text.len());
        head
    }

    fn err(text: &[u8]) -> HeadError {
        parse(text, limits()).expect_err(&String::from_utf8_lossy(text))
    }

    #[test]
    fn a_scrape_in_absolute_form_and_a_push() {
        let head = ok(
            "GET http://h.example:9100/metrics HTTP/1.1\r\nHost: h.example:9100\r\n\
                       X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
        );
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "http://h.example:9100/metrics");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(
            head.headers.get("x-prometheus-scrape-timeout-seconds"),
            Some("10")
        );
        assert_eq!(head.framing, Framing::Length(0));
        let push = ok("POST /push HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(push.version, Version::Http10);
        let push = ok("POST /push HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(push.framing, Framing::Chunked);
        let poll = ok("POST /poll HTTP/1.1\r\nContent-Length: 9\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(poll.framing, Framing::Length(9));
    }

    #[test]
    fn incomplete_heads_wait_for_more() {
        for text in [
            "",
            "GET",
            "GET / HTTP/1.1\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n\r",
        ] {
            assert_eq!(parse(text.as_bytes(), limits()), Ok(None), "{text:?}");
        }
    }

    #[test]
    fn oversized_heads_are_refused_by_status() {
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(20_000));
        assert_eq!(err(long_line.as_bytes()).status(), 414);
        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(20_000));
        assert_eq!(err(long_header.as_bytes()).status(), 431);
        let many: String = (0..101).map(|i| format!("X-{i}: y\r\n")).collect();
        let e = err(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes());
        assert_eq!(e, HeadError::TooManyHeaders { limit: 100 });
        assert_eq!(e.status(), 431);
        let hundred: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            ok(&format!("GET / HTTP/1.1\r\n{hundred}\r\n"))
                .headers
                .len(),
            100
        );
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for (text, why) in [
            (
                "POST /push HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                "together",
            ),
            (
                "POST /push HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                "two different",
            ),
            (
                "POST /push HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
                "two different",
            ),
            (
                "POST /push HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
                "not a decimal",
            ),
            (
                "POST /push HTTP/1.1\r\nContent-Length: +0\r\n\r\n",
                "not a decimal",
            ),
            (
                "POST /push HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                "not a decimal",
            ),
            (
                "POST /push HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                "not a decimal",
            ),
            (
                "POST /push HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                "unsupported",
            ),
            (
                "POST /push HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
                "unsupported",
            ),
            (
                "POST /push HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.0",
            ),
        ] {
            let e = err(text.as_bytes());
            assert_eq!(e.status(), 400, "{text:?}");
            assert!(e.to_string().contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn bare_line_endings_and_control_characters_are_refused() {
        for text in [
            &b"GET / HTTP/1.1\r\nX-A: 1\nId: 5\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: x\n\n",
            b"GET / HTTP/1.1\r\nX-A: 1\rId: 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-A: a\x1bb\r\n\r\n",
            b"GET / HTTP/1.1\r\nX A: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-A : b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-A: b\r\n folded\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert_eq!(
                err(text).status(),
                400,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        // Even before the head is complete.
        assert_eq!(err(b"GET / HTTP/1.1\r\nX: 1\nY").status(), 400);
    }

    #[test]
    fn only_100_continue_is_expected() {
        let head = ok("POST /push HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
        assert_eq!(head.framing, Framing::Length(1));
        assert_eq!(
            err(b"POST /push HTTP/1.1\r\nExpect: magic\r\n\r\n").status(),
            417
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Pieces heads are made of: valid lines, and the bytes that break them.
        fn piece() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                Just(b"GET /poll HTTP/1.1\r\n".to_vec()),
                Just(b"POST /push HTTP/1.0\r\n".to_vec()),
                Just(b"GET http://h.example:9100/metrics HTTP/1.1\r\n".to_vec()),
                Just(b"Host: h\r\n".to_vec()),
                Just(b"Content-Length: 5\r\n".to_vec()),
                Just(b"Content-Length: 6\r\n".to_vec()),
                Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
                Just(b"Expect: 100-continue\r\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"\r".to_vec()),
                Just(b": ".to_vec()),
                Just(b" ".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..40),
                "[A-Za-z-]{1,20}: [ -~]{0,60}\r\n".prop_map(String::into_bytes),
            ]
        }

        fn head() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(piece(), 0..30).prop_map(|p| p.concat())
        }

        fn small_limits() -> HeadLimits {
            HeadLimits {
                max_bytes: 1024,
                max_headers: 8,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(
                std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
            ))]

            /// Whatever arrives, in whatever pieces: no panic, the same answer as when it
            /// arrives whole, a complete head never longer than the limit, and an accepted head
            /// never ambiguous.
            #[test]
            fn any_bytes_in_any_split_parse_as_when_whole(bytes in head(), cuts in proptest::collection::vec(0usize..2000, 0..8)) {
                let limits = small_limits();
                let whole = parse(&bytes, limits);
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
                cuts.sort_unstable();
                cuts.push(bytes.len());
                // Fed in growing prefixes, as a connection reads it.
                let mut seen = None;
                for cut in cuts {
                    match parse(&bytes[..cut], limits) {
                        Ok(None) => continue,
                        other => {
                            seen = Some(other);
                            break;
                        }
                    }
                }
                let seen = seen.unwrap_or(Ok(None));
                match (&whole, &seen) {
                    // A complete head is found at the same place, with the same meaning.
                    (Ok(Some(a)), Ok(Some(b))) => prop_assert_eq!(a, b),
                    // An error may show up in a prefix already, but then the whole fails too.
                    (Err(_), Err(_)) => {}
                    (Ok(None), Ok(None)) => {}
                    (w, s) => prop_assert!(false, "whole {:?}, in pieces {:?}", w, s),
                }
                if let Ok(Some((head, length))) = &whole {
                    prop_assert!(*length <= limits.max_bytes);
                    prop_assert!(head.headers.len() <= limits.max_headers);
                    let framing_headers = head.headers.get_all("Content-Length").count()
                        + head.headers.get_all("Transfer-Encoding").count();
                    if head.headers.get("Transfer-Encoding").is_some() {
                        prop_assert_eq!(head.framing, Framing::Chunked);
                        prop_assert_eq!(head.headers.get("Content-Length"), None);
                    }
                    prop_assert!(framing_headers == 0 || head.framing != Framing::UntilEof);
                    for (_, value) in head.headers.iter() {
                        prop_assert!(!value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0));
                    }
                }
            }
        }
    }
}
