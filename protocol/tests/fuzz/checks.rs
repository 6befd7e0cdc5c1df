//! What must hold for each entry point of the codec on any input.

use super::*;

// ---------------------------------------------------------------------------------------------
// Checks

/// A property that did not hold, or a panic.
pub(crate) struct Failure {
    /// What failed, in words that stay the same for every input that hits the same bug.
    pub(crate) key: String,
    /// What happened on this input.
    pub(crate) detail: String,
}

macro_rules! ensure {
    ($cond:expr, $key:expr, $($detail:tt)+) => {
        if !$cond {
            return Err(Failure { key: $key.to_string(), detail: format!($($detail)+) });
        }
    };
}

/// Runs one call into the codec; a panic becomes a failure named after the entry point (the
/// default hook has printed its location).
pub(crate) fn guard<T>(entry: &str, f: impl FnOnce() -> T) -> Result<T, Failure> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Failure {
        key: format!("{entry}: panic"),
        detail: payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default(),
    })
}

pub(crate) fn variant(err: &ProtocolError) -> String {
    format!("{err:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

/// Error texts end up in logs and in HTTP reasons: they must say something, be one short line,
/// and show offending input escaped. A bad text is recorded in `stats.failures` and the case
/// goes on, so that it does not hide what the rest of the case would find.
pub(crate) fn check_error(entry: &str, err: &ProtocolError, stats: &mut Stats) {
    let name = variant(err);
    *stats.errors.entry(format!("{entry}: {name}")).or_default() += 1;
    if let Err(failure) = check_error_text(entry, &name, err) {
        stats.failures.push(failure);
    }
}

pub(crate) fn check_error_text(
    entry: &str,
    name: &str,
    err: &ProtocolError,
) -> Result<(), Failure> {
    let text = err.to_string();
    ensure!(
        !text.is_empty(),
        format!("{entry}: {name} has an empty Display"),
        "{err:?}"
    );
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(Failure {
            key: format!("{entry}: {name}'s Display contains raw control characters"),
            detail: format!("{c:?} in {:?}", shorten(&text)),
        });
    }
    let chars = text.chars().count();
    ensure!(
        chars <= MAX_DISPLAY_CHARS,
        format!(
            "{entry}: {name}'s Display is not a short excerpt (over {MAX_DISPLAY_CHARS} chars)"
        ),
        "{chars} chars: {:?}",
        shorten(&text)
    );
    Ok(())
}

/// The first 200 characters, for failure details.
pub(crate) fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(200).collect();
    if out.len() < s.len() {
        let _ = write!(out, "… ({} bytes)", s.len());
    }
    out
}

pub(crate) fn lossy(b: &[u8]) -> String {
    shorten(&String::from_utf8_lossy(b))
}

/// Both ways of parsing the same bytes must agree: same value, or errors with the same text.
pub(crate) fn same_outcome<T: PartialEq + std::fmt::Debug>(
    what: &str,
    a: &Result<T, ProtocolError>,
    b: &Result<T, ProtocolError>,
) -> Result<(), Failure> {
    let same = match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(x), Err(y)) => x.to_string() == y.to_string(),
        _ => false,
    };
    ensure!(
        same,
        format!("{what}: parsing in one piece and in small reads disagree"),
        "in one piece: {}; in small reads: {}",
        shorten(&format!("{a:?}")),
        shorten(&format!("{b:?}"))
    );
    Ok(())
}

/// Counts that show the run reached past the first line.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) requests_ok: u64,
    pub(crate) responses_ok: u64,
    pub(crate) nonempty_bodies: u64,
    pub(crate) chunked_bodies: u64,
    pub(crate) chunked_round_trips: u64,
    pub(crate) endless: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    /// Failures found so far in the current case that did not stop it.
    pub(crate) failures: Vec<Failure>,
}

/// A reader that hands out at most `step` bytes per read, behind a `BufReader` of
/// `buf_capacity`: head lines and chunk lines then straddle buffer refills.
pub(crate) fn trickle(data: &[u8], opts: ReadOpts) -> BufReader<Trickle<'_>> {
    BufReader::with_capacity(
        opts.buf_capacity,
        Trickle {
            data,
            step: opts.step,
        },
    )
}

