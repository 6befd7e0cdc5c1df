//! The poll loop of one proxy: keep a `POST /poll` open, hand each scrape request it returns
//! to a scrape thread, poll again at once; back off after failures. Ours: while scrapes keep
//! every poll busy and our proxy says it keeps several polls open, extra pollers join in.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushprox_daemon::signals;
use pushprox_protocol::{
    excerpt, reason_phrase, ScrapeRequest, DEFAULT_MAX_HEAD, HOLD_HEADER, MAX_POLLS_HEADER,
    POLLER_HEADER, RETRY_HEADER, RETRY_NEXT,
};

use crate::config::THREAD_STACK;
use crate::in_flight::{InFlight, InFlightGuard};
use crate::link::{is_token_refusal, ProxyLink};
use crate::liveness::PollWatch;
use crate::metrics::Outcome;
use crate::push::{ERROR_PUSH_WINDOW, PUSH_GRACE};
use crate::scrape::{self, ScrapeContext};
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

/// After a proxy said "poll again at once" ([`RETRY_HEADER`]: it is stopping), the first
/// poll goes at once; if the answer or a failure comes again, the waits grow from this...
const AGAIN_FIRST_WAIT: Duration = Duration::from_millis(50);
/// ...to this, until a poll is held again: a restarting proxy is back as soon as it listens,
/// without a draining one being hammered.
const AGAIN_MAX_WAIT: Duration = Duration::from_secs(1);

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
    /// A scrape, and the proxy's `X-PushProx-Max-Polls` if it sent one.
    Scrape {
        request: ScrapeRequest,
        max_polls: Option<usize>,
    },
    /// 408: superseded by a newer poll, or held as long as the proxy holds polls.
    Superseded,
    /// Our proxy is stopping ([`RETRY_HEADER`]): poll again at once.
    Again,
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
    /// An answer that is not a scrape request: a status other than 200, 401, 403 or 408
    /// (`error` is `None`), or a 200 whose body is not one (`error` says why).
    Unexpected {
        status: u16,
        error: Option<pushprox_protocol::ProtocolError>,
        content_type: String,
        body: String,
    },
}

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollError::Network(e) => write!(f, "{e}{}", crate::tls::hint(e, "proxy")),
            PollError::Token(refused) => write!(f, "{refused}"),
            PollError::Unexpected {
                status,
                error,
                content_type,
                body,
            } => match error {
                None => write!(
                    f,
                    "answered status {status} {}, content type {content_type:?}, body \"{body}\": \
                     expected a scrape request (200) or 408; is a load balancer or another \
                     service answering in place of the proxy?",
                    reason_phrase(*status)
                ),
                Some(error) => write!(
                    f,
                    "answered status 200 but the body is not a scrape request ({error}), content \
                     type {content_type:?}, body \"{body}\"; is a load balancer or another \
                     service answering in place of the proxy?"
                ),
            },
        }
    }
}

impl std::error::Error for PollError {}

/// The hold an extra poll asks for. An idle extra poll ends itself, so an idle fleet keeps one
/// poll per client; and it is the proxy, not a client-side timeout, that ends it, so the proxy
/// never writes a scrape into a connection the client already gave up.
const EXTRA_HOLD: &str = "5s";

/// Whether a poll that just brought a scrape should start one more poller for its proxy.
/// `advertised` is the proxy's `X-PushProx-Max-Polls` (none from the Go proxy, which would
/// supersede our own polls back and forth), `flag_max` is `--proxy.max-polls`, `running` the
/// pollers of that proxy now and `in_flight` its scrapes in flight, the new one included.
pub fn should_add_poller(
    advertised: Option<usize>,
    flag_max: usize,
    running: usize,
    in_flight: usize,
) -> bool {
    // Only when clearly more scrapes are in flight than polls are open: one poll keeps up with
    // scrapes that do not overlap (one may still be finishing its push when the next arrives),
    // and an idle fleet keeps one poll per client.
    advertised.is_some_and(|n| n >= 2 && in_flight > running + 1 && running < n.min(flag_max))
}

