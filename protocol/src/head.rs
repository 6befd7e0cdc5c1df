//! The one reader of HTTP/1 message heads, whoever reads them: the proxy's front (requests),
//! pushed responses, the scrape request in a poll's answer, the client's metrics server, and
//! the lines of chunked bodies.
//!
//! httparse reads the request line and the header fields; one rule finds where a head ends and
//! refuses a bare CR or LF anywhere in it; one size rule bounds it before anything grows. Two
//! readers of the same bytes that disagree on where a field or a head ends are how requests
//! get smuggled (RFC 9112), so there is only this one. The same goes for where a body ends:
//! [`Framing`], decided here from the head, is the one framing rule.

use std::io::BufRead;

use crate::error::{quoted, ProtocolError};
use crate::headers::Headers;

/// The limits a head is read within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Start line and header fields, final CRLF included, in bytes.
    pub max_bytes: usize,
    /// Header fields.
    pub max_headers: usize,
}

impl HeadLimits {
    /// At most `max_bytes`, with as many fields as fit.
    pub fn bytes(max_bytes: usize) -> HeadLimits {
        HeadLimits {
            max_bytes,
            max_headers: usize::MAX,
        }
    }
}

/// HTTP/1.0 or HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`.
    Http10,
    /// `HTTP/1.1`.
    Http11,
}

/// A request line and its header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// As sent (methods are case-sensitive).
    pub method: String,
    /// The request target: `/path?query`, `http://host:port/path`, `host:port` or `*`.
    pub target: String,
    /// The protocol version.
    pub version: Version,
    /// Every field, in arrival order.
    pub headers: Headers,
    /// How the body is framed: `Length(0)` when there is none.
    pub framing: Framing,
}

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

/// How the end of a body is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body runs to the end of the stream (a response with neither header).
    UntilEof,
}

impl Framing {
    /// The framing of a request with these headers (RFC 9112 6.3), refusing every combination
    /// that two readers could understand differently.
    pub fn of_request(headers: &Headers, version: Version) -> Result<Framing, ProtocolError> {
        if version == Version::Http10 && headers.get("Transfer-Encoding").is_some() {
            return Err(ProtocolError::AmbiguousFraming(
                "Transfer-Encoding in an HTTP/1.0 request".into(),
            ));
        }
        Ok(framing(headers)?.unwrap_or(Framing::Length(0)))
    }

    /// The framing of a response of `status` with these headers: none for 1xx, 204 and 304,
    /// whatever they declare (RFC 9112 6.3), else as a request's, and to the end of the stream
    /// when neither `Content-Length` nor `Transfer-Encoding` is given.
    pub fn of_response(status: u16, headers: &Headers) -> Result<Framing, ProtocolError> {
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(Framing::Length(0));
        }
        Ok(framing(headers)?.unwrap_or(Framing::UntilEof))
    }
}

/// The one framing rule: `chunked` alone, or `Content-Length` values that all agree, never
/// both; `None` when the headers declare neither.
fn framing(headers: &Headers) -> Result<Option<Framing>, ProtocolError> {
    let has_lengths = headers.get("Content-Length").is_some();
    if let Some(te) = headers.get("Transfer-Encoding") {
        if has_lengths {
            return Err(ProtocolError::AmbiguousFraming(
                "Content-Length together with Transfer-Encoding".into(),
            ));
        }
        let codings: Vec<String> = headers
            .get_all("Transfer-Encoding")
            .flat_map(|v| v.split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        if codings != ["chunked"] {
            return Err(ProtocolError::UnsupportedTransferEncoding(quoted(
                te.as_bytes(),
            )));
        }
        return Ok(Some(Framing::Chunked));
    }
    let mut length = None;
    for value in headers.get_all("Content-Length") {
        for part in value.split(',') {
            let part = part.trim();
            let valid =
                !part.is_empty() && part.len() <= 19 && part.bytes().all(|b| b.is_ascii_digit());
            let n: u64 = part
                .parse()
                .ok()
                .filter(|_| valid)
                .ok_or_else(|| ProtocolError::InvalidContentLength(quoted(value.as_bytes())))?;
            if length.is_some_and(|l| l != n) {
                return Err(ProtocolError::AmbiguousFraming(
                    "two different Content-Length values".into(),
                ));
            }
            length = Some(n);
        }
    }
    Ok(length.map(Framing::Length))
}

/// What the scan of the bytes so far found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// The head ends before this offset (after its empty line).
    End(usize),
    /// A CR or LF that is not part of a CRLF, at this offset.
    Bare(usize),
    /// Neither yet.
    More,
}