pub(crate) struct Trickle<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Buffer sizes that do not line up with anything: 1 byte, primes, just over a chunk.
pub(crate) fn read_size(rng: &mut Rng) -> usize {
    if rng.chance(1, 2) {
        *rng.pick(&[1, 2, 3, 7, 13, 61, 509, 4099, 8191, 32 * 1024 + 1, 65_537])
    } else {
        rng.range(1, 1000)
    }
}

/// Like [`read_size`], for bodies too large to read a byte at a time in a debug build.
pub(crate) fn read_size_for(rng: &mut Rng, total: usize) -> usize {
    if total <= 8192 {
        read_size(rng)
    } else {
        *rng.pick(&[509, 4099, 8191, 32 * 1024 + 1, 65_537])
    }
}

pub(crate) fn check_codec(data: &[u8], opts: ReadOpts, stats: &mut Stats) -> Result<(), Failure> {
    // The scrape request, as a client reads a poll's body.
    let whole = guard("ScrapeRequest::from_bytes", || {
        ScrapeRequest::from_bytes(data, opts.max_head)
    })?;
    let trickled = guard("ScrapeRequest::parse", || {
        ScrapeRequest::parse(&mut trickle(data, opts), opts.max_head)
    })?;
    same_outcome("ScrapeRequest::parse", &whole, &trickled)?;
    match &whole {
        Ok(req) => {
            stats.requests_ok += 1;
            check_request_round_trip(req, stats)?;
        }
        Err(e) => check_error("ScrapeRequest::from_bytes", e, stats),
    }

    // The serialized response, as the proxy reads a push.
    let whole = guard("Response::from_bytes", || {
        Response::from_bytes(data, opts.max_head, Some(opts.max_body))
    })?;
    match &whole {
        Ok(resp) => {
            stats.responses_ok += 1;
            if !resp.body.is_empty() {
                stats.nonempty_bodies += 1;
            }
            if resp.head.framing().ok() == Some(Framing::Chunked) {
                stats.chunked_bodies += 1;
            }
            ensure!(
                resp.body.len() as u64 <= opts.max_body,
                "Response::from_bytes: body over the limit",
                "{} bytes, limit {}",
                resp.body.len(),
                opts.max_body
            );
            check_response_round_trip(resp, opts, stats)?;
        }
        Err(e) => {
            if let ProtocolError::BodyTooLarge { limit } = e {
                ensure!(
                    *limit == opts.max_body,
                    "Response::from_bytes: BodyTooLarge names the wrong limit",
                    "{limit} instead of {}",
                    opts.max_body
                );
            }
            check_error("Response::from_bytes", e, stats);
        }
    }
    let incremental = read_incrementally(data, opts, stats)?;
    same_outcome("ResponseHead::parse + BodyReader", &whole, &incremental)?;
    Ok(())
}

/// Parses a response the way the proxy streams a push: head first, then the body in reads of
/// odd sizes, checking the limit after every read.
pub(crate) fn read_incrementally(
    data: &[u8],
    opts: ReadOpts,
    stats: &mut Stats,
) -> Result<Result<Response, ProtocolError>, Failure> {
    let mut input = trickle(data, opts);
    let head = match guard("ResponseHead::parse", || {
        ResponseHead::parse(&mut input, opts.max_head)
    })? {
        Ok(head) => head,
        Err(e) => return Ok(Err(e)),
    };
    let framing = match guard("Framing::of_response", || head.framing())? {
        Ok(f) => f,
        Err(e) => {
            check_error("Framing::of_response", &e, stats);
            return Ok(Err(e));
        }
    };
    check_framing(&head, framing)?;
    let mut reader = BodyReader::new(&mut input, framing, Some(opts.max_body));
    let mut sizes = Rng::new(opts.reads);
    let mut buf = vec![0u8; 65_537];
    let mut body = Vec::new();
    loop {
        let n = read_size_for(&mut sizes, data.len());
        match guard("BodyReader::read", || reader.read(&mut buf[..n]))? {
            Ok(0) => {
                ensure!(
                    reader.is_done(),
                    "BodyReader: end of body reported before is_done()",
                    "framing {framing:?}, {} bytes read",
                    body.len()
                );
                break;
            }
            Ok(k) => {
                ensure!(
                    k <= n,
                    "BodyReader::read: more bytes than the buffer",
                    "{k} > {n}"
                );
                body.extend_from_slice(&buf[..k]);
                ensure!(
                    body.len() as u64 <= opts.max_body,
                    "BodyReader: delivered more than its limit",
                    "{} bytes, limit {}",
                    body.len(),
                    opts.max_body
                );
                // Also bounds this loop: every successful read consumes input.
                ensure!(
                    body.len() <= data.len(),
                    "BodyReader: more body than input",
                    "{} bytes of body from {} bytes of input",
                    body.len(),
                    data.len()
                );
                ensure!(
                    reader.bytes_read() == body.len() as u64,
                    "BodyReader::bytes_read disagrees with what was read",
                    "{} vs {}",
                    reader.bytes_read(),
                    body.len()
                );
            }
            Err(e) => {
                // A caller that reads once more after an error must get an error or data,
                // never a panic.
                guard("BodyReader::read after an error", || {
                    let _ = reader.read(&mut buf[..n]);
                })?;
                let e = ProtocolError::from(e);
                check_error("BodyReader::read", &e, stats);
                return Ok(Err(e));
            }
        }
    }
    Ok(Ok(Response { head, body }))
}

