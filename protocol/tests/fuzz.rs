//! Randomized test of the codec on proptest: the Go captures, random bytes and generated
//! messages, mutated, fed to every parser entry point. Nothing may panic, hang or grow memory
//! past the limits; what parses must survive being written and parsed again; chunked bodies
//! round-trip; endless streams stop at their limits.
//!
//!   cargo test -p pushprox-protocol --test fuzz                 # the CI budget, a few seconds
//!   PROPTEST_RNG_SEED=12345 cargo test -p pushprox-protocol --test fuzz   # a fixed seed
//!   scripts/fuzz.sh                                             # release build, many cases
//!
//! Cases per property: PROPTEST_CASES, else the CI budget below. A failure is shrunk by
//! proptest, printed with its minimal input, and its seed is kept in
//! `tests/fuzz.proptest-regressions`, which every later run replays first (commit the file).
//!
//! The `regression_*` tests below are inputs an earlier version of this test found; they state
//! the behaviour the codec should have.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read};
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence, TestCaseError};
use pushprox_protocol::{
    format_duration, format_scrape_timeout, parse_duration, parse_scrape_timeout, read_body,
    BodyReader, ChunkedEncoder, Framing, Headers, ProtocolError, Response, ResponseHead,
    ScrapeRequest, Target, DEFAULT_MAX_HEAD,
};

/// The body limit most cases use, as the proxy would.
const BODY_LIMIT: u64 = 1 << 20;
/// Peak resident memory the whole test may reach.
const MAX_HWM_KIB: u64 = 200 * 1024;
/// Error texts are logged: longer than this is not the "short excerpt" error.rs promises.
const MAX_DISPLAY_CHARS: usize = 1024;
/// Mutated inputs are cut to this size.
const MAX_INPUT: usize = 512 * 1024;

// ---------------------------------------------------------------------------------------------
// Budget and seeds

/// proptest's configuration for a property: `ci_cases` cases unless PROPTEST_CASES says
/// otherwise, seeds kept beside this file, and PROPTEST_RNG_SEED honoured (proptest reads it).
fn config(ci_cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = ci_cases;
    }
    config.failure_persistence = Some(Box::new(FileFailurePersistence::WithSource(
        "proptest-regressions",
    )));
    config
}

/// A failed property as proptest reports it.
fn fail(failure: Failure) -> TestCaseError {
    TestCaseError::fail(format!("{}: {}", failure.key, failure.detail))
}