/// Finds the end of a head (or a bare line ending) byte by byte, resuming where it stopped.
#[derive(Debug, Default)]
struct Scan {
    at: usize,
    /// A byte other than CR or LF was seen: blank lines before a request line do not end it.
    content: bool,
    /// Complete lines so far: a head has at most this many fields.
    lines: usize,
}

impl Scan {
    /// `blank_ends`: an empty first line is a whole (empty) head, as trailers are.
    fn run(&mut self, buf: &[u8], blank_ends: bool) -> Found {
        while self.at < buf.len() {
            let i = self.at;
            match buf[i] {
                b'\r' => match buf.get(i + 1) {
                    None => return Found::More,
                    Some(b'\n') => {}
                    Some(_) => return Found::Bare(i),
                },
                b'\n' => {
                    if i == 0 || buf[i - 1] != b'\r' {
                        return Found::Bare(i);
                    }
                    self.lines += 1;
                    let empty_line = i >= 3 && &buf[i - 3..=i] == b"\r\n\r\n";
                    if (empty_line && self.content) || (blank_ends && i == 1) {
                        self.at = i + 1;
                        return Found::End(i + 1);
                    }
                }
                _ => self.content = true,
            }
            self.at += 1;
        }
        Found::More
    }
}

/// A malformed `what` ("request head", ...), and `why`.
fn malformed(what: &'static str, why: impl Into<String>) -> ProtocolError {
    let why = why.into();
    ProtocolError::MalformedHead { what, why }
}

fn bare(buf: &[u8], i: usize, what: &'static str) -> ProtocolError {
    let which = if buf[i] == b'\r' { "CR" } else { "LF" };
    let why = format!("a bare {which} at byte {i}: lines must end in CRLF");
    malformed(what, why)
}

/// A head's first bytes as both parsers see them, with its limits: at most `max_bytes` of
/// `buf`, what the scan found there, where parsing stops, and how many field slots the head
/// can need.
struct Scanned<'a> {
    limits: HeadLimits,
    window: &'a [u8],
    found: Found,
    upto: usize,
    slots: usize,
}

fn scan_head(buf: &[u8], limits: HeadLimits) -> Scanned<'_> {
    let window = &buf[..buf.len().min(limits.max_bytes)];
    let mut scan = Scan::default();
    let found = scan.run(window, false);
    let upto = match found {
        Found::End(n) | Found::Bare(n) => n,
        Found::More => window.len(),
    };
    Scanned {
        limits,
        window,
        found,
        upto,
        slots: limits.max_headers.min(scan.lines + 1),
    }
}

/// Parses the request head at the start of `buf`: `Ok(None)` while it is incomplete and may
/// still fit the limits, `Ok(Some((head, length)))` once complete. Refused: a bare CR or LF,
/// a head over the limits, framing two readers could read differently, an `Expect` other than
/// `100-continue`.
pub fn parse_request(
    buf: &[u8],
    limits: HeadLimits,
) -> Result<Option<(RequestHead, usize)>, ProtocolError> {
    parse_request_at(buf, limits, false)
}

const REQUEST: &str = "request head";
const RESPONSE: &str = "response head";

