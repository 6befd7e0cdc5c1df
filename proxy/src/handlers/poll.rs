//! `POST /poll`: a client waits for a scrape. The body is its FQDN.

use std::io::{Read, Write};

use tiny_http::Request;

use crate::registry::Seen;
use crate::rendezvous::PollOutcome;
use crate::server::State;

/// An FQDN is at most 253 characters; anything much longer is not a poll.
const MAX_POLL_BODY: u64 = 1024;

/// Checks the poll body and returns the FQDN it names.
pub fn parse_fqdn(body: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| "poll body is not text: it must be the client's FQDN".to_string())?
        .trim();
    if text.is_empty() {
        return Err("poll body is empty: it must be the client's FQDN".into());
    }
    let valid = text.len() <= 255
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    if !valid {
        let shown: String = text.chars().take(60).flat_map(char::escape_debug).collect();
        return Err(format!(
            "poll body \"{shown}\" is not an FQDN: expected a host name such as host.example.com"
        ));
    }
    Ok(text)
}

/// Holds the poll until a scrape for its FQDN comes, then answers with the scrape request.
pub fn handle(state: &State, mut request: Request) -> u16 {
    let token = match state
        .auth
        .client_token(super::header_value(&request, "Authorization"))
    {
        Ok(t) => t.map(str::to_string),
        Err(refusal) => return super::refuse(state, request, super::Guard::Client, &refusal),
    };
    let mut body = Vec::new();
    if let Err(e) = request
        .as_reader()
        .take(MAX_POLL_BODY + 1)
        .read_to_end(&mut body)
    {
        return super::text(request, 400, &format!("could not read the poll body: {e}"));
    }
    if body.len() as u64 > MAX_POLL_BODY {
        return super::text(
            request,
            413,
            "poll body is larger than 1024 bytes: it must be the client's FQDN",
        );
    }
    let fqdn = match parse_fqdn(&body) {
        Ok(f) => f.to_string(),
        Err(reason) => {
            log::warn!("refused poll from {}: {reason}", peer(&request));
            return super::text(request, 400, &reason);
        }
    };
    if let Err(refusal) = state.auth.client_may(token.as_deref(), &fqdn) {
        return super::refuse(state, request, super::Guard::Client, &refusal);
    }
    let key = fqdn.to_ascii_lowercase();
    if state.registry.poll_started(&key, &fqdn) == Seen::New {
        log::info!("client registered fqdn={fqdn} from={}", peer(&request));
    }
    log::debug!("poll waiting fqdn={fqdn}");
    let outcome = state.rendezvous.poll(&key, state.config.poll_max_hold);
    let (status, scraped) = match outcome {
        PollOutcome::Scrape(job) => {
            log::debug!("scrape handed to poll fqdn={fqdn} scrape_id={}", job.id);
            match hand_over(request, &job.request) {
                Ok(()) => (200, true),
                Err(e) => {
                    log::warn!(
                        "hand-over to poll failed fqdn={fqdn} scrape_id={}: {e}; offering the scrape to the next poll",
                        job.id
                    );
                    let id = job.id.clone();
                    if !state.rendezvous.requeue(job) {
                        log::warn!(
                            "no other poll took the scrape in time fqdn={fqdn} scrape_id={id}"
                        );
                    }
                    (200, false)
                }
            }
        }
        PollOutcome::Superseded => {
            log::debug!("poll superseded by a newer poll fqdn={fqdn}");
            let reason = format!("Error WaitForScrapeInstruction: request is expired: a newer poll of {fqdn} took over");
            (super::text(request, 408, &reason), false)
        }
        PollOutcome::HeldTooLong => {
            let reason = format!(
                "no scrape for {fqdn} within --poll.max-hold {}; poll again",
                pushprox_protocol::format_duration(state.config.poll_max_hold)
            );
            (super::text(request, 408, &reason), false)
        }
        PollOutcome::ShuttingDown => (
            super::text(
                request,
                503,
                "the proxy is shutting down; poll again shortly",
            ),
            false,
        ),
    };
    state.registry.poll_ended(&key, scraped);
    status
}

/// Writes the poll's `200` answer straight to the connection, so that a failed write is seen
/// (tiny_http's `respond` hides a closed peer).
fn hand_over(request: Request, scrape: &[u8]) -> std::io::Result<()> {
    let mut head = pushprox_protocol::ResponseHead::new(200);
    head.headers
        .append("Content-Type", "text/plain; charset=utf-8");
    head.headers
        .append("Content-Length", scrape.len().to_string());
    let mut bytes = Vec::with_capacity(128 + scrape.len());
    head.write_to(&mut bytes);
    bytes.extend_from_slice(scrape);
    let mut writer = request.into_writer();
    writer.write_all(&bytes)?;
    writer.flush()
}

/// The peer address for logs.
pub fn peer(request: &Request) -> String {
    request
        .remote_addr()
        .map_or_else(|| "unknown".into(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_fqdn;

    #[test]
    fn fqdns() {
        assert_eq!(
            parse_fqdn(b" host.example.com\n").unwrap(),
            "host.example.com"
        );
        assert_eq!(parse_fqdn(b"127.0.0.2").unwrap(), "127.0.0.2");
        assert!(parse_fqdn(b"").is_err());
        assert!(parse_fqdn(b"<html>").unwrap_err().contains("<html>"));
        assert!(parse_fqdn(&[0xff, 0xfe]).is_err());
        assert!(parse_fqdn("a".repeat(300).as_bytes()).is_err());
    }
}
