//! Randomized test of the codec: the Go captures, random bytes and generated messages, mutated,
//! fed to every parser entry point. Nothing may panic, hang or grow memory past the limits, and
//! what parses must survive being written and parsed again.
//!
//!   cargo test -p pushprox-protocol --test fuzz                    # 20,000 cases, a few seconds
//!   PUSHPROX_FUZZ_SEED=0x1f2e PUSHPROX_FUZZ_FIRST=517 PUSHPROX_FUZZ_ITERS=1 \
//!       cargo test -p pushprox-protocol --test fuzz fuzz_codec -- --nocapture   # replay one case
//!   scripts/fuzz.sh                                                # release build, many seeds
//!
//! Environment: PUSHPROX_FUZZ_SEED (decimal or 0x-hex; default from the clock),
//! PUSHPROX_FUZZ_ITERS (default 20,000), PUSHPROX_FUZZ_FIRST (first case number, default 0),
//! PUSHPROX_FUZZ_SECONDS (stop early once this many seconds have passed).
//!
//! Case `i` is generated from the seed and `i` alone, so one failing case replays without the
//! ones before it. Every failure is shrunk and reported with its input in hex; the run goes on
//! to collect other, distinct failures, and fails at the end. A case that makes no progress for
//! 30 s (a parser that loops) aborts the process after printing how to replay it.
//!
//! The `regression_*` tests below are inputs this test found; they state the behaviour the codec
//! should have.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pushprox_protocol::{
    format_duration, format_scrape_timeout, parse_duration, parse_scrape_timeout, read_body,
    BodyReader, ChunkedEncoder, ChunkedWriter, Framing, Headers, ProtocolError, Response,
    ResponseHead, ScrapeRequest, Target, DEFAULT_MAX_HEAD,
};

/// Cases per run when PUSHPROX_FUZZ_ITERS is not set: a few seconds in a debug build.
const DEFAULT_ITERS: u64 = 20_000;
/// The body limit most cases use, as the proxy would.
const BODY_LIMIT: u64 = 1 << 20;
/// Generated and mutated inputs are cut to this size; endless inputs test larger bodies.
const MAX_INPUT: usize = 512 * 1024;
/// Peak resident memory the whole test may reach.
const MAX_HWM_KIB: u64 = 200 * 1024;
/// A case that makes no progress for this long is taken for an infinite loop.
const WATCHDOG: Duration = Duration::from_secs(30);
/// Error texts are logged: longer than this is not the "short excerpt" error.rs promises.
const MAX_DISPLAY_CHARS: usize = 1024;
/// Time spent shrinking one failure.
const SHRINK_BUDGET: Duration = Duration::from_secs(2);
/// Distinct failures reported in full; later ones are only counted.
const MAX_REPORTED: usize = 20;

// ---------------------------------------------------------------------------------------------
// Randomness