/// Peak resident memory of this process so far.
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn check_memory() -> Result<(), TestCaseError> {
    if let Some(hwm) = vm_hwm_kib() {
        prop_assert!(
            hwm <= MAX_HWM_KIB,
            "peak memory {hwm} KiB is over {MAX_HWM_KIB} KiB"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Read sizes inside a case

/// SplitMix64, seeded by proptest: picks read sizes and chunk sizes inside one case.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num/den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs

// ---------------------------------------------------------------------------------------------
// Inputs

const HEADER_NAMES: &[&str] = &[
    "Host",
    "User-Agent",
    "user-agent",
    "Accept",
    "Accept-Encoding",
    "Content-Length",
    "content-length",
    "Transfer-Encoding",
    "Content-Type",
    "Content-Encoding",
    "Id",
    "X-Prometheus-Scrape-Timeout-Seconds",
    "X-Prometheus-Scrape-Timeout",
    "Connection",
    "Trailer",
    "Date",
    "X-A",
];

const HEADER_VALUES: &[&str] = &[
    "gzip",
    "chunked",
    "identity",
    "gzip, chunked",
    "chunked, gzip",
    "identity, chunked",
    "CHUNKED",
    "close",
    "keep-alive",
    "text/plain; version=0.0.4; charset=utf-8",
    "0",
    "1",
    "10",
    "0.5",
    "1e9",
    "",
    "a\tb",
    "Prometheus/2.42.0+ds",
    "88947b20-8f0a-42c8-ad06-506c10faba9c",
    "caf\u{e9}",
];

/// Numbers at and past the edges of u16, u32, u64, i64, f64 and the 15-hex-digit chunk limit,
/// and numbers in shapes a lenient parser might accept.
const HUGE_NUMBERS: &[&str] = &[
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "340282366920938463463374607431768211456",
    "4294967296",
    "9223372036854775807",
    "65536",
    "ffffffffffffffff",
    "fffffffffffffff",
    "7fffffffffffffff",
    "10000000000000000",
    "000000000000000000000001",
    "1e309",
    "-1",
    "+5",
    "0x10",
    " 5",
    "1,1",
    "1, 2",
    "NaN",
    "inf",
];

/// Bytes that split, end or poison a line.
const SPECIAL_BYTES: &[u8] = b"\r\n\0 \t:;,@/?#[]%\x7f\x80\xc2\xff0fF";
fn fixture_corpus() -> Vec<Vec<u8>> {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("fixture dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "http"))
        .collect();
    paths.sort();
    let mut corpus = Vec::new();
    for path in paths {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The bodies of the captured polls and pushes are messages of their own.
        if let Some(at) = find(&bytes, b"\r\n\r\n") {
            if at + 4 < bytes.len() {
                corpus.push(bytes[at + 4..].to_vec());
            }
        }
        corpus.push(bytes);
    }
    assert!(corpus.len() >= 10, "fixtures missing in {dir}");
    corpus
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// How a case reads its input: limits, buffer sizes, and the seed for odd-sized reads.
#[derive(Clone, Copy, Debug)]
struct ReadOpts {
    max_head: usize,
    max_body: u64,
    /// Capacity of the `BufReader` the incremental parsers read through.
    buf_capacity: usize,
    /// Most bytes one `read` of the underlying stream returns.
    step: usize,
    /// Seeds the sizes of the reads from a `BodyReader`.
    reads: u64,
}

fn read_opts() -> impl Strategy<Value = ReadOpts> {
    (
        prop_oneof![3 => Just(DEFAULT_MAX_HEAD), 1 => 0usize..4096],
        prop_oneof![3 => Just(BODY_LIMIT), 1 => 0u64..8192],
        select(&[1usize, 2, 3, 7, 64, 1000, 8192][..]),
        select(&[1usize, 2, 5, 61, 4096, usize::MAX][..]),
        any::<u64>(),
    )
        .prop_map(|(max_head, max_body, buf_capacity, step, reads)| ReadOpts {
            max_head,
            max_body,
            buf_capacity,
            step,
            reads,
        })
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![3 => select(HEADER_NAMES).prop_map(String::from), 1 => token()]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(HEADER_VALUES).prop_map(String::from),
        2 => select(HUGE_NUMBERS).prop_map(String::from),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => (0u64..100_000).prop_map(|n| n.to_string()),
        2 => "[ -~\t\u{e9}]{0,80}",
    ]
}

fn url() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        1 => token(),
        4 => select(&[
            "pp-bar-go",
            "client.example",
            "Client.Example",
            "127.0.0.1",
            "[::1]",
            "[fe80::1%25eth0]",
            "[::1",
            "a:b",
            "",
        ][..])
        .prop_map(String::from),
    ];
    let port = prop_oneof![
        3 => (0u32..65536).prop_map(|p| format!(":{p}")),
        1 => select(&["0", "65535", "65536", "99999999999999999999", "", "x"][..])
            .prop_map(|p| format!(":{p}")),
        2 => Just(String::new()),
    ];
    (
        select(&["http", "http", "https", "HTTP", "ftp", ""][..]),
        prop_oneof![
            14 => Just("://"),
            1 => Just(":/"),
        ],
        prop_oneof![
            5 => Just(""),
            1 => select(&["user:pw@", "u@", "@", ":@", "a%20b@", "a@b@"][..]),
        ],
        host,
        port,
        select(
            &[
                "/metrics",
                "/",
                "",
                "/metrics?_scheme=https",
                "?a=b",
                "/a#frag",
                "#x",
                "/probe?target=http://x:1/&module=http_2xx",
                "/caf\u{e9}",
            ][..],
        ),
    )
        .prop_map(|(scheme, sep, userinfo, host, port, path)| {
            format!("{scheme}{sep}{userinfo}{host}{port}{path}")
        })
}

/// A scrape request in proxy form, mostly well formed.
fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![7 => Just("\r\n"), 1 => Just("\n")],
        prop::bool::weighted(0.1),
        prop_oneof![
            6 => Just("GET".to_string()),
            1 => Just("HEAD".to_string()),
            1 => Just("POST".to_string()),
            1 => Just("get".to_string()),
            1 => token(),
        ],
        url(),
        select(&["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2"][..]),
        prop::bool::weighted(0.75),
        prop::collection::vec((header_name(), header_value()), 0..10),
        prop_oneof![9 => Just(Vec::new()), 1 => prop::collection::vec(any::<u8>(), 0..100)],
    )
        .prop_map(|(eol, blank, method, url, version, host, headers, junk)| {
            let mut out = String::new();
            if blank {
                out.push_str(eol);
            }
            let _ = write!(out, "{method} {url} {version}{eol}");
            if host {
                let authority = url.split_once("://").map_or("", |(_, rest)| {
                    rest.split(['/', '?', '#']).next().unwrap_or("")
                });
                let _ = write!(out, "Host: {authority}{eol}");
            }
            for (name, value) in headers {
                let _ = write!(out, "{name}: {value}{eol}");
            }
            out.push_str(eol);
            let mut bytes = out.into_bytes();
            bytes.extend(junk);
            bytes
        })
}

