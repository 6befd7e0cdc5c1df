//! Every capture of the Go implementation parses, and what we write is what a Go peer reads.

use pushprox_protocol::{
    parse_scrape_timeout, ProtocolError, Response, ScrapeRequest, Target, DEFAULT_MAX_HEAD,
};
use std::time::Duration;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Splits a captured request to the proxy into head and body.
fn split_request(bytes: &[u8]) -> (&[u8], &[u8]) {
    let at = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head end")
        + 4;
    bytes.split_at(at)
}

#[test]
fn scrape_request_from_prometheus() {
    let req = ScrapeRequest::from_bytes(
        &fixture("00-scrape-request-from-prometheus.http"),
        DEFAULT_MAX_HEAD,
    )
    .unwrap();
    assert_eq!(req.method, "GET");
    assert_eq!(req.url, "http://pp-bar-go:36617/metrics");
    let target = req.target().unwrap();
    assert_eq!(
        target,
        Target {
            scheme: "http".into(),
            host: "pp-bar-go".into(),
            port: Some(36617),
            path_and_query: "/metrics".into()
        }
    );
    assert_eq!(req.headers.get("accept-encoding"), Some("gzip"));
    let timeout = req
        .headers
        .get("x-prometheus-scrape-timeout-seconds")
        .unwrap();
    assert_eq!(
        parse_scrape_timeout(timeout).unwrap(),
        Duration::from_secs(1)
    );
    assert_eq!(req.id(), None);
}

#[test]
fn poll_request_is_not_a_scrape() {
    let bytes = fixture("01-poll-request.http");
    let err = ScrapeRequest::from_bytes(&bytes, DEFAULT_MAX_HEAD).unwrap_err();
    assert!(matches!(err, ProtocolError::MalformedUrl(_)), "{err}");
    let (_, body) = split_request(&bytes);
    assert_eq!(body, b"pp-bar-go");
}

#[test]
fn poll_response_body_round_trips_byte_for_byte() {
    let poll =
        Response::from_bytes(&fixture("02-poll-response.http"), DEFAULT_MAX_HEAD, None).unwrap();
    assert_eq!(poll.head.status, 200);
    let req = ScrapeRequest::from_bytes(&poll.body, DEFAULT_MAX_HEAD).unwrap();
    assert_eq!(req.id(), Some("88947b20-8f0a-42c8-ad06-506c10faba9c"));
    assert_eq!(req.target().unwrap().host, "pp-bar-go");
    // What we write is exactly what the Go proxy wrote.
    assert_eq!(
        String::from_utf8_lossy(&req.to_proxy_bytes()),
        String::from_utf8_lossy(&poll.body)
    );
}

#[test]
fn request_from_prometheus_becomes_the_go_poll_body() {
    let mut req = ScrapeRequest::from_bytes(
        &fixture("00-scrape-request-from-prometheus.http"),
        DEFAULT_MAX_HEAD,
    )
    .unwrap();
    req.headers
        .append("Id", "88947b20-8f0a-42c8-ad06-506c10faba9c");
    let poll =
        Response::from_bytes(&fixture("02-poll-response.http"), DEFAULT_MAX_HEAD, None).unwrap();
    assert_eq!(req.to_proxy_bytes(), poll.body);
}

#[test]
fn superseded_poll() {
    let r = Response::from_bytes(
        &fixture("03-poll-superseded-408.http"),
        DEFAULT_MAX_HEAD,
        None,
    )
    .unwrap();
    assert_eq!(r.head.status, 408);
    assert_eq!(
        r.body,
        b"Error WaitForScrapeInstruction: request is expired\n"
    );
    // A Go client parses this body as a request and fails, which is how it learns to re-poll.
    assert!(ScrapeRequest::from_bytes(&r.body, DEFAULT_MAX_HEAD).is_err());
}

#[test]
fn chunked_gzip_push_matches_what_prometheus_got() {
    let bytes = fixture("04-push-request.http");
    let (head, body) = split_request(&bytes);
    assert!(head.starts_with(b"POST /push HTTP/1.1\r\n"));
    assert!(String::from_utf8_lossy(head).contains("Content-Length: 3289"));
    assert_eq!(body.len(), 3289);
    let pushed = Response::from_bytes(body, DEFAULT_MAX_HEAD, Some(1 << 20)).unwrap();
    assert_eq!(pushed.head.status, 200);
    assert_eq!(
        pushed.head.headers.get("id"),
        Some("88947b20-8f0a-42c8-ad06-506c10faba9c")
    );
    assert_eq!(pushed.head.headers.get("content-encoding"), Some("gzip"));
    assert_eq!(pushed.head.framing().unwrap(), pushed_framing());
    assert_eq!(&pushed.body[..2], &[0x1f, 0x8b], "gzip magic");
    assert_eq!(pushed.body.len(), 0xbd8);

    let relayed = Response::from_bytes(
        &fixture("06-scrape-response-to-prometheus.http"),
        DEFAULT_MAX_HEAD,
        None,
    )
    .unwrap();
    assert_eq!(relayed.head.status, 200);
    assert_eq!(relayed.head.headers.get("id"), None, "Id is stripped");
    assert_eq!(relayed.body, pushed.body, "the gzip body passes untouched");
}

fn pushed_framing() -> pushprox_protocol::Framing {
    pushprox_protocol::Framing::Chunked
}

