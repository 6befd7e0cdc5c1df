//! How a case breaks its input: byte-level mutations, and the inputs each property gets.

use super::*;

/// One change to an input, as a fuzzer makes them; proptest shrinks a case by dropping them.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
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

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
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
pub(crate) fn position(at: u16, len: usize) -> usize {
    (len * at as usize) / 65_536
}

pub(crate) fn mutate(data: &mut Vec<u8>, m: &Mutation, corpus: &[Vec<u8>]) {
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
pub(crate) fn codec_input(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
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
pub(crate) fn text_input() -> impl Strategy<Value = String> {
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
pub(crate) const FRAMING_PIECES: &[&[u8]] = &[b"\r\n", b"0\r\n\r\n", b"\n", b"5\r\n"];

/// Data to encode in chunks: framing bytes inside it must come out as data.
pub(crate) fn chunked_input() -> impl Strategy<Value = (Vec<u8>, ReadOpts, u64)> {
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