/// A serialized response with every kind of framing, mostly well formed.
fn response() -> impl Strategy<Value = Vec<u8>> {
    let status = prop_oneof![
        6 => select(&[200u32, 200, 204, 304, 404, 408, 500, 503][..]).prop_map(|s| s.to_string()),
        1 => (0u32..1100).prop_map(|s| s.to_string()),
        1 => select(&["20", "2000", "099", "1e2", " 200"][..]).prop_map(String::from),
    ];
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..4096),
        (0usize..40).prop_map(|n| {
            (0..n)
                .flat_map(|i| format!("metric_{i}{{a=\"b\"}} {i}\n").into_bytes())
                .collect()
        }),
    ];
    // How the length is written: right, huge, or off by one.
    let length_kind = prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)];
    (
        prop_oneof![9 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..])],
        select(&["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2", "http/1.1"][..]),
        status,
        select(&["OK", "", "Internal Server Error", "x\ty", "caf\u{e9}"][..]),
        body,
        prop::collection::vec((header_name(), header_value()), 0..8),
        0u8..7,
        length_kind,
        select(HUGE_NUMBERS),
        any::<u64>(),
    )
        .prop_map(
            |(
                eol,
                version,
                status,
                reason,
                body,
                mut headers,
                framing,
                length_kind,
                huge,
                plan,
            )| {
                let mut rng = Rng::new(plan);
                let length = match length_kind {
                    0 => body.len().to_string(),
                    1 => huge.to_string(),
                    _ => (body.len() as u64)
                        .wrapping_add(rng.range(0, 2) as u64)
                        .wrapping_sub(1)
                        .to_string(),
                };
                let mut framing_headers: Vec<(String, String)> = Vec::new();
                match framing {
                    0 | 1 => framing_headers.push(("Content-Length".into(), length)),
                    2 => framing_headers.push(("Transfer-Encoding".into(), "chunked".into())),
                    3 => {
                        framing_headers.push(("Transfer-Encoding".into(), "chunked".into()));
                        framing_headers.push(("Content-Length".into(), length));
                    }
                    4 => {}
                    5 => framing_headers.push((
                        "Transfer-Encoding".into(),
                        rng.pick(&["gzip", "identity", "chunked, identity", "gzip, chunked", ""])
                            .to_string(),
                    )),
                    _ => {
                        framing_headers.push(("Content-Length".into(), length.clone()));
                        let second = if rng.chance(1, 2) { length } else { "7".into() };
                        framing_headers.push(("content-length".into(), second));
                    }
                }
                for h in framing_headers {
                    let at = rng.below(headers.len() + 1);
                    headers.insert(at, h);
                }
                let mut out = Vec::new();
                out.extend_from_slice(format!("{version} {status} {reason}").as_bytes());
                out.extend_from_slice(eol);
                for (n, v) in &headers {
                    out.extend_from_slice(format!("{n}: {v}").as_bytes());
                    out.extend_from_slice(eol);
                }
                out.extend_from_slice(eol);
                if matches!(framing, 2 | 3) {
                    out.extend(encode_chunks_randomly(&mut rng, &body, eol));
                } else {
                    out.extend(body);
                }
                out
            },
        )
}