#[test]
fn proxy_answers() {
    let ok =
        Response::from_bytes(&fixture("05-push-response.http"), DEFAULT_MAX_HEAD, None).unwrap();
    assert_eq!((ok.head.status, ok.body.len()), (200, 0));
    let unknown = Response::from_bytes(
        &fixture("07-scrape-unknown-client-500.http"),
        DEFAULT_MAX_HEAD,
        None,
    )
    .unwrap();
    assert_eq!(unknown.head.status, 500);
    assert!(unknown
        .body
        .starts_with(b"Error scraping \"http://nobody:9100/metrics\""));
    let garbage =
        Response::from_bytes(&fixture("08-push-garbage-500.http"), DEFAULT_MAX_HEAD, None).unwrap();
    assert_eq!(
        garbage.body,
        b"Error pushing: malformed HTTP response \"garbage\"\n"
    );
    let clients =
        Response::from_bytes(&fixture("09-clients.http"), DEFAULT_MAX_HEAD, None).unwrap();
    assert_eq!(
        clients.head.headers.get("content-type"),
        Some("application/json")
    );
    assert_eq!(
        clients.body,
        b"[{\"targets\":[\"dup-host\"],\"labels\":null}]\n"
    );
}

#[test]
fn every_fixture_parses_and_survives_truncation() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 11);
    for name in names {
        let bytes = fixture(&name);
        let parsed = if bytes.starts_with(b"HTTP/") {
            Response::from_bytes(&bytes, DEFAULT_MAX_HEAD, None).map(|_| ())
        } else if name.starts_with("00") {
            ScrapeRequest::from_bytes(&bytes, DEFAULT_MAX_HEAD).map(|_| ())
        } else {
            let (_, body) = split_request(&bytes);
            if name.starts_with("04") {
                Response::from_bytes(body, DEFAULT_MAX_HEAD, None).map(|_| ())
            } else {
                Ok(())
            }
        };
        parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
        // Every prefix either parses or fails with an error; none panics.
        for cut in 0..bytes.len() {
            let _ = Response::from_bytes(&bytes[..cut], DEFAULT_MAX_HEAD, Some(1 << 16));
            let _ = ScrapeRequest::from_bytes(&bytes[..cut], DEFAULT_MAX_HEAD);
        }
    }
}

#[test]
fn written_response_is_readable_with_every_framing() {
    let push = fixture("04-push-request.http");
    let (_, body) = split_request(&push);
    let pushed = Response::from_bytes(body, DEFAULT_MAX_HEAD, None).unwrap();
    let bytes = pushed.to_bytes();
    let back = Response::from_bytes(&bytes, DEFAULT_MAX_HEAD, None).unwrap();
    assert_eq!(back.body, pushed.body);
    assert_eq!(back.head.headers.get("transfer-encoding"), None);
    assert_eq!(back.head.headers.get("content-length"), Some("3032"));
}

#[test]
fn oversized_heads_and_bodies_are_refused() {
    let push = fixture("04-push-request.http");
    let (_, body) = split_request(&push);
    let err = Response::from_bytes(body, 64, None).unwrap_err();
    assert!(
        matches!(err, ProtocolError::HeadTooLarge { limit: 64 }),
        "{err}"
    );
    let err = Response::from_bytes(body, DEFAULT_MAX_HEAD, Some(1000)).unwrap_err();
    assert!(
        matches!(err, ProtocolError::BodyTooLarge { limit: 1000 }),
        "{err}"
    );
}

/// Captured from the Go client (v0.2.0 source, built here) pushing a failed scrape: its
/// `http.Response` has no version, so the status line is `HTTP/0.0`, and no length, so the body
/// runs to the end of the push. The Go proxy relays it; we must read it the same way.
#[test]
fn go_client_error_push_with_version_0_0_parses() {
    let bytes = fixture("10-go-client-error-push-body.http");
    assert!(bytes.starts_with(b"HTTP/0.0 500 Internal Server Error\r\n"));
    let response = Response::parse(&mut &bytes[..], DEFAULT_MAX_HEAD, Some(1 << 20)).unwrap();
    assert_eq!(response.head.status, 500);
    assert_eq!(
        response.head.headers.get("Id"),
        Some("11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(
        response.body,
        b"failed to scrape http://127.0.0.3:19999/metrics: Get \"http://127.0.0.3:19999/metrics\": \
          dial tcp 127.0.0.3:19999: connect: connection refused"
    );
}

#[test]
fn status_lines_take_any_one_digit_version_and_nothing_else() {
    for good in [
        "HTTP/1.1 200 OK",
        "HTTP/1.0 200 OK",
        "HTTP/0.0 500 x",
        "HTTP/2.0 204 ",
    ] {
        let text = format!("{good}\r\n\r\n");
        assert!(
            Response::parse(&mut text.as_bytes(), DEFAULT_MAX_HEAD, Some(0)).is_ok(),
            "{good:?}"
        );
    }
    for bad in [
        "HTTP/1.10 200 OK",
        "HTTP/1 200 OK",
        "http/1.1 200 OK",
        "HTTP/a.1 200 OK",
        "HTTPS/1.1 200 OK",
    ] {
        let text = format!("{bad}\r\n\r\n");
        assert!(
            matches!(
                Response::parse(&mut text.as_bytes(), DEFAULT_MAX_HEAD, Some(0)),
                Err(ProtocolError::MalformedStatusLine(_))
            ),
            "{bad:?}"
        );
    }
}
