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
//!
//! The parts: `generators` (messages and texts as the codec should see them), `mutations`
//! (how a case breaks them), `checks` (what must hold for each entry point); this file holds
//! the budget, the properties and the regressions.

mod checks;
mod generators;
mod mutations;

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

use checks::*;
// Named, so that it wins over proptest's `Rng` trait in the prelude.
use generators::Rng;
use generators::*;
use mutations::*;

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
    // The seeds file of the single-file test, by its path: proptest would otherwise name
    // it after this file (main.proptest-regressions).
    config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fuzz.proptest-regressions"
    ))));
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

/// Without a `Host` header, `to_proxy_bytes` takes everything between `://` and the path as
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