/// SplitMix64: tiny, fast, and good enough to pick mutations.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The generator of case `i` of a run with `seed`.
    fn for_case(seed: u64, i: u64) -> Rng {
        let mut r = Rng(seed ^ i.wrapping_add(1).wrapping_mul(0xd1b5_4a32_d192_ed03));
        r.next();
        r
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

    /// In `0..=max`, spread evenly over the orders of magnitude, so small sizes are common and
    /// large ones still happen.
    fn size(&mut self, max: usize) -> usize {
        let bits = usize::BITS - max.leading_zeros();
        let b = self.below(bits as usize + 1);
        self.below((1usize << b).min(max) + 1).min(max)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

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

/// One randomized case.
enum Case {
    /// Bytes for every message parser.
    Codec { data: Vec<u8>, opts: ReadOpts },
    /// A string for the URL, duration, timeout and framing-header parsers.
    Text { text: String },
    /// Data to encode in chunks and decode again.
    Chunked {
        data: Vec<u8>,
        opts: ReadOpts,
        plan: u64,
    },
    /// A stream that never ends, which a limit must stop.
    Endless { kind: usize, limit: u64 },
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

impl ReadOpts {
    fn random(rng: &mut Rng) -> ReadOpts {
        ReadOpts {
            max_head: if rng.chance(3, 4) {
                DEFAULT_MAX_HEAD
            } else {
                rng.size(4096)
            },
            max_body: if rng.chance(3, 4) {
                BODY_LIMIT
            } else {
                rng.size(8192) as u64
            },
            buf_capacity: *rng.pick(&[1, 2, 3, 7, 64, 1000, 8192]),
            step: *rng.pick(&[1, 2, 5, 61, 4096, usize::MAX]),
            reads: rng.next(),
        }
    }
}

impl Case {
    fn generate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Case {
        match rng.below(100) {
            0..=79 => {
                let (mut data, mutations) = match rng.below(20) {
                    0..=8 => (rng.pick(corpus).clone(), rng.range(1, 8)),
                    9..=10 => {
                        let n = rng.size(600);
                        let data = if rng.chance(1, 2) {
                            rng.bytes(n)
                        } else {
                            let alphabet = b"HTTP/1.1 GET http://h:9/ 200 OK\r\n:;0123456789abcdef";
                            (0..n).map(|_| *rng.pick(alphabet)).collect()
                        };
                        (data, rng.range(0, 3))
                    }
                    // Half the generated messages stay whole to reach the round-trip checks;
                    // the mutated half reach the error paths past the first line.
                    11..=14 => (gen_request(rng), rng.below(2) * rng.range(1, 8)),
                    _ => (gen_response(rng), rng.below(2) * rng.range(1, 8)),
                };
                for _ in 0..mutations {
                    mutate(&mut data, rng, corpus);
                }
                Case::Codec {
                    data,
                    opts: ReadOpts::random(rng),
                }
            }
            80..=91 => Case::Text {
                text: gen_text(rng),
            },
            // Endless streams take longest: one case in 200.
            92..=99 if rng.chance(15, 16) => {
                let n = if rng.chance(1, 40) {
                    rng.size(200_000)
                } else {
                    rng.size(3000)
                };
                let mut data = rng.bytes(n);
                // Framing bytes inside the data must come out as data.
                for _ in 0..rng.below(4) {
                    let at = rng.below(data.len() + 1);
                    let piece: &[u8] =
                        rng.pick::<&[u8]>(&[&b"\r\n"[..], b"0\r\n\r\n", b"\n", b"5\r\n"]);
                    data.splice(at..at, piece.iter().copied());
                }
                let mut opts = ReadOpts::random(rng);
                if data.len() > 8192 {
                    // Byte-at-a-time reads of a large body take seconds in a debug build and
                    // find nothing that small bodies do not.
                    opts.buf_capacity = opts.buf_capacity.max(1000);
                    opts.step = opts.step.max(4096);
                }
                opts.max_body = if rng.chance(3, 4) {
                    u64::MAX
                } else {
                    rng.size(data.len() + 10) as u64
                };
                Case::Chunked {
                    data,
                    opts,
                    plan: rng.next(),
                }
            }
            _ => Case::Endless {
                kind: rng.below(ENDLESS_KINDS),
                limit: rng.size(BODY_LIMIT as usize) as u64,
            },
        }
    }

    /// The bytes to print when the case fails.
    fn input(&self) -> Vec<u8> {
        match self {
            Case::Codec { data, .. } | Case::Chunked { data, .. } => data.clone(),
            Case::Text { text } => text.as_bytes().to_vec(),
            Case::Endless { kind, limit } => format!("endless kind {kind}, limit {limit}").into(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Case::Codec { .. } => "codec",
            Case::Text { .. } => "text",
            Case::Chunked { .. } => "chunked",
            Case::Endless { .. } => "endless",
        }
    }

    fn describe(&self) -> String {
        match self {
            Case::Codec { opts, .. } => format!("codec case, {opts:?}"),
            Case::Text { .. } => "text case (URL, duration, timeout, framing header)".into(),
            Case::Chunked { opts, plan, .. } => {
                format!("chunked round trip, plan {plan:#x}, {opts:?}")
            }
            Case::Endless { kind, limit } => format!("endless stream kind {kind}, limit {limit}"),
        }
    }
}

fn gen_token(rng: &mut Rng) -> String {
    const TCHAR: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~";
    let n = rng.range(1, 12);
    (0..n).map(|_| *rng.pick(TCHAR) as char).collect()
}

fn gen_header_value(rng: &mut Rng) -> String {
    match rng.below(10) {
        0..=3 => rng.pick(HEADER_VALUES).to_string(),
        4..=5 => rng.pick(HUGE_NUMBERS).to_string(),
        6 => rng.next().to_string(),
        7 => (rng.next() % 100_000).to_string(),
        _ => {
            let n = rng.size(80);
            (0..n)
                .map(|_| match rng.below(40) {
                    0 => '\t',
                    1 => '\u{e9}',
                    _ => (b' ' + rng.below(95) as u8) as char,
                })
                .collect()
        }
    }
}

fn gen_url(rng: &mut Rng) -> String {
    let scheme = *rng.pick(&["http", "http", "https", "HTTP", "ftp", ""]);
    let userinfo = if rng.chance(1, 6) {
        *rng.pick(&["user:pw@", "u@", "@", ":@", "a%20b@", "a@b@"])
    } else {
        ""
    };
    let host = if rng.chance(1, 5) {
        gen_token(rng)
    } else {
        rng.pick(&[
            "pp-bar-go",
            "client.example",
            "Client.Example",
            "127.0.0.1",
            "[::1]",
            "[fe80::1%25eth0]",
            "[::1",
            "a:b",
            "",
        ])
        .to_string()
    };
    let port = match rng.below(6) {
        0..=2 => format!(":{}", rng.below(65536)),
        3 => format!(
            ":{}",
            rng.pick(&["0", "65535", "65536", "99999999999999999999", "", "x"])
        ),
        _ => String::new(),
    };
    let path = *rng.pick(&[
        "/metrics",
        "/",
        "",
        "/metrics?_scheme=https",
        "?a=b",
        "/a#frag",
        "#x",
        "/probe?target=http://x:1/&module=http_2xx",
        "/caf\u{e9}",
    ]);
    let sep = if rng.chance(1, 15) { ":/" } else { "://" };
    format!("{scheme}{sep}{userinfo}{host}{port}{path}")
}

/// A scrape request in proxy form, mostly well formed.
fn gen_request(rng: &mut Rng) -> Vec<u8> {
    let eol = if rng.chance(1, 8) { "\n" } else { "\r\n" };
    let mut out = String::new();
    if rng.chance(1, 10) {
        out.push_str(eol);
    }
    let method = match rng.below(10) {
        0..=5 => "GET".to_string(),
        6 => "HEAD".into(),
        7 => "POST".into(),
        8 => "get".into(),
        _ => gen_token(rng),
    };
    let url = gen_url(rng);
    let version = *rng.pick(&["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2"]);
    let _ = write!(out, "{method} {url} {version}{eol}");
    if rng.chance(3, 4) {
        let authority = url.split_once("://").map_or("", |(_, rest)| {
            rest.split(['/', '?', '#']).next().unwrap_or("")
        });
        let _ = write!(out, "Host: {authority}{eol}");
    }
    for _ in 0..rng.size(10) {
        let name = if rng.chance(3, 4) {
            rng.pick(HEADER_NAMES).to_string()
        } else {
            gen_token(rng)
        };
        let _ = write!(out, "{name}: {}{eol}", gen_header_value(rng));
    }
    out.push_str(eol);
    let mut bytes = out.into_bytes();
    if rng.chance(1, 10) {
        let n = rng.size(100);
        bytes.extend(rng.bytes(n));
    }
    bytes
}

/// A serialized response with every kind of framing, mostly well formed.
fn gen_response(rng: &mut Rng) -> Vec<u8> {
    let eol: &[u8] = if rng.chance(1, 10) { b"\n" } else { b"\r\n" };
    let version = *rng.pick(&["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2", "http/1.1"]);
    let status = match rng.below(8) {
        0..=5 => rng
            .pick(&[200, 200, 204, 304, 404, 408, 500, 503])
            .to_string(),
        6 => rng.below(1100).to_string(),
        _ => rng.pick(&["20", "2000", "099", "1e2", " 200"]).to_string(),
    };
    let reason = *rng.pick(&["OK", "", "Internal Server Error", "x\ty", "caf\u{e9}"]);
    let mut body = if rng.chance(1, 2) {
        let n = rng.size(4096);
        rng.bytes(n)
    } else {
        let n = rng.size(40);
        (0..n)
            .flat_map(|i| format!("metric_{i}{{a=\"b\"}} {i}\n").into_bytes())
            .collect()
    };
    let mut headers: Vec<(String, String)> = (0..rng.size(8))
        .map(|_| {
            let name = if rng.chance(2, 3) {
                rng.pick(HEADER_NAMES).to_string()
            } else {
                gen_token(rng)
            };
            (name, gen_header_value(rng))
        })
        .collect();
    let framing = rng.below(7);
    let chunked = matches!(framing, 2 | 3);
    let length = |rng: &mut Rng, n: usize| -> String {
        if rng.chance(4, 5) {
            n.to_string()
        } else if rng.chance(1, 2) {
            rng.pick(HUGE_NUMBERS).to_string()
        } else {
            (n as u64)
                .wrapping_add(rng.range(0, 2) as u64)
                .wrapping_sub(1)
                .to_string()
        }
    };
    let mut framing_headers = Vec::new();
    match framing {
        0 | 1 => framing_headers.push(("Content-Length".into(), length(rng, body.len()))),
        2 => framing_headers.push(("Transfer-Encoding".into(), "chunked".into())),
        3 => {
            framing_headers.push(("Transfer-Encoding".into(), "chunked".into()));
            framing_headers.push(("Content-Length".into(), length(rng, body.len())));
        }
        4 => {}
        5 => framing_headers.push((
            "Transfer-Encoding".into(),
            rng.pick(&["gzip", "identity", "chunked, identity", "gzip, chunked", ""])
                .to_string(),
        )),
        _ => {
            let n = length(rng, body.len());
            framing_headers.push(("Content-Length".into(), n.clone()));
            framing_headers.push((
                "content-length".into(),
                if rng.chance(1, 2) { n } else { "7".into() },
            ));
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
    if chunked {
        body = encode_chunks_randomly(rng, &body, eol);
    }
    out.extend_from_slice(&body);
    out
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

/// A URL, duration, scrape timeout or Content-Length value, mostly plausible, then mangled.
fn gen_text(rng: &mut Rng) -> String {
    let mut s: Vec<char> = match rng.below(5) {
        0 => gen_url(rng),
        1 => {
            let mut s = String::new();
            for _ in 0..rng.range(1, 4) {
                let number = if rng.chance(1, 10) {
                    "9".repeat(rng.range(20, 400))
                } else {
                    rng.pick(&[
                        "0", "1", "15", "1.5", "500", "007", ".5", "5.", "1e3", "1..5", "",
                    ])
                    .to_string()
                };
                let unit = *rng.pick(&[
                    "ns", "us", "\u{b5}s", "ms", "s", "m", "h", "d", "w", "y", "", "x", "S", "mss",
                ]);
                s.push_str(&number);
                s.push_str(unit);
            }
            s
        }
        2 => match rng.below(3) {
            0 => rng
                .pick(&[
                    "10", "0.5", "1e9", "1e-300", "0", "-1", " 5 ", "NaN", "inf", "1e10", "0x1",
                ])
                .to_string(),
            1 => format!("{}", f64::from_bits(rng.next())),
            _ => format!("{}.{:03}", rng.below(100), rng.below(1000)),
        },
        3 => match rng.below(3) {
            0 => rng.pick(HUGE_NUMBERS).to_string(),
            1 => format!("{}, {}", rng.below(10), rng.below(10)),
            _ => rng.pick(HEADER_VALUES).to_string(),
        },
        _ => {
            let n = rng.size(40);
            (0..n)
                .map(|_| char::from_u32(rng.below(0x800) as u32).unwrap_or('?'))
                .collect()
        }
    }
    .chars()
    .collect();
    for _ in 0..rng.range(0, 3) {
        let at = rng.below(s.len() + 1);
        match rng.below(4) {
            0 => {
                let c = *rng.pick(&[
                    '\n', '\r', '\0', '\t', ' ', '\u{85}', '\u{202e}', '\u{b5}', '.', '@', ':',
                    '/', '[',
                ]);
                s.insert(at, c);
            }
            1 if at < s.len() => {
                s.remove(at);
            }
            2 => {
                let end = rng.range(at, s.len());
                let piece: Vec<char> = s[at..end].to_vec();
                s.splice(at..at, piece);
            }
            _ => s.truncate(at),
        }
    }
    s.into_iter().collect()
}

/// One of the mutations, applied in place; the result is at most `MAX_INPUT` bytes.
fn mutate(data: &mut Vec<u8>, rng: &mut Rng, corpus: &[Vec<u8>]) {
    let len = data.len();
    match rng.below(12) {
        0 if len > 0 => {
            let at = rng.below(len);
            data[at] ^= 1 << rng.below(8);
        }
        1 => {
            let at = rng.below(len + 1);
            let b = rng.next() as u8;
            data.insert(at, b);
        }
        2 => {
            let at = rng.below(len + 1);
            data.insert(at, *rng.pick(SPECIAL_BYTES));
        }
        3 if len > 0 => {
            let at = rng.below(len);
            let end = (at + rng.range(1, 8)).min(len);
            data.drain(at..end);
        }
        4 if len > 0 => {
            let from = rng.below(len);
            let to = rng.range(from, len.min(from + 4096));
            let piece = data[from..to].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, piece);
        }
        5 => data.truncate(rng.below(len + 1)),
        6 => {
            let other = rng.pick(corpus);
            let keep = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(keep);
            data.extend_from_slice(&other[from..]);
        }
        7 => replace_number(data, rng),
        8 => {
            let at = rng.below(len + 1);
            let piece: &[u8] =
                rng.pick::<&[u8]>(&[&b"\r\n"[..], b"\n", b"\r", b"\0", b"\r\n\r\n", b"\n\r"]);
            data.splice(at..at, piece.iter().copied());
        }
        9 => repeat_line(data, rng),
        10 if len > 0 => {
            let at = rng.below(len);
            data[at] = rng.next() as u8;
        }
        _ => {
            // Swap two lines: headers before the status line, framing after the body.
            let mut lines: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
            if lines.len() >= 2 {
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                lines.swap(a, b);
                let swapped = lines.concat();
                *data = swapped;
            }
        }
    }
    data.truncate(MAX_INPUT);
}

/// Replaces a run of digits (or hex digits, for chunk sizes) with one of `HUGE_NUMBERS`.
fn replace_number(data: &mut Vec<u8>, rng: &mut Rng) {
    let hex = rng.chance(1, 2);
    let is_num = |b: u8| {
        if hex {
            b.is_ascii_hexdigit()
        } else {
            b.is_ascii_digit()
        }
    };
    let mut runs = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if is_num(data[i]) {
            let start = i;
            while i < data.len() && is_num(data[i]) {
                i += 1;
            }
            runs.push(start..i);
        } else {
            i += 1;
        }
    }
    if runs.is_empty() {
        return;
    }
    let run = rng.pick(&runs).clone();
    let number = rng.pick(HUGE_NUMBERS).as_bytes();
    data.splice(run, number.iter().copied());
}

/// Repeats one line (a header, most often) up to a few thousand times.
fn repeat_line(data: &mut Vec<u8>, rng: &mut Rng) {
    let ends: Vec<usize> = data
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    if ends.is_empty() {
        return;
    }
    let k = rng.below(ends.len());
    let start = if k == 0 { 0 } else { ends[k - 1] };
    let line = data[start..ends[k]].to_vec();
    let times = 2 + rng.size(4998.min(MAX_INPUT / line.len().max(1)));
    let copies = line.repeat(times - 1);
    data.splice(ends[k]..ends[k], copies);
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

thread_local! {
    /// Set on the fuzzing thread: panics there are expected findings, recorded not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(|q| q.get()) {
                let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
                    s.to_string()
                } else if let Some(s) = info.payload().downcast_ref::<String>() {
                    s.clone()
                } else {
                    "(non-string panic payload)".into()
                };
                let location = info.location().map_or("unknown location".into(), |l| {
                    format!("{}:{}", l.file(), l.line())
                });
                LAST_PANIC.with(|p| *p.borrow_mut() = Some((msg, location)));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs one call into the codec; a panic becomes a failure named after the entry point and
/// the panic's location.
fn guard<T>(entry: &str, f: impl FnOnce() -> T) -> Result<T, Failure> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        let (msg, location) = LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| ("(panic message not captured)".into(), "unknown".into()));
        Failure {
            key: format!("{entry}: panic at {location}"),
            detail: msg,
        }
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
    /// Time spent per kind of case, to keep the CI run short.
    time: BTreeMap<&'static str, Duration>,
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
    check_framing(&head.headers, framing)?;
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

/// A length the framing reports is the one every Content-Length value says.
fn check_framing(headers: &Headers, framing: Framing) -> Result<(), Failure> {
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
        match guard("Framing::of_response", || Framing::of_response(&headers))? {
            Ok(f) => check_framing(&headers, f)?,
            Err(e) => check_error("Framing::of_response", &e, stats),
        }
    }
    Ok(())
}

/// Encodes `data` with `ChunkedEncoder` and `ChunkedWriter` in random pieces; `BodyReader`
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

    let mut writer = ChunkedWriter::new(Vec::new());
    let mut rest = data;
    while !rest.is_empty() {
        let n = rng.range(1, rest.len().min(70_000));
        guard("ChunkedWriter::write_all", || writer.write_all(&rest[..n]))?.map_err(|e| {
            Failure {
                key: "ChunkedWriter: write to a Vec failed".into(),
                detail: e.to_string(),
            }
        })?;
        rest = &rest[n..];
    }
    let written = guard("ChunkedWriter::finish", || writer.finish())?.map_err(|e| Failure {
        key: "ChunkedWriter: finish on a Vec failed".into(),
        detail: e.to_string(),
    })?;
    decode_and_compare("ChunkedWriter", data, &written, opts, &mut rng, stats)?;
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

/// Every failure of one case: those recorded on the way, and the one that stopped it.
fn check_case(case: &Case, stats: &mut Stats) -> Vec<Failure> {
    let result = match case {
        Case::Codec { data, opts } => check_codec(data, *opts, stats),
        Case::Text { text } => check_text(text, stats),
        Case::Chunked { data, opts, plan } => check_chunked(data, *opts, *plan, stats),
        Case::Endless { kind, limit } => check_endless(*kind, *limit, stats),
    };
    let mut failures = std::mem::take(&mut stats.failures);
    failures.extend(result.err());
    failures
}

// ---------------------------------------------------------------------------------------------
// Shrinking and reporting

/// Removes pieces of `input` for as long as the same failure (by key) still happens, so the
/// report shows the few bytes that matter.
fn shrink<T: Clone>(
    input: &[T],
    budget: Duration,
    heartbeat: &AtomicU64,
    fails: impl Fn(&[T]) -> bool,
) -> Vec<T> {
    let started = Instant::now();
    let mut best = input.to_vec();
    let mut piece = best.len().div_ceil(2).max(1);
    while !best.is_empty() && started.elapsed() < budget {
        let mut removed = false;
        let mut at = 0;
        while at < best.len() && started.elapsed() < budget {
            heartbeat.fetch_add(1, Ordering::Relaxed);
            let end = (at + piece).min(best.len());
            let candidate: Vec<T> = best[..at].iter().chain(&best[end..]).cloned().collect();
            if fails(&candidate) {
                best = candidate;
                removed = true;
            } else {
                at += piece;
            }
        }
        if !removed {
            if piece == 1 {
                break;
            }
            piece = piece.div_ceil(2);
        }
    }
    best
}

/// The case with its bytes replaced, for shrinking.
fn with_input(case: &Case, input: &[u8]) -> Case {
    match case {
        Case::Codec { opts, .. } => Case::Codec {
            data: input.to_vec(),
            opts: *opts,
        },
        Case::Chunked { opts, plan, .. } => Case::Chunked {
            data: input.to_vec(),
            opts: *opts,
            plan: *plan,
        },
        Case::Text { .. } => Case::Text {
            text: String::from_utf8_lossy(input).into_owned(),
        },
        Case::Endless { kind, limit } => Case::Endless {
            kind: *kind,
            limit: *limit,
        },
    }
}

fn minimize(case: &Case, key: &str, heartbeat: &AtomicU64) -> Vec<u8> {
    let fails = |c: &Case| {
        check_case(c, &mut Stats::default())
            .iter()
            .any(|f| f.key == key)
    };
    match case {
        Case::Endless { .. } => case.input(),
        Case::Text { text } => {
            let chars: Vec<char> = text.chars().collect();
            let small = shrink(&chars, SHRINK_BUDGET, heartbeat, |c| {
                fails(&Case::Text {
                    text: c.iter().collect(),
                })
            });
            small.into_iter().collect::<String>().into_bytes()
        }
        _ => shrink(&case.input(), SHRINK_BUDGET, heartbeat, |b| {
            fails(&with_input(case, b))
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    const SHOWN: usize = 2048;
    let mut out = String::with_capacity(2 * bytes.len().min(SHOWN));
    for b in &bytes[..bytes.len().min(SHOWN)] {
        let _ = write!(out, "{b:02x}");
    }
    if bytes.len() > SHOWN {
        let _ = write!(out, "… ({} bytes in all)", bytes.len());
    }
    out
}

struct Found {
    count: u64,
    iteration: u64,
    describe: String,
    detail: String,
    input: Vec<u8>,
    minimal: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------
// The run

struct Config {
    seed: u64,
    first: u64,
    iters: u64,
    seconds: Option<f64>,
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text:?} is not a number")))
}

fn config() -> Config {
    let seed = env_u64("PUSHPROX_FUZZ_SEED").unwrap_or_else(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng::new(nanos ^ (u64::from(std::process::id()) << 32)).next()
    });
    Config {
        seed,
        first: env_u64("PUSHPROX_FUZZ_FIRST").unwrap_or(0),
        iters: env_u64("PUSHPROX_FUZZ_ITERS").unwrap_or(DEFAULT_ITERS),
        seconds: std::env::var("PUSHPROX_FUZZ_SECONDS").ok().map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("PUSHPROX_FUZZ_SECONDS={s:?} is not a number"))
        }),
    }
}

fn replay_command(seed: u64, iteration: u64) -> String {
    format!(
        "PUSHPROX_FUZZ_SEED={seed:#x} PUSHPROX_FUZZ_FIRST={iteration} PUSHPROX_FUZZ_ITERS=1 \
         cargo test -p pushprox-protocol --test fuzz fuzz_codec -- --nocapture"
    )
}

/// Peak resident set size of this process, in KiB (Linux only).
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Aborts the process when the fuzzing thread stops making progress: a parser that loops
/// forever would otherwise hang CI without saying which input did it.
fn start_watchdog(
    seed: u64,
    corpus: Arc<Vec<Vec<u8>>>,
    current: Arc<AtomicU64>,
    heartbeat: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) {
    std::thread::Builder::new()
        .name("fuzz-watchdog".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut last = heartbeat.load(Ordering::Relaxed);
            let mut since = Instant::now();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let now = heartbeat.load(Ordering::Relaxed);
                if now != last {
                    last = now;
                    since = Instant::now();
                } else if since.elapsed() > WATCHDOG {
                    let i = current.load(Ordering::Relaxed);
                    let case = Case::generate(&mut Rng::for_case(seed, i), &corpus);
                    eprintln!(
                        "fuzz: case {i} of seed {seed:#x} made no progress for {} s: a parser loops \
                         forever\nfuzz: {}\nfuzz: input: {}\nfuzz: replay: {}",
                        WATCHDOG.as_secs(),
                        case.describe(),
                        hex(&case.input()),
                        replay_command(seed, i)
                    );
                    std::process::abort();
                }
            }
        })
        .expect("spawn the watchdog thread");
}

#[test]
fn fuzz_codec() {
    install_panic_hook();
    let cfg = config();
    println!(
        "fuzz: seed={:#x} first={} iterations={} (replay with PUSHPROX_FUZZ_SEED={:#x})",
        cfg.seed, cfg.first, cfg.iters, cfg.seed
    );
    let corpus = Arc::new(fixture_corpus());
    let current = Arc::new(AtomicU64::new(cfg.first));
    let heartbeat = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    start_watchdog(
        cfg.seed,
        corpus.clone(),
        current.clone(),
        heartbeat.clone(),
        done.clone(),
    );

    QUIET.with(|q| q.set(true));
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let mut ran = 0u64;
    let mut shrinking = Duration::ZERO;
    let mut unreported = 0u64;
    for i in cfg.first..cfg.first.saturating_add(cfg.iters) {
        if cfg
            .seconds
            .is_some_and(|s| started.elapsed().as_secs_f64() >= s)
        {
            break;
        }
        current.store(i, Ordering::Relaxed);
        heartbeat.fetch_add(1, Ordering::Relaxed);
        let generate_started = Instant::now();
        let case = Case::generate(&mut Rng::for_case(cfg.seed, i), &corpus);
        *stats.time.entry("generating").or_default() += generate_started.elapsed();
        ran += 1;
        let case_started = Instant::now();
        let failures = check_case(&case, &mut stats);
        *stats.time.entry(case.kind()).or_default() += case_started.elapsed();
        for failure in failures {
            if let Some(f) = found.get_mut(&failure.key) {
                f.count += 1;
                continue;
            }
            if found.len() >= MAX_REPORTED {
                unreported += 1;
                continue;
            }
            eprintln!("fuzz: case {i}: {}: {}", failure.key, failure.detail);
            let shrink_started = Instant::now();
            let minimal = minimize(&case, &failure.key, &heartbeat);
            shrinking += shrink_started.elapsed();
            found.insert(
                failure.key,
                Found {
                    count: 1,
                    iteration: i,
                    describe: case.describe(),
                    detail: failure.detail,
                    input: case.input(),
                    minimal,
                },
            );
        }
    }
    QUIET.with(|q| q.set(false));
    done.store(true, Ordering::Relaxed);

    let elapsed = started.elapsed().as_secs_f64();
    let hwm = vm_hwm_kib();
    println!(
        "fuzz: seed={:#x} iterations={ran} elapsed={elapsed:.2}s rate={:.0}/s vmhwm_kib={} failures={}",
        cfg.seed,
        ran as f64 / elapsed.max(1e-9),
        hwm.map_or("unknown".into(), |h| h.to_string()),
        found.values().map(|f| f.count).sum::<u64>() + unreported
    );
    println!(
        "fuzz: parsed requests={} responses={} (non-empty bodies {}, chunked {}), \
         chunked round trips={}, endless streams={}, distinct errors={}",
        stats.requests_ok,
        stats.responses_ok,
        stats.nonempty_bodies,
        stats.chunked_bodies,
        stats.chunked_round_trips,
        stats.endless,
        stats.errors.len()
    );
    let times: Vec<String> = stats
        .time
        .iter()
        .map(|(k, t)| format!("{k} {:.2}s", t.as_secs_f64()))
        .collect();
    println!(
        "fuzz: time per kind of case: {}, shrinking failures {:.2}s",
        times.join(", "),
        shrinking.as_secs_f64()
    );
    for (key, f) in &found {
        eprintln!("\nFAILURE ({}x): {key}", f.count);
        eprintln!(
            "  first at case {} of seed {:#x}: {}",
            f.iteration, cfg.seed, f.describe
        );
        eprintln!("  detail: {}", f.detail);
        eprintln!("  input ({} bytes): {}", f.input.len(), hex(&f.input));
        eprintln!("  minimal ({} bytes): {}", f.minimal.len(), hex(&f.minimal));
        eprintln!("  minimal as text: {:?}", lossy(&f.minimal));
        eprintln!("  replay: {}", replay_command(cfg.seed, f.iteration));
    }
    if unreported > 0 {
        eprintln!("\nFAILURE: {unreported} more failures of kinds beyond the first {MAX_REPORTED}");
    }
    assert!(
        found.is_empty() && unreported == 0,
        "{} distinct failures with seed {:#x} (details above)",
        found.len(),
        cfg.seed
    );
    if let Some(hwm) = hwm {
        assert!(
            hwm <= MAX_HWM_KIB,
            "peak memory {hwm} KiB is over {MAX_HWM_KIB} KiB"
        );
    }
    assert!(
        stats.requests_ok > 0 || ran < 1000,
        "no request parsed: the generator is broken"
    );
    assert!(
        stats.responses_ok > 0 || ran < 1000,
        "no response parsed: the generator is broken"
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
    for input in ["HTTP/1.1 200\nContent-Length:a\tb\n\n", long.as_str()] {
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
    for input in ["HTTP/1.1 200\nTransfer-Encoding:a\tb\n\n", long.as_str()] {
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
    let req = ScrapeRequest::from_bytes(b"GET http://a\x01@h/ HTTP/1.1\r\n\r\n", 1024).unwrap();
    let written = req.to_proxy_bytes();
    assert!(
        ScrapeRequest::from_bytes(&written, 1024).is_ok(),
        "{:?} does not parse",
        String::from_utf8_lossy(&written)
    );
}