/// Chunked encoding with random chunk sizes, size spellings, extensions and trailers, and now
/// and then a wrong or huge size.
fn encode_chunks_randomly(rng: &mut Rng, body: &[u8], eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let n = rng.range(1, rest.len().min(5000));
        let size = match rng.below(40) {
            0 => rng.pick(HUGE_NUMBERS).to_string(),
            1 => format!("{:x}", n + 1),
            2 => format!("{:x}", n - 1),
            3 => format!("{n:08X}"),
            4 => format!("{n:x};name=value"),
            5 => format!("{n:x} ; ext"),
            _ => format!("{n:x}"),
        };
        out.extend_from_slice(size.as_bytes());
        out.extend_from_slice(eol);
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(eol);
        rest = &rest[n..];
    }
    out.extend_from_slice(if rng.chance(1, 10) { b"0;last" } else { b"0" });
    out.extend_from_slice(eol);
    if rng.chance(1, 5) {
        out.extend_from_slice(b"X-Trailer: 1");
        out.extend_from_slice(eol);
    }
    if rng.chance(9, 10) {
        out.extend_from_slice(eol);
    }
    out
}

/// One change to an input, as a fuzzer makes them; proptest shrinks a case by dropping them.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip bits of the byte at this fraction of the input.
    Flip(u16, u8),
    /// Insert bytes, often ones that split, end or poison a line.
    Insert(u16, Vec<u8>),
    /// Remove a run of bytes.
    Remove(u16, u16),
    /// Repeat a run of bytes.
    Repeat(u16, u16, u8),
    /// Replace a number (a run of digits) with one at an edge.
    Number(u16, &'static str),
    /// Put a piece of another fixture here.
    Splice(u16, usize, u16, u16),
    /// Cut the input here.
    Truncate(u16),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let special = prop::collection::vec(select(SPECIAL_BYTES), 1..4);
    prop_oneof![
        any::<(u16, u8)>().prop_map(|(at, bits)| Mutation::Flip(at, bits | 1)),
        (
            any::<u16>(),
            prop_oneof![special, prop::collection::vec(any::<u8>(), 1..8)]
        )
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        any::<(u16, u16)>().prop_map(|(at, n)| Mutation::Remove(at, n % 64)),
        (any::<u16>(), any::<u16>(), 1u8..8).prop_map(|(at, n, times)| Mutation::Repeat(
            at,
            n % 64,
            times
        )),
        (any::<u16>(), select(HUGE_NUMBERS)).prop_map(|(at, n)| Mutation::Number(at, n)),
        (any::<u16>(), any::<usize>(), any::<u16>(), any::<u16>())
            .prop_map(|(at, which, from, n)| Mutation::Splice(at, which, from, n % 200)),
        any::<u16>().prop_map(Mutation::Truncate),
    ]
}

/// `at` (a fraction of 65,536) as a position in `0..=len`.
fn position(at: u16, len: usize) -> usize {
    (len * at as usize) / 65_536
}

