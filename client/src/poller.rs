//! The poll loop of one proxy: keep a `POST /poll` open, hand each scrape request it returns
//! to a scrape thread, poll again at once; back off after failures.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushprox_protocol::{
    parse_scrape_timeout, reason_phrase, ScrapeRequest, DEFAULT_MAX_HEAD, SCRAPE_TIMEOUT_HEADER,
};

use crate::metrics::Outcome;
use crate::push::{is_token_refusal, ProxyLink, ERROR_PUSH_WINDOW, PUSH_GRACE};
use crate::scrape::{self, ScrapeContext};
use crate::shutdown::{self, InFlight};
use crate::token::TokenRefused;

/// How much of an unexpected poll answer is quoted in the log.
const BODY_EXCERPT: usize = 80;

/// How much of a 401 or 403 is quoted: our proxy's reasons are a sentence long.
const TOKEN_REFUSAL_EXCERPT: usize = 200;

/// A 408 after a hold shorter than this may be a superseding ping-pong between two clients
/// with the same FQDN.
const QUICK_408: Duration = Duration::from_secs(1);

/// A poll with no answer after this is given up and sent again on a new connection. The
/// proxy may hold polls indefinitely (Go's does), and a NAT or firewall between may drop an
/// idle connection without telling either end (AWS NAT gateways after 350 s, Azure after
/// 240 s): without a limit the client would wait on a dead connection for ever.
const POLL_GIVE_UP: Duration = Duration::from_secs(200);

/// Scrape deadline assumed for shutdown bookkeeping when the header is missing or bad (the
/// scrape then fails at once anyway).
const UNKNOWN_DEADLINE: Duration = Duration::from_secs(15);

/// Waits between failed polls: `initial`, then ×1.5 each failure, at most `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.min(max);
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The wait before the next poll after a failure.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.mul_f64(1.5).min(self.max);
        wait
    }

    /// After a good poll.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// What a poll brought back.
enum PollAnswer {
    Scrape(ScrapeRequest),
    /// 408: superseded by a newer poll, or held as long as the proxy holds polls.
    Superseded,
    /// No answer within [`POLL_GIVE_UP`].
    GaveUp,
}

/// Why a poll brought back no scrape request.
#[derive(Debug)]
pub enum PollError {
    /// The proxy could not be reached, or the connection broke.
    Network(ureq::Error),
    /// 401 or 403: the proxy does not accept our token (or our lack of one) for our FQDN.
    Token(TokenRefused),
    /// A status other than 200, 401, 403 or 408.
    Status {
        status: u16,
        content_type: String,
        body: String,
    },
    /// A 200 whose body is not a scrape request.
    NotAScrapeRequest {
        error: pushprox_protocol::ProtocolError,
        content_type: String,
        body: String,
    },
}

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollError::Network(e) => {
                let text = e.to_string();
                write!(f, "{text}{}", crate::tls::hint(&text))
            }
            PollError::Token(refused) => write!(f, "{refused}"),
            PollError::Status {
                status,
                content_type,
                body,
            } => write!(
                f,
                "answered status {status} {}, content type {content_type:?}, body \"{body}\": \
                 expected a scrape request (200) or 408; is a load balancer or another service \
                 answering in place of the proxy?",
                reason_phrase(*status)
            ),
            PollError::NotAScrapeRequest {
                error,
                content_type,
                body,
            } => write!(
                f,
                "answered status 200 but the body is not a scrape request ({error}), content type \
                 {content_type:?}, body \"{body}\"; is a load balancer or another service \
                 answering in place of the proxy?"
            ),
        }
    }
}

impl std::error::Error for PollError {}

/// The first `max` characters of `bytes`, escaped so that a log line stays one line.
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

/// Polls one proxy until shutdown.
pub struct Poller {
    pub link: Arc<ProxyLink>,
    pub ctx: Arc<ScrapeContext>,
    pub in_flight: Arc<InFlight>,
    pub backoff: Backoff,
}

