//! `POST /poll`: a client waits for a scrape. The body is its FQDN. The poll is parked,
//! unanswered and without a thread, until a scrape takes it.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tiny_http::Request;

use pushprox_protocol::{HOLD_HEADER, MAX_POLLS_HEADER, POLLER_HEADER};

use crate::registry::Seen;
use crate::rendezvous::{Arrival, PollerInfo, MAX_POLLS_PER_CLIENT};
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

/// A poll waiting for a scrape: its request, kept unanswered without a thread.
pub struct ParkedPoll {
    request: Request,
    /// The FQDN as the client sent it.
    pub fqdn: String,
    arrived: Instant,
    state: Arc<State>,
}

impl ParkedPoll {
    /// Answers the poll with the scrape request in proxy form, written straight to the
    /// connection so that a failed write is seen (tiny_http's `respond` hides a closed peer).
    pub fn hand_over(self, scrape: &[u8]) -> std::io::Result<()> {
        let mut head = pushprox_protocol::ResponseHead::new(200);
        head.headers
            .append("Content-Type", "text/plain; charset=utf-8");
        head.headers
            .append("Content-Length", scrape.len().to_string());
        head.headers
            .append(MAX_POLLS_HEADER, MAX_POLLS_PER_CLIENT.to_string());
        let mut bytes = Vec::with_capacity(128 + scrape.len());
        head.write_to(&mut bytes);
        bytes.extend_from_slice(scrape);
        let mut writer = self.request.into_writer();
        let written = writer.write_all(&bytes).and_then(|()| writer.flush());
        let code = if written.is_ok() { 200 } else { 499 };
        self.state
            .metrics
            .http_request("/poll", code, self.arrived.elapsed());
        self.state
            .registry
            .poll_ended(&self.fqdn.to_ascii_lowercase(), written.is_ok());
        written
    }

    /// Answers the poll without a scrape: superseded, held too long, or shutting down.
    pub fn answer(self, status: u16, reason: &str) {
        let max = MAX_POLLS_PER_CLIENT.to_string();
        let code = super::text_with(self.request, status, reason, &[(MAX_POLLS_HEADER, &max)]);
        self.state
            .metrics
            .http_request("/poll", code, self.arrived.elapsed());
        self.state
            .registry
            .poll_ended(&self.fqdn.to_ascii_lowercase(), false);
    }

    /// Answers a poll that a newer poll of the same client replaced.
    pub fn superseded(self) {
        log::debug!("poll superseded by a newer poll fqdn={}", self.fqdn);
        let reason = format!(
            "Error WaitForScrapeInstruction: request is expired: a newer poll of {} took over",
            self.fqdn
        );
        self.answer(408, &reason);
    }
}

/// Checks the poll and parks it until a scrape for its FQDN takes it. Returns `None` when
/// the poll was parked or handed over (it is answered later, by whoever takes it).
pub fn handle(state: &Arc<State>, mut request: Request) -> Option<u16> {
    let token = match state
        .auth
        .client_token(super::header_value(&request, "Authorization"))
    {
        Ok(t) => t.map(str::to_string),
        Err(refusal) => {
            return Some(super::refuse(
                state,
                request,
                super::Guard::Client,
                &refusal,
            ))
        }
    };
    let mut body = Vec::new();
    if let Err(e) = request
        .as_reader()
        .take(MAX_POLL_BODY + 1)
        .read_to_end(&mut body)
    {
        return Some(super::text(
            request,
            400,
            &format!("could not read the poll body: {e}"),
        ));
    }
    if body.len() as u64 > MAX_POLL_BODY {
        return Some(super::text(
            request,
            413,
            "poll body is larger than 1024 bytes: it must be the client's FQDN",
        ));
    }
    let fqdn = match parse_fqdn(&body) {
        Ok(f) => f.to_string(),
        Err(reason) => {
            log::warn!("refused poll from {}: {reason}", peer(&request));
            return Some(super::text(request, 400, &reason));
        }
    };
    if let Err(refusal) = state.auth.client_may(token.as_deref(), &fqdn) {
        return Some(super::refuse(
            state,
            request,
            super::Guard::Client,
            &refusal,
        ));
    }
    let key = fqdn.to_ascii_lowercase();
    if state.registry.poll_started(&key, &fqdn) == Seen::New {
        log::info!("client registered fqdn={fqdn} from={}", peer(&request));
    }
    log::debug!("poll waiting fqdn={fqdn}");
    let info = poller_info(&request);
    let poll = ParkedPoll {
        request,
        fqdn,
        arrived: Instant::now(),
        state: state.clone(),
    };
    match state.rendezvous.poll_arrived(&key, poll, info) {
        Arrival::Taken => {}
        Arrival::Parked { superseded } => superseded.into_iter().for_each(ParkedPoll::superseded),
        Arrival::ShuttingDown(poll) => {
            poll.answer(503, "the proxy is shutting down; poll again shortly")
        }
    }
    None
}

/// Longest hold a poll may ask for.
const MAX_HOLD: Duration = Duration::from_secs(300);

/// Who sent the poll and how long it may be held, from our extension headers; a poll
/// without them (a Go client's) gets the Go proxy's treatment. Malformed values are ignored.
fn poller_info(request: &Request) -> PollerInfo {
    let instance = super::header_value(request, POLLER_HEADER)
        .map(str::trim)
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_string);
    let hold = super::header_value(request, HOLD_HEADER)
        .and_then(|v| pushprox_protocol::parse_duration(v).ok())
        .map_or(Duration::ZERO, |d| d.min(MAX_HOLD));
    PollerInfo { instance, hold }
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
