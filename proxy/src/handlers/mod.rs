//! One file per endpoint. Each handler answers its `Request` and records its metrics.

pub mod clients;
pub mod index;
pub mod metrics;
pub mod poll;
pub mod push;
pub mod scrape;

use tiny_http::{Header, Request, Response, StatusCode};

/// A header tiny_http accepts; `None` for names or values it cannot carry.
pub fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

/// Answers with a one-line plain-text reason (newline-terminated, as Go's http.Error).
pub fn text(request: Request, status: u16, reason: &str) -> u16 {
    let body = format!("{reason}\n");
    let mut response = Response::from_string(body).with_status_code(StatusCode(status));
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