fn mutate(data: &mut Vec<u8>, m: &Mutation, corpus: &[Vec<u8>]) {
    let len = data.len();
    match m {
        Mutation::Flip(at, bits) if len > 0 => data[position(*at, len - 1)] ^= bits,
        Mutation::Flip(..) => {}
        Mutation::Insert(at, bytes) => {
            let at = position(*at, len);
            data.splice(at..at, bytes.iter().copied());
        }
        Mutation::Remove(at, n) => {
            let at = position(*at, len);
            let end = (at + *n as usize).min(len);
            data.drain(at..end);
        }
        Mutation::Repeat(at, n, times) => {
            let at = position(*at, len);
            let end = (at + *n as usize).min(len);
            let piece = data[at..end].repeat(*times as usize);
            data.splice(at..at, piece);
        }
        Mutation::Number(at, number) => {
            let at = position(*at, len);
            if let Some(start) = data[at..]
                .iter()
                .position(u8::is_ascii_digit)
                .map(|p| p + at)
            {
                let end = data[start..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(len, |p| p + start);
                data.splice(start..end, number.bytes());
            }
        }
        Mutation::Splice(at, which, from, n) => {
            let other = &corpus[which % corpus.len()];
            let from = position(*from, other.len());
            let end = (from + *n as usize).min(other.len());
            let at = position(*at, len);
            data.splice(at..at, other[from..end].iter().copied());
        }
        Mutation::Truncate(at) => data.truncate(position(*at, len)),
    }
    data.truncate(MAX_INPUT);
}

/// Bytes for the message parsers: a fixture, random bytes, or a generated message, mutated.
fn codec_input(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let alphabet = b"HTTP/1.1 GET http://h:9/ 200 OK\r\n:;0123456789abcdef";
    let base = prop_oneof![
        9 => select(corpus.clone()),
        1 => prop::collection::vec(any::<u8>(), 0..600),
        1 => prop::collection::vec(select(&alphabet[..]), 0..600),
        4 => request(),
        5 => response(),
    ];
    (base, prop::collection::vec(mutation(), 0..8)).prop_map(move |(mut data, mutations)| {
        for m in &mutations {
            mutate(&mut data, m, &corpus);
        }
        data
    })
}

/// A URL, duration, scrape timeout or framing header value, mostly plausible, then mangled.
fn text_input() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        9 => select(&["0", "1", "15", "1.5", "500", "007", ".5", "5.", "1e3", "1..5", ""][..])
            .prop_map(String::from),
        1 => (20usize..400).prop_map(|n| "9".repeat(n)),
    ];
    let unit = select(
        &[
            "ns", "us", "\u{b5}s", "ms", "s", "m", "h", "d", "w", "y", "", "x", "S", "mss",
        ][..],
    );
    let duration = prop::collection::vec((number, unit), 1..4)
        .prop_map(|parts| parts.into_iter().map(|(n, u)| n + u).collect::<String>());
    let timeout = prop_oneof![
        select(&["10", "0.5", "1e9", "1e-300", "0", "-1", " 5 ", "NaN", "inf", "1e10", "0x1"][..])
            .prop_map(String::from),
        any::<u64>().prop_map(|bits| format!("{}", f64::from_bits(bits))),
        (0u32..100, 0u32..1000).prop_map(|(s, ms)| format!("{s}.{ms:03}")),
    ];
    let header = prop_oneof![
        select(HUGE_NUMBERS).prop_map(String::from),
        (0u32..10, 0u32..10).prop_map(|(a, b)| format!("{a}, {b}")),
        select(HEADER_VALUES).prop_map(String::from),
    ];
    let base = prop_oneof![url(), duration, timeout, header, "[\u{0}-\u{7ff}]{0,40}",];
    let special = select(
        &[
            '\n', '\r', '\0', '\t', ' ', '\u{85}', '\u{202e}', '\u{b5}', '.', '@', ':', '/', '[',
        ][..],
    );
    (
        base,
        prop::collection::vec((any::<u16>(), special, 0u8..4), 0..3),
    )
        .prop_map(|(text, edits)| {
            let mut s: Vec<char> = text.chars().collect();
            for (at, c, how) in edits {
                let at = position(at, s.len());
                match how {
                    0 => s.insert(at, c),
                    1 if at < s.len() => {
                        s.remove(at);
                    }
                    2 => {
                        let piece: Vec<char> = s[at..].iter().take(8).copied().collect();
                        s.splice(at..at, piece);
                    }
                    _ => s.truncate(at),
                }
            }
            s.into_iter().collect()
        })
}

/// Framing bytes put inside chunked data, where they must come out as data.
const FRAMING_PIECES: &[&[u8]] = &[b"\r\n", b"0\r\n\r\n", b"\n", b"5\r\n"];

