//! `POST /poll`: a client waits for a scrape. The body is its FQDN. The poll is parked,
//! unanswered and without a thread, until a scrape takes it.

use std::time::Duration;

use pushprox_protocol::{HOLD_HEADER, LABELS_HEADER, POLLER_HEADER, TARGETS_HEADER};

use super::Guard;
use crate::discovery::Announcement;
use crate::http::{After, BodyError, Connection, Request};
use crate::metrics::PollRefused;
use crate::parked::ParkedPoll;
use crate::registry::Seen;
use crate::rendezvous::{Arrival, PollerInfo};
use crate::state::State;

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
    if text.len() > 255 || !pushprox_protocol::is_fqdn(text) {
        let shown: String = text.chars().take(60).flat_map(char::escape_debug).collect();
        return Err(format!(
            "poll body \"{shown}\" is not an FQDN: expected a host name such as host.example.com"
        ));
    }
    Ok(text)
}

/// Checks the poll and parks it until a scrape for its FQDN takes it.
pub fn handle(state: &State, request: Request, mut conn: Connection) -> After {
    let token = match state.auth.client_token(request.header("Authorization")) {
        Ok(t) => t.map(str::to_string),
        Err(refusal) => return super::refuse(state, &request, conn, Guard::Client, &refusal),
    };
    let body = match conn.read_body(MAX_POLL_BODY) {
        Ok(body) => body,
        Err(BodyError::TooLarge { .. }) => {
            return conn.respond_text(
                413,
                &[],
                "poll body is larger than 1024 bytes: it must be the client's FQDN",
            )
        }
        Err(e) => {
            return conn.respond_text(400, &[], &format!("could not read the poll body: {e}"))
        }
    };
    let fqdn = match parse_fqdn(&body) {
        Ok(f) => f.to_string(),
        Err(reason) => {
            crate::warn_limit::REFUSALS.warn("poll", || {
                format!("refused poll from {}: {reason}", conn.peer())
            });
            return conn.respond_text(400, &[], &reason);
        }
    };
    if let Err(refusal) = state.auth.client_may(token.as_deref(), &fqdn) {
        return super::refuse(state, &request, conn, Guard::Client, &refusal);
    }
    if let Err(refusal) = state.auth.certificate_may(conn.peer_certificates(), &fqdn) {
        return super::refuse(state, &request, conn, Guard::Client, &refusal);
    }
    let announced = match Announcement::parse(
        request.header(LABELS_HEADER),
        request.header(TARGETS_HEADER),
        &fqdn,
        &state.config.registration,
    ) {
        Ok(a) => a,
        Err(e) => {
            state.metrics.poll_refused(e.rule);
            crate::warn_limit::REFUSALS.warn("poll", || {
                format!("refused poll fqdn={fqdn} from={}: {e}", conn.peer())
            });
            return conn.respond_text(400, &[], &e.to_string());
        }
    };
    let key = pushprox_protocol::fqdn_key(&fqdn);
    match state
        .rendezvous
        .registry()
        .poll_started(&key, &fqdn, announced)
    {
        Ok(Seen::New) => log::info!("client registered fqdn={fqdn} from={}", conn.peer()),
        Ok(Seen::Known) => {}
        Err(full) => {
            state.metrics.poll_refused(PollRefused::RegistryFull);
            crate::warn_limit::REFUSALS.warn("poll", || {
                format!("refused poll fqdn={fqdn} from={}: {full}", conn.peer())
            });
            return conn.respond_text(503, &[], &full.to_string());
        }
    }
    let share = match conn.park_share() {
        Ok(share) => share,
        Err(why) => return conn.respond_text(503, &[], &why),
    };
    log::debug!("poll waiting fqdn={fqdn}");
    let mut info = poller_info(&request);
    // No credential vouches for this poll: it is held a bounded time whatever
    // --poll.max-hold says, so made-up FQDNs cannot pin connections for ever.
    let vouched = token.is_some() || conn.peer_certificates().is_some();
    let unauthenticated = state.config.poll_max_hold_unauthenticated;
    if !vouched && !unauthenticated.is_zero() {
        info.hold = match info.hold {
            Duration::ZERO => unauthenticated,
            asked => asked.min(unauthenticated),
        };
    }
    match state.rendezvous.poll_arrived(
        &key,
        ParkedPoll::new(conn, fqdn, share, state.rendezvous.registry().clone()),
        info,
    ) {
        Arrival::Taken => {}
        Arrival::Parked { superseded } => {
            for poll in superseded {
                poll.superseded();
            }
        }
        Arrival::ShuttingDown(poll) => poll.come_back(),
    }
    After::Kept
}

/// Longest hold a poll may ask for.
const MAX_HOLD: Duration = Duration::from_secs(300);

/// Who sent the poll and how long it may be held, from our extension headers; a poll
/// without them (a Go client's) gets the Go proxy's treatment. Malformed values are ignored.
fn poller_info(request: &Request) -> PollerInfo {
    let instance = request
        .header(POLLER_HEADER)
        .map(str::trim)
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_string);
    let hold = request
        .header(HOLD_HEADER)
        .and_then(|v| pushprox_protocol::parse_duration(v).ok())
        .map_or(Duration::ZERO, |d| d.min(MAX_HOLD));
    PollerInfo { instance, hold }
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