fn parse_request_at(
    buf: &[u8],
    limits: HeadLimits,
    eof: bool,
) -> Result<Option<(RequestHead, usize)>, ProtocolError> {
    let scanned = scan_head(buf, limits);
    let (window, upto) = (scanned.window, scanned.upto);
    let mut slots = FieldSlots::new();
    let mut request = httparse::Request::new(slots.take(scanned.slots));
    let length = match request.parse(&window[..upto]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return scanned.incomplete(eof, REQUEST).map(|()| None),
        Err(httparse::Error::TooManyHeaders) => return Err(scanned.too_many_headers()),
        Err(e) => return Err(malformed(REQUEST, describe(e))),
    };
    let version = match request.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(malformed(REQUEST, "unsupported HTTP version")),
    };
    let headers = to_headers(request.headers, REQUEST)?;
    let framing = Framing::of_request(&headers, version)?;
    if let Some(expect) = headers.get("Expect") {
        if !expect.trim().eq_ignore_ascii_case("100-continue") {
            return Err(ProtocolError::UnsupportedExpectation(quoted(
                expect.as_bytes(),
            )));
        }
    }
    let head = RequestHead {
        method: request.method.unwrap_or_default().to_string(),
        target: request.path.unwrap_or_default().to_string(),
        version,
        headers,
        framing,
    };
    Ok(Some((head, length)))
}

impl Scanned<'_> {
    fn too_many_headers(&self) -> ProtocolError {
        ProtocolError::TooManyHeaders {
            limit: self.limits.max_headers,
        }
    }

    /// What an incomplete head means: an error when it can no longer become a head, else wait.
    fn incomplete(&self, eof: bool, what: &'static str) -> Result<(), ProtocolError> {
        let (window, limits) = (self.window, self.limits);
        if let Found::Bare(i) = self.found {
            return Err(bare(window, i, what));
        }
        if window.len() >= limits.max_bytes {
            let line_done = window.windows(2).any(|w| w == b"\r\n");
            let limit = limits.max_bytes;
            return Err(if line_done || what != REQUEST {
                ProtocolError::HeadTooLarge { limit }
            } else {
                ProtocolError::TargetTooLong { limit }
            });
        }
        if eof {
            return Err(ProtocolError::UnexpectedEof { context: what });
        }
        Ok(())
    }
}

/// Parses the response head at the start of `buf`, as [`parse_request`] does a request's.
/// `eof`: no more bytes will come, so a first line that is not a status line says so.
pub(crate) fn parse_response_at(
    buf: &[u8],
    limits: HeadLimits,
    eof: bool,
) -> Result<Option<(ResponseHead, usize)>, ProtocolError> {
    let scanned = scan_head(buf, limits);
    let (window, upto) = (scanned.window, scanned.upto);
    let Some(line_end) = window[..upto].windows(2).position(|w| w == b"\r\n") else {
        if eof && scanned.found == Found::More {
            status_line(window)?;
        }
        return scanned.incomplete(eof, RESPONSE).map(|()| None);
    };
    let (status, reason) = status_line(&window[..line_end])?;
    let fields_at = line_end + 2;
    let mut slots = FieldSlots::new();
    let fields = slots.take(scanned.slots);
    let (length, fields) = match httparse::parse_headers(&window[fields_at..upto], fields) {
        Ok(httparse::Status::Complete((n, fields))) => (fields_at + n, fields),
        Ok(httparse::Status::Partial) => return scanned.incomplete(eof, RESPONSE).map(|()| None),
        Err(httparse::Error::TooManyHeaders) => return Err(scanned.too_many_headers()),
        Err(_) => {
            let line = window[fields_at..upto]
                .split(|&b| b == b'\r')
                .next()
                .unwrap_or_default();
            return Err(ProtocolError::MalformedHeader(quoted(line)));
        }
    };
    let headers = to_headers(fields, RESPONSE)?;
    let head = ResponseHead {
        status,
        reason,
        headers,
    };
    Ok(Some((head, length)))
}

/// Field slots kept on the stack: more than a scrape, poll or push head carries.
const STACK_FIELDS: usize = 32;

/// Room for the fields httparse finds: on the stack for the usual handful, on the heap only
/// for a head with more (up to --web.max-headers).
struct FieldSlots<'b> {
    stack: [httparse::Header<'b>; STACK_FIELDS],
    heap: Vec<httparse::Header<'b>>,
}

impl<'b> FieldSlots<'b> {
    fn new() -> Self {
        FieldSlots {
            stack: [httparse::EMPTY_HEADER; STACK_FIELDS],
            heap: Vec::new(),
        }
    }