/// A length the framing reports is the one every Content-Length value says, except for the
/// statuses that never have a body (1xx, 204, 304: RFC 9112 6.3).
pub(crate) fn check_framing(head: &ResponseHead, framing: Framing) -> Result<(), Failure> {
    let headers = &head.headers;
    let bodiless = head.status < 200 || head.status == 204 || head.status == 304;
    if bodiless {
        ensure!(
            framing == Framing::Length(0),
            "Framing::of_response: a bodiless status has a body",
            "{} with {framing:?}",
            head.status
        );
        return Ok(());
    }
    if let Framing::Length(n) = framing {
        for value in headers.get_all("Content-Length") {
            for part in value.split(',') {
                ensure!(
                    part.trim().parse::<u64>().ok() == Some(n),
                    "Framing::of_response: length disagrees with a Content-Length value",
                    "{n} from {value:?}"
                );
            }
        }
    }
    Ok(())
}

/// The headers `to_proxy_bytes` should write for `req`, as Go's `Request.WriteProxy` does:
/// `Host` (from the URL's host and port when absent), the first `User-Agent`, then the rest
/// sorted by name, names compared case-insensitively.
pub(crate) fn proxy_form_headers(req: &ScrapeRequest) -> Vec<(String, String)> {
    let host = match req.headers.get("Host") {
        Some(h) => h.to_string(),
        None => {
            let authority = req.url.split_once("://").map_or("", |(_, rest)| {
                rest.split(['/', '?', '#']).next().unwrap_or("")
            });
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, hp)| hp)
                .to_string()
        }
    };
    let mut out = vec![("host".to_string(), host)];
    if let Some(ua) = req.headers.get("User-Agent") {
        out.push(("user-agent".into(), ua.into()));
    }
    let mut rest: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("Host") && !n.eq_ignore_ascii_case("User-Agent"))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(rest);
    out
}

pub(crate) fn check_request_round_trip(
    req: &ScrapeRequest,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let target = guard("ScrapeRequest::target", || req.target())?;
    if let Err(e) = &target {
        return Err(Failure {
            key: "ScrapeRequest::parse accepted a URL that target() refuses".into(),
            detail: format!("{:?}: {e}", req.url),
        });
    }
    let bytes = guard("ScrapeRequest::to_proxy_bytes", || req.to_proxy_bytes())?;
    let back = guard("ScrapeRequest::from_bytes", || {
        ScrapeRequest::from_bytes(&bytes, bytes.len() + 1)
    })?;
    let back = match back {
        Ok(b) => b,
        Err(e) => {
            check_error("ScrapeRequest::from_bytes", &e, stats);
            return Err(Failure {
                key: "ScrapeRequest::to_proxy_bytes: the written request does not parse".into(),
                detail: format!("{e}; written: {:?}", lossy(&bytes)),
            });
        }
    };
    ensure!(
        back.method == req.method && back.url == req.url,
        "ScrapeRequest::to_proxy_bytes: request line changed in a round trip",
        "{} {} became {} {}",
        req.method,
        req.url,
        back.method,
        back.url
    );
    let expected = proxy_form_headers(req);
    let got: Vec<(String, String)> = back
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect();
    if got != expected {
        let key = if got.get(1..) == expected.get(1..) && got.first().is_some_and(|h| h.0 == "host")
        {
            "ScrapeRequest::to_proxy_bytes: Host from the URL keeps userinfo (Go: URL.Host)"
        } else {
            "ScrapeRequest::to_proxy_bytes: headers changed in a round trip"
        };
        return Err(Failure {
            key: key.into(),
            detail: format!("expected {expected:?}, got {got:?}"),
        });
    }
    let again = guard("ScrapeRequest::to_proxy_bytes", || back.to_proxy_bytes())?;
    ensure!(
        again == bytes,
        "ScrapeRequest::to_proxy_bytes: writing a parsed written request changes it",
        "{:?} became {:?}",
        lossy(&bytes),
        lossy(&again)
    );
    Ok(())
}