/// Data to encode in chunks: framing bytes inside it must come out as data.
fn chunked_input() -> impl Strategy<Value = (Vec<u8>, ReadOpts, u64)> {
    let data = prop_oneof![
        39 => prop::collection::vec(any::<u8>(), 0..3000),
        1 => prop::collection::vec(any::<u8>(), 0..200_000),
    ];
    let pieces = prop::collection::vec((any::<u16>(), select(FRAMING_PIECES)), 0..4);
    (
        data,
        pieces,
        read_opts(),
        prop_oneof![3 => Just(None), 1 => any::<u16>().prop_map(Some)],
        any::<u64>(),
    )
        .prop_map(|(mut data, pieces, mut opts, limit, plan)| {
            for (at, piece) in pieces {
                let at = position(at, data.len());
                data.splice(at..at, piece.iter().copied());
            }
            if data.len() > 8192 {
                // Byte-at-a-time reads of a large body take seconds in a debug build and
                // find nothing that small bodies do not.
                opts.buf_capacity = opts.buf_capacity.max(1000);
                opts.step = opts.step.max(4096);
            }
            opts.max_body = match limit {
                None => u64::MAX,
                Some(at) => position(at, data.len() + 10) as u64,
            };
            (data, opts, plan)
        })
}

// ---------------------------------------------------------------------------------------------
// Checks

/// A property that did not hold, or a panic.
struct Failure {
    /// What failed, in words that stay the same for every input that hits the same bug.
    key: String,
    /// What happened on this input.
    detail: String,
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
fn guard<T>(entry: &str, f: impl FnOnce() -> T) -> Result<T, Failure> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Failure {
        key: format!("{entry}: panic"),
        detail: payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default(),
    })
}