/// What the pollers of one proxy share: the primary one, which polls until shutdown, and the
/// extra ones started while scrapes keep all of them busy.
pub struct ProxyPolls {
    pub link: Arc<ProxyLink>,
    pub ctx: Arc<ScrapeContext>,
    pub in_flight: Arc<InFlight>,
    /// This process's random id (`pushprox_daemon::ids::instance_id`), sent as [`POLLER_HEADER`].
    pub instance: String,
    /// `--proxy.max-polls`.
    pub max_polls: usize,
    /// Poller threads of this proxy, the primary included.
    running: AtomicUsize,
    /// Scrapes from this proxy not finished yet.
    scrapes: Arc<AtomicUsize>,
}

impl ProxyPolls {
    pub fn new(
        link: Arc<ProxyLink>,
        ctx: Arc<ScrapeContext>,
        in_flight: Arc<InFlight>,
        instance: String,
        max_polls: usize,
    ) -> Arc<ProxyPolls> {
        Arc::new(ProxyPolls {
            link,
            ctx,
            in_flight,
            instance,
            max_polls,
            running: AtomicUsize::new(0),
            scrapes: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Starts the primary poll loop on a thread of its own: it polls until shutdown and backs
    /// off after failures, exactly as with a Go proxy.
    pub fn spawn_primary(self: &Arc<Self>, backoff: Backoff) -> std::io::Result<()> {
        self.running.fetch_add(1, Ordering::SeqCst);
        self.spawn_poller("poll", move |polls| polls.run_primary(backoff))
    }

    /// Starts a poller thread already counted in `running`, and uncounts it if it cannot start.
    fn spawn_poller(
        self: &Arc<Self>,
        name: &str,
        run: impl FnOnce(Arc<Self>) + Send + 'static,
    ) -> std::io::Result<()> {
        let polls = Arc::clone(self);
        std::thread::Builder::new()
            .name(name.into())
            .stack_size(THREAD_STACK)
            .spawn(move || run(polls))
            .map(|_| ())
            .inspect_err(|_| {
                self.running.fetch_sub(1, Ordering::SeqCst);
            })
    }

    fn run_primary(self: Arc<Self>, mut backoff: Backoff) {
        let fqdn = self.ctx.fqdn.clone();
        let url = self.link.url.clone();
        let mut last_was_quick_408 = false;
        // Since the proxy said it is stopping, and until a poll is held again: failures are
        // a restart in progress, retried on this short schedule.
        let mut restarting: Option<Backoff> = None;
        while !signals::requested() {
            log::debug!("fqdn={fqdn} polling {url}/poll");
            let sent = Instant::now();
            let result = self.poll_once(false);
            let received = Instant::now();
            if signals::requested() {
                break;
            }
            // Only a 408 that came at once can be part of a superseding ping-pong.
            let mut quick_408 = false;
            match result {
                Ok(PollAnswer::Scrape { request, max_polls }) => {
                    restarting = None;
                    backoff.reset();
                    self.ctx.metrics.poll_succeeded();
                    self.take_scrape(request, max_polls, received);
                }
                Ok(PollAnswer::Superseded) => {
                    restarting = None;
                    self.ctx.metrics.poll_succeeded();
                    quick_408 = received - sent < QUICK_408;
                    if quick_408 && last_was_quick_408 {
                        let wait = backoff.next_wait();
                        log::warn!(
                            "fqdn={fqdn} polls of {url} keep being superseded at once (408): is another client polling with the same FQDN? polling again in {wait:?}"
                        );
                        signals::sleep(wait);
                    } else {
                        backoff.reset();
                        log::debug!("fqdn={fqdn} poll of {url} answered 408 (superseded or held long enough); polling again");
                    }
                }
                Ok(PollAnswer::Again) => {
                    if let Some(again) = restarting.as_mut() {
                        let wait = again.next_wait();
                        log::debug!(
                            "fqdn={fqdn} {url} is still stopping; polling again in {wait:?}"
                        );
                        signals::sleep(wait);
                    } else {
                        log::info!("fqdn={fqdn} {url} is stopping; polling again at once");
                        restarting = Some(Backoff::new(AGAIN_FIRST_WAIT, AGAIN_MAX_WAIT));
                    }
                }
                Ok(PollAnswer::GaveUp) => {
                    log::debug!(
                        "fqdn={fqdn} poll of {url} got no answer within {POLL_GIVE_UP:?}; polling again on a new connection"
                    );
                }
                Err(e) => {
                    self.ctx.metrics.poll_failed();
                    let wait = restarting.as_mut().unwrap_or(&mut backoff).next_wait();
                    log::warn!(
                        "fqdn={fqdn} poll of {url}/poll failed: {e}; polling again in {wait:?}"
                    );
                    signals::sleep(wait);
                }
            }
            last_was_quick_408 = quick_408;
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        log::debug!("fqdn={fqdn} stopped polling {url}");
    }

    /// An extra poller: polls with a hold while the polls bring scrapes, and ends at the first
    /// 408 (its hold ran out, or it was superseded), failure or shutdown. It never backs off;
    /// errors are the primary poller's business.
    fn run_extra(self: Arc<Self>) {
        let fqdn = self.ctx.fqdn.clone();
        let url = self.link.url.clone();
        let why = loop {
            if signals::requested() {
                break "shutdown".to_string();
            }
            let result = self.poll_once(true);
            let received = Instant::now();
            if signals::requested() {
                break "shutdown".to_string();
            }
            match result {
                Ok(PollAnswer::Scrape { request, max_polls }) => {
                    self.ctx.metrics.poll_succeeded();
                    self.take_scrape(request, max_polls, received);
                }
                Ok(PollAnswer::Superseded) => {
                    self.ctx.metrics.poll_succeeded();
                    break "408 (held long enough, or superseded)".to_string();
                }
                Ok(PollAnswer::Again) => break "the proxy is stopping".to_string(),
                Ok(PollAnswer::GaveUp) => {
                    break format!("no answer within {POLL_GIVE_UP:?}");
                }
                Err(e) => break format!("failed: {e}"),
            }
        };
        let left = self.running.fetch_sub(1, Ordering::SeqCst) - 1;
        log::debug!("fqdn={fqdn} extra poller of {url} ends: {why}; {left} poller(s) left");
    }

    /// Starts the scrape a poll brought, then one more poller if every poller is kept busy.
    fn take_scrape(
        self: &Arc<Self>,
        request: ScrapeRequest,
        max_polls: Option<usize>,
        at: Instant,
    ) {
        let in_flight = self.start_scrape(request, at);
        let added = self
            .running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |running| {
                should_add_poller(max_polls, self.max_polls, running, in_flight)
                    .then_some(running + 1)
            });
        let Ok(before) = added else { return };
        let (fqdn, url) = (&self.ctx.fqdn, &self.link.url);
        match self.spawn_poller("poll-extra", Self::run_extra) {
            Ok(()) => log::debug!(
                "fqdn={fqdn} {in_flight} scrape(s) in flight from {url}: started poller {} of at most {}",
                before + 1,
                max_polls.unwrap_or(1).min(self.max_polls)
            ),
            Err(e) => log::warn!("fqdn={fqdn} cannot start an extra poller of {url}: {e}"),
        }
    }

    /// One poll; `hold` asks for [`EXTRA_HOLD`]. Open, for liveness, from the write of its
    /// request; it counts as held by a proxy only if answered as a proxy answers.
    fn poll_once(&self, hold: bool) -> Result<PollAnswer, PollError> {
        let watch = PollWatch::start(&self.ctx.metrics);
        let result = self.send_poll(hold);
        watch.end(result.is_ok());
        result
    }

    fn send_poll(&self, hold: bool) -> Result<PollAnswer, PollError> {
        let mut request = self.link.poll().header(POLLER_HEADER, &self.instance);
        if hold {
            request = request.header(HOLD_HEADER, EXTRA_HOLD);
        }
        let sent = request
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
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let content_type = header("content-type").unwrap_or_default();
        let max_polls = header(MAX_POLLS_HEADER).and_then(|v| v.trim().parse::<usize>().ok());
        let retry_next = header(RETRY_HEADER).is_some_and(|v| v.trim() == RETRY_NEXT);
        let body = answer
            .body_mut()
            .with_config()
            .limit(DEFAULT_MAX_HEAD as u64)
            .read_to_vec()
            .map_err(PollError::Network)?;
        let unexpected = |error| PollError::Unexpected {
            status,
            error,
            content_type,
            body: excerpt(&body, BODY_EXCERPT),
        };
        match status {
            s if s != 200 && retry_next => Ok(PollAnswer::Again),
            200 => ScrapeRequest::from_bytes(&body, DEFAULT_MAX_HEAD)
                .map(|request| PollAnswer::Scrape { request, max_polls })
                .map_err(|error| unexpected(Some(error))),
            408 => Ok(PollAnswer::Superseded),
            s if is_token_refusal(s) => Err(PollError::Token(self.link.token_refused(
                s,
                excerpt(
                    String::from_utf8_lossy(&body).trim_end().as_bytes(),
                    TOKEN_REFUSAL_EXCERPT,
                ),
            ))),
            _ => Err(unexpected(None)),
        }
    }

    /// Runs the scrape on an idle scrape thread or a new one; returns the scrapes in flight
    /// from this proxy, this one included. Beyond `--scrape.max-in-flight` the scrape is
    /// answered 503 at once instead, and no poller is added (0).
    fn start_scrape(self: &Arc<Self>, request: ScrapeRequest, received: Instant) -> usize {
        let timeout = request.scrape_timeout().and_then(Result::ok);
        let bound = timeout.unwrap_or(UNKNOWN_DEADLINE) + PUSH_GRACE + ERROR_PUSH_WINDOW;
        let Some(guard) = self.in_flight.try_start(bound) else {
            scrape::refuse_busy(&self.ctx, &self.link, &request, received, &self.in_flight);
            return 0;
        };
        let (scrape, in_flight) = InFlightGuard::start(&self.scrapes);
        let ctx = Arc::clone(&self.ctx);
        let link = Arc::clone(&self.link);
        let id = request.id().unwrap_or("none").to_string();
        let spawned = self.ctx.threads.run(Box::new(move || {
            let _guards = (guard, scrape);
            scrape::handle(&ctx, &link, request, received);
        }));
        if let Err(e) = spawned {
            self.ctx.metrics.scrape_done(Outcome::TargetError);
            log::error!(
                "fqdn={} scrape_id={id} cannot start a scrape thread: {e}; the scrape is dropped",
                self.ctx.fqdn
            );
        }
        in_flight
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
    fn extra_pollers_only_where_the_proxy_offers_them() {
        // The Go proxy sends no header; an offer of 1 or 0 is no offer.
        assert!(!should_add_poller(None, 4, 1, 1));
        assert!(!should_add_poller(None, 4, 1, 100));
        assert!(!should_add_poller(Some(1), 4, 1, 1));
        assert!(!should_add_poller(Some(0), 4, 1, 1));
        // --proxy.max-polls 1 disables them.
        assert!(!should_add_poller(Some(8), 1, 1, 5));
    }

    #[test]
    fn extra_pollers_while_every_poller_is_busy_up_to_the_smaller_limit() {
        assert!(!should_add_poller(Some(8), 4, 1, 1));
        assert!(!should_add_poller(Some(8), 4, 1, 2));
        assert!(should_add_poller(Some(8), 4, 1, 3));
        assert!(should_add_poller(Some(2), 4, 1, 3));
        assert!(!should_add_poller(Some(8), 4, 3, 3));
        assert!(!should_add_poller(Some(8), 4, 3, 4));
        assert!(should_add_poller(Some(8), 4, 3, 5));
        assert!(should_add_poller(Some(8), 4, 3, 7));
        // Fewer scrapes in flight than pollers: one of them is idle, no need for another.
        assert!(!should_add_poller(Some(8), 4, 3, 2));
        assert!(!should_add_poller(Some(8), 4, 2, 1));
        // At the flag's limit, or at the proxy's.
        assert!(!should_add_poller(Some(8), 4, 4, 10));
        assert!(!should_add_poller(Some(2), 4, 2, 10));
        assert!(should_add_poller(Some(8), 64, 7, 10));
        assert!(!should_add_poller(Some(8), 64, 8, 10));
    }

    #[test]
    fn status_error_names_status_type_and_body() {
        let e = PollError::Unexpected {
            status: 502,
            error: None,
            content_type: "text/html".into(),
            body: excerpt(b"<html><body>Bad Gateway</body></html>", 80),
        };
        let text = e.to_string();
        assert!(text.contains("502 Bad Gateway"), "{text}");
        assert!(text.contains("\"text/html\""), "{text}");
        assert!(text.contains("<html><body>"), "{text}");
    }
}