    fn take(&mut self, n: usize) -> &mut [httparse::Header<'b>] {
        if n <= STACK_FIELDS {
            return &mut self.stack[..n];
        }
        self.heap.resize(n, httparse::EMPTY_HEADER);
        &mut self.heap
    }
}

/// `HTTP/x.y CODE reason`, any one-digit version: the Go client pushes its scrape errors as
/// `HTTP/0.0 500 Internal Server Error` (a `http.Response` built without a version), and the
/// Go proxy relays them, so we must.
fn status_line(line: &[u8]) -> Result<(u16, String), ProtocolError> {
    let bad = || ProtocolError::MalformedStatusLine(quoted(line));
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    let (version, rest) = text.split_once(' ').ok_or_else(bad)?;
    let v = version.as_bytes();
    let version_ok = v.len() == 8
        && v.starts_with(b"HTTP/")
        && v[5].is_ascii_digit()
        && v[6] == b'.'
        && v[7].is_ascii_digit();
    if !version_ok {
        return Err(bad());
    }
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let status: u16 = code.parse().map_err(|_| bad())?;
    if status < 100
        || reason
            .bytes()
            .any(|b| (b < b' ' && b != b'\t') || b == 0x7f)
    {
        return Err(bad());
    }
    Ok((status, reason.to_string()))
}