impl Poller {
    /// Starts the poll loop on a thread of its own.
    pub fn spawn(self) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("poll".into())
            .stack_size(crate::run::THREAD_STACK)
            .spawn(move || self.run())
            .map(|_| ())
    }

    fn run(mut self) {
        let fqdn = self.ctx.fqdn.clone();
        let url = self.link.url.clone();
        let mut last_was_quick_408 = false;
        while !shutdown::requested() {
            log::debug!("fqdn={fqdn} polling {url}/poll");
            let sent = Instant::now();
            let result = self.poll_once();
            let received = Instant::now();
            if shutdown::requested() {
                break;
            }
            match result {
                Ok(PollAnswer::Scrape(request)) => {
                    last_was_quick_408 = false;
                    self.backoff.reset();
                    self.ctx.metrics.poll_succeeded();
                    self.start_scrape(request, received);
                }
                Ok(PollAnswer::Superseded) => {
                    self.ctx.metrics.poll_succeeded();
                    let quick = received - sent < QUICK_408;
                    if quick && last_was_quick_408 {
                        let wait = self.backoff.next_wait();
                        log::warn!(
                            "fqdn={fqdn} polls of {url} keep being superseded at once (408): is another client polling with the same FQDN? polling again in {wait:?}"
                        );
                        shutdown::sleep(wait);
                    } else {
                        self.backoff.reset();
                        log::debug!("fqdn={fqdn} poll of {url} answered 408 (superseded or held long enough); polling again");
                    }
                    last_was_quick_408 = quick;
                }
                Ok(PollAnswer::GaveUp) => {
                    last_was_quick_408 = false;
                    log::debug!(
                        "fqdn={fqdn} poll of {url} got no answer within {POLL_GIVE_UP:?}; polling again on a new connection"
                    );
                }
                Err(e) => {
                    last_was_quick_408 = false;
                    self.ctx.metrics.poll_failed();
                    let wait = self.backoff.next_wait();
                    log::warn!(
                        "fqdn={fqdn} poll of {url}/poll failed: {e}; polling again in {wait:?}"
                    );
                    shutdown::sleep(wait);
                }
            }
        }
        log::debug!("fqdn={fqdn} stopped polling {url}");
    }

    fn poll_once(&self) -> Result<PollAnswer, PollError> {
        let sent = self
            .link
            .post("/poll")
            .config()
            .timeout_recv_response(Some(POLL_GIVE_UP))
            .build()
            .send(self.ctx.fqdn.as_bytes());
        let mut answer = match sent {
            Ok(answer) => answer,
            Err(ureq::Error::Timeout(ureq::Timeout::RecvResponse)) => {
                return Ok(PollAnswer::GaveUp)
            }
            Err(e) => return Err(PollError::Network(e)),
        };
        let status = answer.status().as_u16();
        let content_type = answer
            .headers()
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let body = answer
            .body_mut()
            .with_config()
            .limit(DEFAULT_MAX_HEAD as u64)
            .read_to_vec()
            .map_err(PollError::Network)?;
        match status {
            200 => ScrapeRequest::from_bytes(&body, DEFAULT_MAX_HEAD)
                .map(PollAnswer::Scrape)
                .map_err(|error| PollError::NotAScrapeRequest {
                    error,
                    content_type,
                    body: excerpt(&body, BODY_EXCERPT),
                }),
            408 => Ok(PollAnswer::Superseded),
            s if is_token_refusal(s) => Err(PollError::Token(self.link.token_refused(
                s,
                excerpt(
                    String::from_utf8_lossy(&body).trim_end().as_bytes(),
                    TOKEN_REFUSAL_EXCERPT,
                ),
            ))),
            _ => Err(PollError::Status {
                status,
                content_type,
                body: excerpt(&body, BODY_EXCERPT),
            }),
        }
    }

    fn start_scrape(&self, request: ScrapeRequest, received: Instant) {
        let bound = request
            .headers
            .get(SCRAPE_TIMEOUT_HEADER)
            .and_then(|v| parse_scrape_timeout(v).ok())
            .unwrap_or(UNKNOWN_DEADLINE)
            + PUSH_GRACE
            + ERROR_PUSH_WINDOW;
        let guard = self.in_flight.start(bound);
        let ctx = Arc::clone(&self.ctx);
        let link = Arc::clone(&self.link);
        let id = request.id().unwrap_or("none").to_string();
        let spawned = std::thread::Builder::new()
            .name("scrape".into())
            .stack_size(crate::run::THREAD_STACK)
            .spawn(move || {
                let _guard = guard;
                scrape::handle(&ctx, &link, request, received);
            });
        if let Err(e) = spawned {
            self.ctx.metrics.scrape_done(Outcome::TargetError);
            log::error!(
                "fqdn={} scrape_id={id} cannot start a scrape thread: {e}; the scrape is dropped",
                self.ctx.fqdn
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_half_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let waits: Vec<f64> = (0..7).map(|_| b.next_wait().as_secs_f64()).collect();
        assert_eq!(waits, [1.0, 1.5, 2.25, 3.375, 5.0, 5.0, 5.0]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_secs(1));
    }

    #[test]
    fn initial_wait_above_the_cap_is_capped() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(b.next_wait(), Duration::from_secs(5));
    }

    #[test]
    fn excerpts_are_one_escaped_line() {
        assert_eq!(
            excerpt(b"<html>\r\n<body>502</body>", 80),
            "<html>\\r\\n<body>502</body>"
        );
        assert_eq!(excerpt(b"abcdef", 3), "abc…");
        assert_eq!(excerpt(&[0x1f, 0x8b], 10), "\\u{1f}\u{fffd}");
    }

    #[test]
    fn status_error_names_status_type_and_body() {
        let e = PollError::Status {
            status: 502,
            content_type: "text/html".into(),
            body: excerpt(b"<html><body>Bad Gateway</body></html>", 80),
        };
        let text = e.to_string();
        assert!(text.contains("502 Bad Gateway"), "{text}");
        assert!(text.contains("\"text/html\""), "{text}");
        assert!(text.contains("<html><body>"), "{text}");
    }
}