fn variant(err: &ProtocolError) -> String {
    format!("{err:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

/// Error texts end up in logs and in HTTP reasons: they must say something, be one short line,
/// and show offending input escaped. A bad text is recorded in `stats.failures` and the case
/// goes on, so that it does not hide what the rest of the case would find.
fn check_error(entry: &str, err: &ProtocolError, stats: &mut Stats) {
    let name = variant(err);
    *stats.errors.entry(format!("{entry}: {name}")).or_default() += 1;
    if let Err(failure) = check_error_text(entry, &name, err) {
        stats.failures.push(failure);
    }
}

fn check_error_text(entry: &str, name: &str, err: &ProtocolError) -> Result<(), Failure> {
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
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(200).collect();
    if out.len() < s.len() {
        let _ = write!(out, "… ({} bytes)", s.len());
    }
    out
}

fn lossy(b: &[u8]) -> String {
    shorten(&String::from_utf8_lossy(b))
}

/// Both ways of parsing the same bytes must agree: same value, or errors with the same text.
fn same_outcome<T: PartialEq + std::fmt::Debug>(
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
struct Stats {
    requests_ok: u64,
    responses_ok: u64,
    nonempty_bodies: u64,
    chunked_bodies: u64,
    chunked_round_trips: u64,
    endless: u64,
    errors: BTreeMap<String, u64>,
    /// Failures found so far in the current case that did not stop it.
    failures: Vec<Failure>,
}

/// A reader that hands out at most `step` bytes per read, behind a `BufReader` of
/// `buf_capacity`: head lines and chunk lines then straddle buffer refills.
fn trickle(data: &[u8], opts: ReadOpts) -> BufReader<Trickle<'_>> {
    BufReader::with_capacity(
        opts.buf_capacity,
        Trickle {
            data,
            step: opts.step,
        },
    )
}

struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
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
fn read_size(rng: &mut Rng) -> usize {
    if rng.chance(1, 2) {
        *rng.pick(&[1, 2, 3, 7, 13, 61, 509, 4099, 8191, 32 * 1024 + 1, 65_537])
    } else {
        rng.range(1, 1000)
    }
}

/// Like [`read_size`], for bodies too large to read a byte at a time in a debug build.
fn read_size_for(rng: &mut Rng, total: usize) -> usize {
    if total <= 8192 {
        read_size(rng)
    } else {
        *rng.pick(&[509, 4099, 8191, 32 * 1024 + 1, 65_537])
    }
}

fn check_codec(data: &[u8], opts: ReadOpts, stats: &mut Stats) -> Result<(), Failure> {
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
fn read_incrementally(
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
fn check_framing(head: &ResponseHead, framing: Framing) -> Result<(), Failure> {
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
fn proxy_form_headers(req: &ScrapeRequest) -> Vec<(String, String)> {
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

fn check_request_round_trip(req: &ScrapeRequest, stats: &mut Stats) -> Result<(), Failure> {
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

fn end_to_end(head: &ResponseHead) -> Vec<(String, String)> {
    head.end_to_end_headers()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn check_response_round_trip(
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
fn close(a: Duration, b: Duration) -> bool {
    let slack = Duration::from_micros(1) + a.max(b).mul_f64(1e-15);
    a.max(b) - a.min(b) <= slack
}

/// What the header parser would make of a value: no control characters but tab, trimmed.
fn as_header_value(s: &str) -> String {
    s.chars()
        .filter(|&c| !(c < ' ' && c != '\t') && c != '\u{7f}')
        .collect::<String>()
        .trim_matches([' ', '\t'])
        .to_string()
}

fn check_text(text: &str, stats: &mut Stats) -> Result<(), Failure> {
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
fn check_chunked(data: &[u8], opts: ReadOpts, plan: u64, stats: &mut Stats) -> Result<(), Failure> {
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

fn decode_and_compare(
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

const ENDLESS_KINDS: usize = 10;

/// A stream that repeats `pattern` forever after `prefix`.
struct Endless {
    prefix: Vec<u8>,
    pattern: Vec<u8>,
    pos: usize,
}

impl Endless {
    fn new(prefix: &[u8], pattern: &[u8]) -> Endless {
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
fn check_endless(kind: usize, limit: u64, stats: &mut Stats) -> Result<(), Failure> {
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

// ---------------------------------------------------------------------------------------------
// Properties

/// Runs a check; failures it recorded on the way and the one that stopped it fail the case.
fn run_check(check: impl FnOnce(&mut Stats) -> Result<(), Failure>) -> Result<(), TestCaseError> {
    let mut stats = Stats::default();
    let result = check(&mut stats);
    if let Some(first) = stats.failures.into_iter().next() {
        return Err(fail(first));
    }
    result.map_err(fail)?;
    check_memory()
}

proptest! {
    #![proptest_config(config(2000))]

    /// Every message parser on the same bytes: no panic, the same answer whole and in small
    /// reads, round trips of what parses, short escaped error texts.
    #[test]
    fn codec(data in codec_input(fixture_corpus()), opts in read_opts()) {
        run_check(|stats| check_codec(&data, opts, stats))?;
    }
}

proptest! {
    #![proptest_config(config(1500))]

    /// URLs, durations, scrape timeouts and framing headers.
    #[test]
    fn text(text in text_input()) {
        run_check(|stats| check_text(&text, stats))?;
    }
}

proptest! {
    #![proptest_config(config(150))]

    /// What ChunkedEncoder writes, BodyReader reads back, or refuses with
    /// BodyTooLarge; a cut body is never whole.
    #[test]
    fn chunked((data, opts, plan) in chunked_input()) {
        run_check(|stats| check_chunked(&data, opts, plan, stats))?;
    }
}

proptest! {
    #![proptest_config(config(40))]

    /// Streams that never end stop at their limits, having delivered no more.
    #[test]
    fn endless(kind in 0..ENDLESS_KINDS, limit in prop_oneof![0u64..4096, 0..=BODY_LIMIT]) {
        run_check(|stats| check_endless(kind, limit, stats))?;
    }
}

/// The generators reach past the first line: whole requests and responses parse, so the
/// round-trip checks run at all.
#[test]
fn generated_messages_parse() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut requests, mut responses) = (0, 0);
    for _ in 0..200 {
        let req = request().new_tree(&mut runner).unwrap().current();
        requests += usize::from(ScrapeRequest::from_bytes(&req, DEFAULT_MAX_HEAD).is_ok());
        let resp = response().new_tree(&mut runner).unwrap().current();
        responses +=
            usize::from(Response::from_bytes(&resp, DEFAULT_MAX_HEAD, Some(BODY_LIMIT)).is_ok());
    }
    assert!(
        requests >= 20,
        "only {requests} of 200 generated requests parse"
    );
    assert!(
        responses >= 20,
        "only {responses} of 200 generated responses parse"
    );
}

// ---------------------------------------------------------------------------------------------
// Regressions: minimal inputs of failures this test found. Each states the behaviour the codec
// should have; they fail until protocol/src is fixed.

/// Asserts what `check_error` asserts, with the input in the message.
fn assert_loggable(input: &str, err: &ProtocolError) {
    let text = err.to_string();
    assert!(
        !text.chars().any(char::is_control),
        "input {input:?}: error text has raw control characters: {text:?}"
    );
    assert!(
        text.chars().count() <= MAX_DISPLAY_CHARS,
        "input {input:?}: error text is {} chars long, not a short excerpt",
        text.chars().count()
    );
}

/// `InvalidDuration` quotes the flag value unescaped and whole (error.rs promises "a short,
/// escaped excerpt"); a newline in a flag value splits the log line.
#[test]
fn regression_invalid_duration_text_is_escaped_and_short() {
    for input in [
        "\n00".to_string(),
        "5\u{85}s".into(),
        format!("{}us", "9".repeat(1000)),
    ] {
        let err = parse_duration(&input).unwrap_err();
        assert_loggable(&input, &err);
    }
}

/// `InvalidScrapeTimeout` quotes the value unescaped and whole.
#[test]
fn regression_invalid_scrape_timeout_text_is_escaped_and_short() {
    for input in ["0\r".to_string(), "0\t".into(), "x".repeat(5000)] {
        let err = parse_scrape_timeout(&input).unwrap_err();
        assert_loggable(&input, &err);
    }
}

/// `InvalidContentLength` quotes the header value unescaped and whole: a tab passes the header
/// parser, and a 60 KiB value makes a 60 KiB log line.
#[test]
fn regression_content_length_error_is_escaped_and_short() {
    let long = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        "1x".repeat(30_000)
    );
    for input in ["HTTP/1.1 200\r\nContent-Length:a\tb\r\n\r\n", long.as_str()] {
        let err =
            Response::from_bytes(input.as_bytes(), DEFAULT_MAX_HEAD, Some(BODY_LIMIT)).unwrap_err();
        assert!(
            matches!(err, ProtocolError::InvalidContentLength(_)),
            "{err:?}"
        );
        assert_loggable(input, &err);
    }
}

/// `UnsupportedTransferEncoding` quotes the header value unescaped and whole.
#[test]
fn regression_transfer_encoding_error_is_escaped_and_short() {
    let long = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: {}\r\n\r\n",
        "gzip".repeat(15_000)
    );
    for input in [
        "HTTP/1.1 200\r\nTransfer-Encoding:a\tb\r\n\r\n",
        long.as_str(),
    ] {
        let err =
            Response::from_bytes(input.as_bytes(), DEFAULT_MAX_HEAD, Some(BODY_LIMIT)).unwrap_err();
        assert!(
            matches!(err, ProtocolError::UnsupportedTransferEncoding(_)),
            "{err:?}"
        );
        assert_loggable(input, &err);
    }
}

/// Without a `Host` header, `write_proxy_form` takes everything between `://` and the path as
/// the host, userinfo included; Go's `WriteProxy` uses `URL.Host`, which has none. The
/// credentials end up in a header, and a userinfo with a control character makes a request
/// that no longer parses.
#[test]
fn regression_host_from_url_omits_userinfo() {
    let req =
        ScrapeRequest::from_bytes(b"GET http://user:pw@h:1/m HTTP/1.1\r\n\r\n", 1024).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&req.to_proxy_bytes()),
        "GET http://user:pw@h:1/m HTTP/1.1\r\nHost: h:1\r\n\r\n"
    );
    let req = ScrapeRequest::get("http://@h/").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&req.to_proxy_bytes()),
        "GET http://@h/ HTTP/1.1\r\nHost: h\r\n\r\n"
    );
    // A control character in the URL is refused where it is read and where a request is
    // made, so no request is ever written that does not parse.
    assert!(ScrapeRequest::from_bytes(b"GET http://a\x01@h/ HTTP/1.1\r\n\r\n", 1024).is_err());
    assert!(ScrapeRequest::get("http://a\x01@h/").is_err());
}