/// The fields httparse found, as [`Headers`]; values must be UTF-8 (ASCII in practice: keeping
/// other bytes as Latin-1 would be lossy).
fn to_headers(
    fields: &[httparse::Header<'_>],
    what: &'static str,
) -> Result<Headers, ProtocolError> {
    let bytes = fields.iter().map(|f| f.name.len() + f.value.len()).sum();
    let mut headers = Headers::with_capacity(fields.len(), bytes);
    for field in fields {
        let value = std::str::from_utf8(field.value).map_err(|_| {
            let name = quoted(field.name.as_bytes());
            malformed(what, format!("the value of header {name} is not UTF-8"))
        })?;
        headers.append(field.name, value);
    }
    Ok(headers)
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

/// A head parser: the bytes so far, the limits, whether the stream ended; the head and its
/// length once complete.
type ParseAt<T> = fn(&[u8], HeadLimits, bool) -> Result<Option<(T, usize)>, ProtocolError>;

/// Reads a head from `r` with `parse` (a `*_at` function above), consuming exactly its bytes.
/// `parse` runs only when the scan found an end, a bare line ending, the limit or the end of
/// the stream: the same points however the bytes arrive, so the answer never depends on how
/// they were split. `blank_ends`: an empty first line is a whole head, as trailers are.
fn read_with<R: BufRead, T>(
    r: &mut R,
    limits: HeadLimits,
    blank_ends: bool,
    parse: ParseAt<T>,
) -> Result<T, ProtocolError> {
    let mut acc = Vec::new();
    let mut scan = Scan::default();
    loop {
        let available = r.fill_buf().map_err(ProtocolError::Io)?;
        if available.is_empty() {
            return match parse(&acc, limits, true)? {
                Some((head, _)) => Ok(head),
                None => Err(ProtocolError::UnexpectedEof { context: "head" }),
            };
        }
        let start = acc.len();
        let take = available.len().min(limits.max_bytes - start);
        acc.extend_from_slice(&available[..take]);
        let found = scan.run(&acc, blank_ends);
        if found != Found::More || acc.len() >= limits.max_bytes {
            if let Some((head, length)) = parse(&acc, limits, false)? {
                r.consume(length - start);
                return Ok(head);
            }
            // The scan and the parser disagree on where the head ends: never split a stream
            // on a guess.
            let why = format!("no end found in \"{}\"", quoted(&acc));
            return Err(malformed("head", why));
        }
        r.consume(take);
    }
}

/// Reads a request head from `r`; the bytes after it are left in `r`.
pub fn read_request<R: BufRead>(
    r: &mut R,
    limits: HeadLimits,
) -> Result<RequestHead, ProtocolError> {
    read_with(r, limits, false, parse_request_at)
}

/// Reads a response head from `r`; the bytes after it are left in `r`.
pub(crate) fn read_response<R: BufRead>(
    r: &mut R,
    limits: HeadLimits,
) -> Result<ResponseHead, ProtocolError> {
    read_with(r, limits, false, parse_response_at)
}

/// Reads one line ending in CRLF, at most `max` bytes with its CRLF, and gives it (without
/// its CRLF) to `then`. A line that is whole in the reader's buffer, as nearly every chunk line
/// is, is read where it lies; only one split across reads is gathered into a copy.
pub(crate) fn read_line<R: BufRead, T>(
    r: &mut R,
    max: usize,
    context: &'static str,
    then: impl FnOnce(&[u8]) -> Result<T, ProtocolError>,
) -> Result<T, ProtocolError> {
    let mut line = Vec::new();
    loop {
        let available = r.fill_buf().map_err(ProtocolError::Io)?;
        if available.is_empty() {
            return Err(ProtocolError::UnexpectedEof { context });
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if line.len() + take > max {
            return Err(ProtocolError::InvalidChunk(format!(
                "a line longer than {max} bytes"
            )));
        }
        if line.is_empty() && done {
            let read = ended_line(&available[..take]).and_then(then);
            r.consume(take);
            return read;
        }
        line.extend_from_slice(&available[..take]);
        r.consume(take);
        no_bare_cr(&line)?;
        if done {
            return ended_line(&line).and_then(then);
        }
    }
}

/// A bare CR is refused as soon as the byte after it is known. The error quotes the line up
/// to the CR and the byte after it, so it reads the same however the bytes arrived.
fn no_bare_cr(line: &[u8]) -> Result<(), ProtocolError> {
    match line.iter().position(|&b| b == b'\r') {
        Some(i) if line.get(i + 1).is_some_and(|&b| b != b'\n') => {
            Err(ProtocolError::InvalidChunk(quoted(&line[..i + 2])))
        }
        _ => Ok(()),
    }
}

/// A whole line up to its LF: the line without its CRLF, if it ends in one.
fn ended_line(line: &[u8]) -> Result<&[u8], ProtocolError> {
    no_bare_cr(line)?;
    match line.strip_suffix(b"\r\n") {
        Some(text) => Ok(text),
        None => Err(ProtocolError::InvalidChunk(format!(
            "a bare LF in \"{}\": lines must end in CRLF",
            quoted(line)
        ))),
    }
}

/// Reads the trailer section after the last chunk (fields and the empty line), at most `max`
/// bytes, and drops it.
pub(crate) fn skip_trailers<R: BufRead>(r: &mut R, max: usize) -> Result<(), ProtocolError> {
    // Nearly always there are none: the empty line alone.
    if r.fill_buf()
        .map_err(ProtocolError::Io)?
        .starts_with(b"\r\n")
    {
        r.consume(2);
        return Ok(());
    }
    read_with(r, HeadLimits::bytes(max), true, parse_trailers_at)
}

const TRAILER: &str = "chunked trailer";

/// The trailer section at the start of `buf`, as [`parse_request_at`] parses a request head:
/// its length once complete (an empty line alone is a whole, empty one).
fn parse_trailers_at(
    buf: &[u8],
    limits: HeadLimits,
    eof: bool,
) -> Result<Option<((), usize)>, ProtocolError> {
    let mut scan = Scan::default();
    match scan.run(buf, true) {
        Found::End(n) => {
            let mut slots = FieldSlots::new();
            match httparse::parse_headers(&buf[..n], slots.take(scan.lines)) {
                Ok(httparse::Status::Complete(_)) => Ok(Some(((), n))),
                _ => Err(ProtocolError::MalformedHeader(quoted(&buf[..n]))),
            }
        }
        Found::Bare(i) => Err(bare(buf, i, TRAILER)),
        Found::More if eof => Err(ProtocolError::UnexpectedEof { context: TRAILER }),
        Found::More => Err(ProtocolError::InvalidChunk(format!(
            "trailers longer than {} bytes",
            limits.max_bytes
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_from_headers() {
        let mut h = Headers::new();
        assert_eq!(Framing::of_response(200, &h).unwrap(), Framing::UntilEof);
        h.append("Content-Length", "12");
        assert_eq!(Framing::of_response(200, &h).unwrap(), Framing::Length(12));
        h.append("content-length", "13");
        assert!(Framing::of_response(200, &h).is_err());
        h.set("Content-Length", "+5");
        assert!(Framing::of_response(200, &h).is_err());
        h.remove("Content-Length");
        h.append("Transfer-Encoding", "chunked");
        assert_eq!(Framing::of_response(200, &h).unwrap(), Framing::Chunked);
        h.set("Transfer-Encoding", "gzip");
        assert!(Framing::of_response(200, &h).is_err());
        // Chunked and a length together: two readers could disagree on the end.
        h.set("Transfer-Encoding", "chunked");
        h.set("Content-Length", "5");
        assert!(Framing::of_response(200, &h).is_err());
    }

    #[test]
    fn bodiless_statuses_have_no_body_whatever_they_declare() {
        let mut h = Headers::new();
        h.append("Content-Length", "12");
        for status in [100, 101, 103, 204, 304] {
            assert_eq!(
                Framing::of_response(status, &h).unwrap(),
                Framing::Length(0)
            );
        }
        h.set("Transfer-Encoding", "chunked");
        h.remove("Content-Length");
        assert_eq!(Framing::of_response(304, &h).unwrap(), Framing::Length(0));
    }

    /// What the proxy's front accepts by default (--web.max-header-bytes, --web.max-headers).
    fn limits() -> HeadLimits {
        HeadLimits {
            max_bytes: 16 * 1024,
            max_headers: 100,
        }
    }

    fn ok(text: &str) -> RequestHead {
        let (head, n) = parse_request(text.as_bytes(), limits())
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .expect("complete");
        assert_eq!(n, text.len());
        head
    }

    fn err(text: &[u8]) -> ProtocolError {
        match parse_request(text, limits()) {
            Err(e) => e,
            Ok(r) => panic!("{:?}: {r:?}", String::from_utf8_lossy(text)),
        }
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
            assert_eq!(
                parse_request(text.as_bytes(), limits()).ok(),
                Some(None),
                "{text:?}"
            );
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
        assert!(
            matches!(e, ProtocolError::TooManyHeaders { limit: 100 }),
            "{e}"
        );
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

    #[test]
    fn responses_take_the_same_line_rule() {
        let read = |bytes: &[u8]| read_response(&mut &bytes[..], HeadLimits::bytes(1024));
        let head = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").unwrap();
        assert_eq!(
            (head.status, head.headers.get("content-length")),
            (200, Some("2"))
        );
        for bad in [
            &b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi"[..],
            b"HTTP/1.1 200 OK\r\nX: 1\nY: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: 1\rY: 2\r\n\r\n",
        ] {
            let e = read(bad).unwrap_err();
            assert!(e.to_string().contains("bare"), "{e}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// The fixed pieces: valid lines, and the bytes that break them.
        const FIXED_PIECES: &[&[u8]] = &[
            b"GET /poll HTTP/1.1\r\n",
            b"POST /push HTTP/1.0\r\n",
            b"GET http://h.example:9100/metrics HTTP/1.1\r\n",
            b"Host: h\r\n",
            b"Content-Length: 5\r\n",
            b"Content-Length: 6\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"Expect: 100-continue\r\n",
            b"\r\n",
            b"\n",
            b"\r",
            b": ",
            b" ",
        ];

        /// Pieces heads are made of: a fixed piece, random bytes or a random header line,
        /// each fixed piece as likely as either random kind.
        fn piece() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                FIXED_PIECES.len() as u32 => proptest::sample::select(FIXED_PIECES).prop_map(<[u8]>::to_vec),
                1 => proptest::collection::vec(any::<u8>(), 0..40),
                1 => "[A-Za-z-]{1,20}: [ -~]{0,60}\r\n".prop_map(String::into_bytes),
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
                let whole = parse_request(&bytes, limits);
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
                cuts.sort_unstable();
                cuts.push(bytes.len());
                // Fed in growing prefixes, as a connection reads it.
                let mut seen = None;
                for cut in cuts {
                    match parse_request(&bytes[..cut], limits) {
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
