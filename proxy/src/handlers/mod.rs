//! One file per endpoint. Each handler answers its `Request` and records its metrics.

pub mod clients;
pub mod index;
pub mod metrics;
pub mod poll;
pub mod push;
pub mod scrape;

use tiny_http::{Header, Request, Response, StatusCode};

use crate::auth::{Refusal, REALM};
use crate::metrics::AuthFailure;
use crate::server::State;

/// The value of a request header (first one, case-insensitive name).
pub fn header_value<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Who was refused, which decides the status and the challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// A client on /poll or /push: 401 with a Bearer challenge, or 403.
    Client,
    /// A scraper: 407 with a Basic Proxy-Authenticate challenge.
    Scraper,
    /// A reader of /clients, /metrics or /: 401 with a Basic challenge.
    Api,
}

/// Answers a request refused for its credentials, counts it, and logs it (no secrets).
pub fn refuse(state: &State, request: Request, guard: Guard, refusal: &Refusal) -> u16 {
    let missing = matches!(refusal, Refusal::Missing(_));
    let (status, challenge, failure) = match (guard, missing) {
        (Guard::Client, true) => (
            401,
            Some(("WWW-Authenticate", "Bearer")),
            AuthFailure::ClientTokenMissing,
        ),
        (Guard::Client, false) => (403, None, AuthFailure::ClientTokenWrong),
        (Guard::Scraper, true) => (
            407,
            Some(("Proxy-Authenticate", "Basic")),
            AuthFailure::ScrapeCredentialsMissing,
        ),
        (Guard::Scraper, false) => (
            407,
            Some(("Proxy-Authenticate", "Basic")),
            AuthFailure::ScrapeCredentialsWrong,
        ),
        (Guard::Api, true) => (
            401,
            Some(("WWW-Authenticate", "Basic")),
            AuthFailure::ApiCredentialsMissing,
        ),
        (Guard::Api, false) => (
            401,
            Some(("WWW-Authenticate", "Basic")),
            AuthFailure::ApiCredentialsWrong,
        ),
    };
    state.metrics.auth_failure(failure);
    let url: String = request.url().chars().take(100).collect();
    let from = poll::peer(&request);
    log::warn!(
        "refused {} {url} from={from} status={status}: {}",
        request.method(),
        refusal.reason()
    );
    let mut response = Response::from_string(format!("{}\n", refusal.reason()))
        .with_status_code(StatusCode(status));
    for (name, value) in [
        ("Content-Type", "text/plain; charset=utf-8".to_string()),
        ("X-Content-Type-Options", "nosniff".to_string()),
    ]
    .into_iter()
    .chain(challenge.map(|(name, scheme)| (name, format!("{scheme} realm=\"{REALM}\""))))
    {
        if let Some(h) = header(name, &value) {
            response.add_header(h);
        }
    }
    if let Err(e) = request.respond(response) {
        log::debug!("could not send {status} answer: {e}");
    }
    status
}

/// Answers `status` without reading or draining the request's body, and leaks the
/// connection. Only for bodies declared too large to drop: tiny_http 0.12 drains an unread
/// body into one buffer of its declared `Content-Length` when a request is dropped, and a
/// huge declared length aborts the process (allocation failure). The peer gets the status
/// line and reason and then silence; the connection and one tiny_http thread stay held.
pub fn refuse_undrained(request: Request, status: u16, reason: &str) {
    let response =
        Response::from_string(format!("{reason}\n")).with_status_code(StatusCode(status));
    let stream = request.upgrade("none", response);
    std::mem::forget(stream);
}

/// A header tiny_http accepts; `None` for names or values it cannot carry.
pub fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

/// Answers with a one-line plain-text reason (newline-terminated, as Go's http.Error).
pub fn text(request: Request, status: u16, reason: &str) -> u16 {
    text_with(request, status, reason, &[])
}

/// [`text`] with extra headers.
pub fn text_with(request: Request, status: u16, reason: &str, extra: &[(&str, &str)]) -> u16 {
    let body = format!("{reason}\n");
    let mut response = Response::from_string(body).with_status_code(StatusCode(status));
    for (name, value) in extra {
        if let Some(h) = header(name, value) {
            response.add_header(h);
        }
    }
    if let Some(h) = header("Content-Type", "text/plain; charset=utf-8") {
        response.add_header(h);
    }
    if let Some(h) = header("X-Content-Type-Options", "nosniff") {
        response.add_header(h);
    }
    if let Err(e) = request.respond(response) {
        log::debug!("could not send {status} answer: {e}");
    }
    status
}

/// Answers with a body of the given content type.
pub fn body(request: Request, status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> u16 {
    let mut response = Response::from_data(body.into()).with_status_code(StatusCode(status));
    if let Some(h) = header("Content-Type", content_type) {
        response.add_header(h);
    }
    if let Err(e) = request.respond(response) {
        log::debug!("could not send {status} answer: {e}");
    }
    status
}