pub(crate) fn end_to_end(head: &ResponseHead) -> Vec<(String, String)> {
    head.end_to_end_headers()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn check_response_round_trip(
    resp: &Response,
    opts: ReadOpts,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let bytes = guard("Response::to_bytes", || resp.to_bytes())?;
    let back = guard("Response::from_bytes", || {
        Response::from_bytes(&bytes, bytes.len() + 1, Some(opts.max_body))
    })?;
    let back = match back {
        Ok(b) => b,
        Err(e) => {
            check_error("Response::from_bytes", &e, stats);
            return Err(Failure {
                key: "Response::to_bytes: the written response does not parse".into(),
                detail: format!("{e}; written: {:?}", lossy(&bytes)),
            });
        }
    };
    ensure!(
        (back.head.status, &back.head.reason) == (resp.head.status, &resp.head.reason),
        "Response::to_bytes: status line changed in a round trip",
        "{} {:?} became {} {:?}",
        resp.head.status,
        resp.head.reason,
        back.head.status,
        back.head.reason
    );
    ensure!(
        back.body == resp.body,
        "Response::to_bytes: body changed in a round trip",
        "{} bytes became {} bytes",
        resp.body.len(),
        back.body.len()
    );
    ensure!(
        end_to_end(&back.head) == end_to_end(&resp.head),
        "Response::to_bytes: end-to-end headers changed in a round trip",
        "{:?} became {:?}",
        end_to_end(&resp.head),
        end_to_end(&back.head)
    );
    ensure!(
        back.head.framing().ok() == Some(Framing::Length(resp.body.len() as u64)),
        "Response::to_bytes: not framed by Content-Length",
        "{:?}",
        back.head.headers
    );
    let again = guard("Response::to_bytes", || back.to_bytes())?;
    ensure!(
        again == bytes,
        "Response::to_bytes: writing a parsed written response changes it",
        "{:?} became {:?}",
        lossy(&bytes),
        lossy(&again)
    );
    Ok(())
}

/// Equal but for f64 rounding: durations are summed as f64 seconds, whose precision is a
/// microsecond up to a few years and 30 µs at 5,000 years (parse_duration accepts 30,000).
pub(crate) fn close(a: Duration, b: Duration) -> bool {
    let slack = Duration::from_micros(1) + a.max(b).mul_f64(1e-15);
    a.max(b) - a.min(b) <= slack
}

/// What the header parser would make of a value: no control characters but tab, trimmed.
pub(crate) fn as_header_value(s: &str) -> String {
    s.chars()
        .filter(|&c| !(c < ' ' && c != '\t') && c != '\u{7f}')
        .collect::<String>()
        .trim_matches([' ', '\t'])
        .to_string()
}

pub(crate) fn check_text(text: &str, stats: &mut Stats) -> Result<(), Failure> {
    match guard("Target::parse", || Target::parse(text))? {
        Ok(t) => {
            ensure!(
                (t.scheme == "http" || t.scheme == "https")
                    && !t.host.is_empty()
                    && t.host == t.host.to_ascii_lowercase()
                    && !t.path_and_query.is_empty()
                    && !t.path_and_query.bytes().any(|b| b <= b' ' || b == 0x7f),
                "Target::parse: accepted target breaks its documented shape",
                "{text:?} -> {t:?}"
            );
        }
        Err(e) => check_error("Target::parse", &e, stats),
    }
    if let Err(e) = guard("ScrapeRequest::get", || ScrapeRequest::get(text))? {
        check_error("ScrapeRequest::get", &e, stats);
    }

    match guard("parse_duration", || parse_duration(text))? {
        Ok(d) => {
            ensure!(
                d <= Duration::from_secs(1_000_000_000_001),
                "parse_duration: over its 1e12 s bound",
                "{text:?} -> {d:?}"
            );
            let written = guard("format_duration", || format_duration(d))?;
            let back = guard("parse_duration", || parse_duration(&written))?;
            let expected = Duration::from_millis(d.as_millis() as u64);
            ensure!(
                back.as_ref().is_ok_and(|b| close(*b, expected)),
                "format_duration: output does not parse back to the same milliseconds",
                "{text:?} -> {d:?} -> {written:?} -> {back:?}"
            );
        }
        Err(e) => check_error("parse_duration", &e, stats),
    }

    match guard("parse_scrape_timeout", || parse_scrape_timeout(text))? {
        Ok(d) => {
            ensure!(
                d <= Duration::from_secs(1_000_000_001),
                "parse_scrape_timeout: over its 1e9 s bound",
                "{text:?} -> {d:?}"
            );
            let written = guard("format_scrape_timeout", || format_scrape_timeout(d))?;
            let back = guard("parse_scrape_timeout", || parse_scrape_timeout(&written))?;
            let expected = Duration::from_millis(d.as_millis().max(1) as u64);
            ensure!(
                back.as_ref().is_ok_and(|b| close(*b, expected)),
                "format_scrape_timeout: output does not parse back to the same milliseconds",
                "{text:?} -> {d:?} -> {written:?} -> {back:?}"
            );
        }
        Err(e) => check_error("parse_scrape_timeout", &e, stats),
    }

    let value = as_header_value(text);
    for name in ["Content-Length", "Transfer-Encoding"] {
        let mut headers = Headers::new();
        headers.append(name, value.as_str());
        if name == "Content-Length" {
            headers.append("content-length", "7");
        }
        let mut head = ResponseHead::new(200);
        head.headers = headers;
        match guard("Framing::of_response", || head.framing())? {
            Ok(f) => check_framing(&head, f)?,
            Err(e) => check_error("Framing::of_response", &e, stats),
        }
    }
    Ok(())
}

/// Encodes `data` with `ChunkedEncoder` (the one chunked writer) in random pieces; `BodyReader`
/// must give back exactly `data`, or BodyTooLarge when it exceeds the limit.
pub(crate) fn check_chunked(
    data: &[u8],
    opts: ReadOpts,
    plan: u64,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let mut rng = Rng::new(plan);
    // Each read of the inner reader costs the encoder a 32 KiB buffer refill, which a debug
    // build feels: trickle only small data.
    let step = if data.len() <= 128 {
        *rng.pick(&[1, 3, 100, 32 * 1024 - 1, 32 * 1024 + 5, usize::MAX])
    } else {
        *rng.pick(&[1000, 32 * 1024 - 1, 32 * 1024 + 5, usize::MAX])
    };
    let mut encoder = ChunkedEncoder::new(Trickle { data, step });
    let mut encoded = Vec::new();
    let mut buf = vec![0u8; 65_537];
    loop {
        let n = read_size_for(&mut rng, data.len());
        let got = guard("ChunkedEncoder::read", || encoder.read(&mut buf[..n]))?;
        match got {
            Ok(0) => break,
            Ok(k) => encoded.extend_from_slice(&buf[..k]),
            Err(e) => {
                return Err(Failure {
                    key: "ChunkedEncoder::read: error on an in-memory reader".into(),
                    detail: e.to_string(),
                })
            }
        }
        // A chunk of one byte is the worst case: "1\r\n", the byte, "\r\n".
        ensure!(
            encoded.len() <= 6 * data.len() + 5,
            "ChunkedEncoder: output keeps growing",
            "{} bytes for {} bytes of data",
            encoded.len(),
            data.len()
        );
    }
    decode_and_compare("ChunkedEncoder", data, &encoded, opts, &mut rng, stats)?;

    stats.chunked_round_trips += 1;
    Ok(())
}

pub(crate) fn decode_and_compare(
    what: &str,
    data: &[u8],
    encoded: &[u8],
    opts: ReadOpts,
    rng: &mut Rng,
    stats: &mut Stats,
) -> Result<(), Failure> {
    ensure!(
        encoded.ends_with(b"0\r\n\r\n"),
        format!("{what}: output does not end with the last chunk"),
        "ends with {:?}",
        lossy(&encoded[encoded.len().saturating_sub(16)..])
    );
    let limit = (opts.max_body != u64::MAX).then_some(opts.max_body);
    let mut input = trickle(encoded, opts);
    let mut reader = BodyReader::new(&mut input, Framing::Chunked, limit);
    let mut decoded = Vec::new();
    let mut buf = vec![0u8; 65_537];
    let outcome = loop {
        let n = read_size_for(rng, data.len());
        match guard("BodyReader::read", || reader.read(&mut buf[..n]))? {
            Ok(0) => break Ok(()),
            Ok(k) => decoded.extend_from_slice(&buf[..k]),
            Err(e) => break Err(ProtocolError::from(e)),
        }
        ensure!(
            decoded.len() <= data.len() && limit.is_none_or(|l| decoded.len() as u64 <= l),
            format!("{what}: BodyReader delivered more than was encoded or allowed"),
            "{} bytes decoded of {}, limit {limit:?}",
            decoded.len(),
            data.len()
        );
    };
    let over = limit.is_some_and(|l| data.len() as u64 > l);
    match outcome {
        Ok(()) => {
            ensure!(
                !over,
                format!("{what}: a body over the limit was accepted"),
                "{} bytes, limit {limit:?}",
                data.len()
            );
            ensure!(
                decoded == data,
                format!("{what}: decoding does not give back the data"),
                "{} bytes in, {} bytes out",
                data.len(),
                decoded.len()
            );
            ensure!(
                reader.is_done(),
                format!("{what}: BodyReader not done at the end"),
                ""
            );
            let mut rest = Vec::new();
            let _ = input.read_to_end(&mut rest);
            ensure!(
                rest.is_empty(),
                format!("{what}: bytes left after the last chunk"),
                "{rest:?}"
            );
        }
        Err(e) => {
            ensure!(
                over && matches!(e, ProtocolError::BodyTooLarge { .. }),
                format!("{what}: BodyReader refused a valid chunked body"),
                "{e}"
            );
            check_error("BodyReader::read", &e, stats);
        }
    }

    // A chunked body cut anywhere before its end is never taken for a whole one.
    if !encoded.is_empty() {
        let cut = rng.below(encoded.len());
        let got = guard("read_body", || {
            read_body(&encoded[..cut], Framing::Chunked, None)
        })?;
        match got {
            Ok(body) => {
                return Err(Failure {
                    key: format!("{what}: a truncated chunked body was accepted"),
                    detail: format!(
                        "cut at {cut} of {}, {} bytes decoded",
                        encoded.len(),
                        body.len()
                    ),
                })
            }
            Err(e) => check_error("read_body", &e, stats),
        }
    }
    Ok(())
}

pub(crate) const ENDLESS_KINDS: usize = 10;

/// A stream that repeats `pattern` forever after `prefix`.
pub(crate) struct Endless {
    pub(crate) prefix: Vec<u8>,
    pub(crate) pattern: Vec<u8>,
    pub(crate) pos: usize,
}

impl Endless {
    pub(crate) fn new(prefix: &[u8], pattern: &[u8]) -> Endless {
        Endless {
            prefix: prefix.to_vec(),
            pattern: pattern.to_vec(),
            pos: 0,
        }
    }
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Endless {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos < self.prefix.len() {
            Ok(&self.prefix[self.pos..])
        } else {
            Ok(&self.pattern[(self.pos - self.prefix.len()) % self.pattern.len()..])
        }
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.prefix.len() + self.pattern.len() {
            self.pos = self.prefix.len() + (self.pos - self.prefix.len()) % self.pattern.len();
        }
    }
}

/// Streams that never end: bodies, heads, chunk lines and trailers. Each must stop with an
/// error once its limit is reached, having delivered no more than the limit.
pub(crate) fn check_endless(kind: usize, limit: u64, stats: &mut Stats) -> Result<(), Failure> {
    stats.endless += 1;
    let chunk_4k: Vec<u8> = [&b"1000\r\n"[..], &[b'x'; 4096], b"\r\n"].concat();
    let lines = b"metric 1\n".repeat(500);
    // One-byte chunks cost a chunk-size line each: a debug build needs seconds for a MiB.
    let limit = if kind == 3 {
        limit.min(64 * 1024)
    } else {
        limit
    };
    // A head is parsed into a header list: keep endless heads to a few thousand lines.
    let head_limit = (limit as usize).min(64 * 1024);
    let (what, result): (&str, Result<usize, ProtocolError>) = match kind {
        0..=3 => {
            let (framing, src) = match kind {
                0 => (Framing::UntilEof, Endless::new(b"", &lines)),
                1 => (Framing::Length(u64::MAX), Endless::new(b"", &lines)),
                2 => (Framing::Chunked, Endless::new(b"", &chunk_4k)),
                _ => (Framing::Chunked, Endless::new(b"", b"1;x=y\r\nz\r\n")),
            };
            let mut reader = BodyReader::new(src, framing, Some(limit));
            let mut buf = vec![0u8; 65_537];
            let mut sizes = Rng::new(limit ^ kind as u64);
            let mut total = 0u64;
            let result = loop {
                let n = read_size_for(&mut sizes, limit as usize);
                match guard("BodyReader::read", || reader.read(&mut buf[..n]))? {
                    Ok(0) => break Ok(total as usize),
                    Ok(k) => total += k as u64,
                    Err(e) => break Err(ProtocolError::from(e)),
                }
                ensure!(
                    total <= limit,
                    "BodyReader: delivered more than its limit from an endless stream",
                    "{total} bytes, limit {limit}, framing {framing:?}"
                );
            };
            // read_body must stop the same way.
            let src = match kind {
                0 | 1 => Endless::new(b"", &lines),
                2 => Endless::new(b"", &chunk_4k),
                _ => Endless::new(b"", b"1;x=y\r\nz\r\n"),
            };
            let whole = guard("read_body", || read_body(src, framing, Some(limit)))?;
            ensure!(
                matches!(whole, Err(ProtocolError::BodyTooLarge { limit: l }) if l == limit),
                "read_body: an endless body did not end in BodyTooLarge",
                "{whole:?}"
            );
            ("BodyReader on an endless body", result)
        }
        4 => {
            let mut src = Endless::new(b"HTTP/1.1 200 OK\r\n", b"X-A: b\r\n");
            let r = guard("ResponseHead::parse", || {
                ResponseHead::parse(&mut src, head_limit)
            })?;
            ("ResponseHead::parse on endless headers", r.map(|_| 0))
        }
        5 => {
            let mut src = Endless::new(b"GET http://h:1/m HTTP/1.1\r\n", b"X-A: b\r\n");
            let r = guard("ScrapeRequest::parse", || {
                ScrapeRequest::parse(&mut src, head_limit)
            })?;
            ("ScrapeRequest::parse on endless headers", r.map(|_| 0))
        }
        6 => {
            let mut src = Endless::new(b"HTTP/1.1 200 OK\r\nX-A: ", b"b");
            let r = guard("ResponseHead::parse", || {
                ResponseHead::parse(&mut src, head_limit)
            })?;
            (
                "ResponseHead::parse on an endless header line",
                r.map(|_| 0),
            )
        }
        7 => {
            let src = Endless::new(b"1", b";aaaaaaa");
            let r = guard("read_body", || {
                read_body(src, Framing::Chunked, Some(limit))
            })?;
            (
                "read_body on an endless chunk-size line",
                r.map(|b| b.len()),
            )
        }
        8 => {
            let src = Endless::new(b"1\r\nz\r\n0\r\n", b"X-Trailer: 1\r\n");
            let r = guard("read_body", || {
                read_body(src, Framing::Chunked, Some(limit))
            })?;
            ("read_body on endless trailers", r.map(|b| b.len()))
        }
        _ => {
            let mut src = Endless::new(b"", b"\r\n");
            let r = guard("ScrapeRequest::parse", || {
                ScrapeRequest::parse(&mut src, head_limit)
            })?;
            ("ScrapeRequest::parse on endless blank lines", r.map(|_| 0))
        }
    };
    match result {
        Ok(n) => Err(Failure {
            key: format!("{what}: ended without an error"),
            detail: format!("{n} bytes, limit {limit}"),
        }),
        Err(e) => {
            if kind <= 3 {
                ensure!(
                    matches!(e, ProtocolError::BodyTooLarge { limit: l } if l == limit),
                    format!("{what}: stopped with something other than BodyTooLarge"),
                    "{e}"
                );
            }
            if (4..=6).contains(&kind) {
                ensure!(
                    matches!(e, ProtocolError::HeadTooLarge { limit: l } if l == head_limit),
                    format!("{what}: stopped with something other than HeadTooLarge"),
                    "{e}"
                );
            }
            check_error(what, &e, stats);
            Ok(())
        }
    }
}
