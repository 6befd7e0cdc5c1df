//! Inputs: generated messages, URLs, headers and texts, and the read sizes inside a case.

use super::*;

// ---------------------------------------------------------------------------------------------
// Read sizes inside a case

/// SplitMix64, seeded by proptest: picks read sizes and chunk sizes inside one case.
#[derive(Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num/den`.
    pub(crate) fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs

// ---------------------------------------------------------------------------------------------
// Inputs

pub(crate) const HEADER_NAMES: &[&str] = &[
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

pub(crate) const HEADER_VALUES: &[&str] = &[
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
pub(crate) const HUGE_NUMBERS: &[&str] = &[
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
pub(crate) const SPECIAL_BYTES: &[u8] = b"\r\n\0 \t:;,@/?#[]%\x7f\x80\xc2\xff0fF";
pub(crate) fn fixture_corpus() -> Vec<Vec<u8>> {
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

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// How a case reads its input: limits, buffer sizes, and the seed for odd-sized reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadOpts {
    pub(crate) max_head: usize,
    pub(crate) max_body: u64,
    /// Capacity of the `BufReader` the incremental parsers read through.
    pub(crate) buf_capacity: usize,
    /// Most bytes one `read` of the underlying stream returns.
    pub(crate) step: usize,
    /// Seeds the sizes of the reads from a `BodyReader`.
    pub(crate) reads: u64,
}

pub(crate) fn read_opts() -> impl Strategy<Value = ReadOpts> {
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

pub(crate) fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}"
}

pub(crate) fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![3 => select(HEADER_NAMES).prop_map(String::from), 1 => token()]
}

pub(crate) fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(HEADER_VALUES).prop_map(String::from),
        2 => select(HUGE_NUMBERS).prop_map(String::from),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => (0u64..100_000).prop_map(|n| n.to_string()),
        2 => "[ -~\t\u{e9}]{0,80}",
    ]
}

pub(crate) fn url() -> impl Strategy<Value = String> {
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
pub(crate) fn request() -> impl Strategy<Value = Vec<u8>> {
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
pub(crate) fn response() -> impl Strategy<Value = Vec<u8>> {
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
pub(crate) fn encode_chunks_randomly(rng: &mut Rng, body: &[u8], eol: &[u8]) -> Vec<u8> {
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
