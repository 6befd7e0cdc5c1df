//! One file per endpoint. A handler gets the request and its connection, answers it (or
//! keeps the connection to answer later) and says what comes next; its answer is counted by
//! the connection, in one place.

pub mod clients;
pub mod index;
pub mod metrics;
pub mod poll;
pub mod push;
pub mod scrape;

use crate::auth::{Refusal, REALM};
use crate::http::{After, Connection, Request};
use crate::metrics::AuthFailure;
use crate::state::State;

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
pub fn refuse(
    state: &State,
    request: &Request,
    conn: Connection,
    guard: Guard,
    refusal: &Refusal,
) -> After {
    let (status, failure, extra) = match refusal {
        // Refused unchecked, to spare bcrypt: the password checker logs these once per interval.
        Refusal::TooMany { retry_after, .. } => {
            let seconds = retry_after.as_secs().max(1).to_string();
            (
                429,
                AuthFailure::TooManyFailures,
                Some(("Retry-After", seconds)),
            )
        }
        Refusal::Busy(_) => (
            503,
            AuthFailure::PasswordChecksBusy,
            Some(("Retry-After", "1".into())),
        ),
        Refusal::Missing(_) | Refusal::Wrong(_) => {
            let missing = matches!(refusal, Refusal::Missing(_));
            let failure = match (guard, missing) {
                (Guard::Client, true) => AuthFailure::ClientTokenMissing,
                (Guard::Client, false) => AuthFailure::ClientTokenWrong,
                (Guard::Scraper, true) => AuthFailure::ScrapeCredentialsMissing,
                (Guard::Scraper, false) => AuthFailure::ScrapeCredentialsWrong,
                (Guard::Api, true) => AuthFailure::ApiCredentialsMissing,
                (Guard::Api, false) => AuthFailure::ApiCredentialsWrong,
            };
            let (status, challenge) = match guard {
                Guard::Client if !missing => (403, None),
                Guard::Client => (401, Some(("WWW-Authenticate", "Bearer"))),
                Guard::Scraper => (407, Some(("Proxy-Authenticate", "Basic"))),
                Guard::Api => (401, Some(("WWW-Authenticate", "Basic"))),
            };
            crate::warn_limit::REFUSALS.warn(failure.label(), || {
                format!(
                    "refused {} {} from={} status={status}: {}",
                    request.method(),
                    crate::redact::shown(request.target()),
                    conn.peer(),
                    refusal.reason()
                )
            });
            let challenge =
                challenge.map(|(name, scheme)| (name, format!("{scheme} realm=\"{REALM}\"")));
            (status, failure, challenge)
        }
    };
    state.metrics.auth_failure(failure);
    let extra = extra.as_ref().map(|(name, value)| (*name, value.as_str()));
    conn.respond_text(status, extra.as_slice(), refusal.reason())
}
