//! Why a scrape produced no response of the target, in words pushed to Prometheus.

use std::fmt;
use std::time::Duration;

use pushprox_protocol::{ProtocolError, SCRAPE_TIMEOUT_HEADER};

use crate::config::AllowRule;
use crate::metrics::Outcome;

/// Why a scrape produced no response of the target; the text becomes the body of the 500
/// pushed in its place, so Prometheus shows it.
#[derive(Debug)]
pub enum ScrapeError {
    /// The target's host is not our FQDN.
    WrongHost { asked: String, fqdn: String },
    /// The target's port (or host and port) is not in `--scrape.allow`.
    NotAllowed {
        url: String,
        host: String,
        port: u16,
        allow: Vec<AllowRule>,
        /// The list is the `--sd.target` ports, no `--scrape.allow` being given.
        from_sd_targets: bool,
    },
    /// The URL is not an absolute http(s) URL.
    BadUrl(ProtocolError),
    /// `_scheme` is neither `http` nor `https`.
    BadScheme(String),
    /// No `X-Prometheus-Scrape-Timeout-Seconds` header.
    MissingDeadline,
    /// An `X-Prometheus-Scrape-Timeout-Seconds` that is not a number of seconds.
    BadDeadline(ProtocolError),
    /// The scraper's headers cannot be sent as they are.
    BadRequest { url: String, reason: String },
    /// The URL carries a user name or password (`http://user:pw@host/`); `url` has them cut out.
    UserInfo { url: String },
    /// A method other than GET or HEAD: a scrape reads, and nothing else reaches a target.
    MethodNotAllowed { method: String, url: String },
    /// `--scrape.max-in-flight` scrapes were running already: this one was not started.
    Busy { max: usize },
    /// The deadline passed before the target answered.
    Timeout { url: String, timeout: Duration },
    /// The target could not be reached or answered something that is not HTTP.
    Target { url: String, error: ureq::Error },
    /// The target broke off its response body.
    Body { url: String, error: std::io::Error },
}

impl ScrapeError {
    /// How the scrape ended: timed out, failed at the target, or refused (every other error:
    /// the client would not perform it).
    pub fn outcome(&self) -> Outcome {
        match self {
            ScrapeError::Timeout { .. } => Outcome::Timeout,
            ScrapeError::Target { .. } | ScrapeError::Body { .. } => Outcome::TargetError,
            _ => Outcome::Refused,
        }
    }

    /// The status of the push that answers the scrape: 403 where this client's configuration
    /// forbids it, 400 for credentials in the URL, 405 for a method other than GET or HEAD,
    /// 503 beyond `--scrape.max-in-flight`, 500 for every other failure (as Go).
    pub fn status(&self) -> u16 {
        match self {
            ScrapeError::NotAllowed { .. } => 403,
            ScrapeError::UserInfo { .. } => 400,
            ScrapeError::MethodNotAllowed { .. } => 405,
            ScrapeError::Busy { .. } => 503,
            _ => 500,
        }
    }
}

impl fmt::Display for ScrapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScrapeError::WrongHost { asked, fqdn } => write!(
                f,
                "scrape refused: the target host is \"{asked}\" but this pushprox-client serves \
                 \"{fqdn}\"; its --fqdn must match the host of the Prometheus target"
            ),
            ScrapeError::NotAllowed {
                url,
                host,
                port,
                allow,
                from_sd_targets,
            } => {
                let list: Vec<String> = allow.iter().map(AllowRule::to_string).collect();
                let list = list.join(", ");
                if *from_sd_targets {
                    write!(
                        f,
                        "scrape of {url} refused: port {port} is not one of the --sd.target ports \
                         ({list}), the only ones scraped without --scrape.allow; announce it with \
                         --sd.target or allow it with --scrape.allow"
                    )
                } else if allow.iter().all(|r| matches!(r, AllowRule::Port(_))) {
                    write!(
                        f,
                        "scrape of {url} refused: port {port} is not in --scrape.allow ({list}); \
                         add it there to allow it"
                    )
                } else {
                    let pair = AllowRule::HostPort(host.clone(), *port);
                    write!(
                        f,
                        "scrape of {url} refused: {pair} is not in --scrape.allow ({list}); add \
                         {port} or {pair} there to allow it"
                    )
                }
            }
            ScrapeError::BadUrl(e) => write!(f, "scrape refused: {e}"),
            ScrapeError::BadScheme(s) => write!(
                f,
                "scrape refused: _scheme=\"{s}\" is neither http nor https"
            ),
            ScrapeError::MissingDeadline => write!(
                f,
                "scrape refused: the request has no {SCRAPE_TIMEOUT_HEADER} header, so it has no \
                 deadline; Prometheus always sends it, other scrapers must add it \
                 (e.g. curl -H '{SCRAPE_TIMEOUT_HEADER}: 10')"
            ),
            ScrapeError::BadDeadline(e) => write!(f, "scrape refused: {e}"),
            ScrapeError::BadRequest { url, reason } => {
                write!(f, "scrape of {url} refused: {reason}")
            }
            ScrapeError::UserInfo { url } => write!(
                f,
                "scrape of {url} refused: the URL carries a user name or password, which this \
                 client never sends on to a target (Prometheus puts credentials in headers)"
            ),
            ScrapeError::MethodNotAllowed { method, url } => write!(
                f,
                "scrape of {url} refused: the method {} is not a scrape; this client sends \
                 only GET and HEAD to its targets",
                method.escape_debug()
            ),
            ScrapeError::Busy { max } => write!(
                f,
                "scrape refused: this client already runs --scrape.max-in-flight={max} scrapes, \
                 so it did not start this one; are its targets too slow for the scrapes sent \
                 its way?"
            ),
            ScrapeError::Timeout { url, timeout } => write!(
                f,
                "scrape of {url} timed out: no complete answer within the scrape timeout of {}s",
                pushprox_protocol::format_scrape_timeout(*timeout)
            ),
            ScrapeError::Target { url, error } => write!(
                f,
                "scrape of {url} failed: {error}{}",
                crate::tls::hint(error, "target")
            ),
            ScrapeError::Body { url, error } => {
                write!(f, "scrape of {url} failed while reading the body: {error}")
            }
        }
    }
}

impl std::error::Error for ScrapeError {}
