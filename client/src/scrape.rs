//! One scrape: check the request the proxy handed out, perform it against the local target
//! within its deadline, and push the result (or the reason it failed) back.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushprox_protocol::{
    parse_scrape_timeout, ProtocolError, ScrapeRequest, HOP_BY_HOP, ID_HEADER,
    SCRAPE_TIMEOUT_HEADER,
};
use ureq::Agent;

use crate::config::AllowRule;
use crate::in_flight::InFlight;
use crate::link::ProxyLink;
use crate::metrics::{Metrics, Outcome};
use crate::push::{self, PushError};

/// What every scrape thread shares.
pub struct ScrapeContext {
    /// The FQDN this client serves; targets on other hosts are refused.
    pub fqdn: String,
    /// `--scrape.allow`; empty: any port.
    pub allow: Vec<AllowRule>,
    /// Whether `allow` is the `--sd.target` ports.
    pub allow_from_sd_targets: bool,
    /// The agents for targets: no proxy, statuses are not errors, nothing decompressed.
    pub agents: TargetAgents,
    pub metrics: Arc<Metrics>,
    /// The threads scrapes run on, reused from one scrape to the next.
    pub threads: pushprox_daemon::workers::Workers,
}

/// The agent for http targets, and the one for https targets, which may be built only at the
/// first https scrape (see [`crate::tls::needed_at_start`]).
pub struct TargetAgents {
    pub http: Agent,
    pub https: std::sync::OnceLock<Agent>,
    pub make_https: Box<dyn Fn() -> Agent + Send + Sync>,
}

impl TargetAgents {
    /// The agent for `url`.
    pub fn for_url(&self, url: &str) -> &Agent {
        if url.starts_with("https:") {
            self.https.get_or_init(&self.make_https)
        } else {
            &self.http
        }
    }
}

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
    pub fn outcome(&self) -> Outcome {
        match self {
            ScrapeError::WrongHost { .. }
            | ScrapeError::NotAllowed { .. }
            | ScrapeError::BadUrl(_)
            | ScrapeError::BadScheme(_)
            | ScrapeError::MissingDeadline
            | ScrapeError::BadDeadline(_)
            | ScrapeError::BadRequest { .. }
            | ScrapeError::UserInfo { .. }
            | ScrapeError::MethodNotAllowed { .. }
            | ScrapeError::Busy { .. } => Outcome::Refused,
            ScrapeError::Timeout { .. } => Outcome::Timeout,
            ScrapeError::Target { .. } | ScrapeError::Body { .. } => Outcome::TargetError,
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

/// A scrape request checked and turned into what is sent to the target.
#[derive(Debug, PartialEq, Eq)]
pub struct Prepared {
    pub method: String,
    /// The URL to request, with `_scheme` applied and removed.
    pub url: String,
    /// The scraper's headers minus those meant for the proxy hop.
    pub headers: Vec<(String, String)>,
    /// From `X-Prometheus-Scrape-Timeout-Seconds`.
    pub timeout: Duration,
}

/// The methods a scrape may use. A proxy (the Go one passes any) could otherwise make this
/// client send `DELETE` or `POST` to an exporter's API.
const SCRAPE_METHODS: &[&str] = &["GET", "HEAD"];

/// Checks the request's method (GET or HEAD) and its host against our FQDN, `--scrape.allow`
/// (empty: any port) and its deadline header.
pub fn prepare(
    request: &ScrapeRequest,
    fqdn: &str,
    allow: &[AllowRule],
) -> Result<Prepared, ScrapeError> {
    if let Some(url) = without_userinfo(&request.url) {
        return Err(ScrapeError::UserInfo { url });
    }
    if !SCRAPE_METHODS.contains(&request.method.as_str()) {
        return Err(ScrapeError::MethodNotAllowed {
            method: request.method.clone(),
            url: request.url.clone(),
        });
    }
    let target = request.target().map_err(ScrapeError::BadUrl)?;
    if !same_host(&target.host, fqdn) {
        return Err(ScrapeError::WrongHost {
            asked: target.host,
            fqdn: fqdn.to_string(),
        });
    }
    let url = target_url(&request.url)?;
    // The port the connection goes to: _scheme=https without a port means 443.
    let port = target
        .port
        .unwrap_or(if url.starts_with("https:") { 443 } else { 80 });
    if !allowed(allow, &target.host, port) {
        return Err(ScrapeError::NotAllowed {
            url,
            host: target.host.trim_end_matches('.').to_string(),
            port,
            allow: allow.to_vec(),
            from_sd_targets: false,
        });
    }
    let timeout = request
        .headers
        .get(SCRAPE_TIMEOUT_HEADER)
        .ok_or(ScrapeError::MissingDeadline)
        .and_then(|v| parse_scrape_timeout(v).map_err(ScrapeError::BadDeadline))?;
    Ok(Prepared {
        method: request.method.clone(),
        url,
        headers: forwarded_headers(request),
        timeout,
    })
}

/// `url` with its userinfo (`user:password@`) cut out, or `None` when it has none.
pub fn without_userinfo(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (userinfo, _) = rest[..end].rsplit_once('@')?;
    Some(format!("{scheme}://{}", &rest[userinfo.len() + 1..]))
}

/// Whether `--scrape.allow` lets this client scrape `port` of `host`.
fn allowed(allow: &[AllowRule], host: &str, port: u16) -> bool {
    allow.is_empty()
        || allow.iter().any(|rule| match rule {
            AllowRule::Port(p) => *p == port,
            AllowRule::HostPort(h, p) => *p == port && same_host(h, host),
        })
}

fn same_host(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The URL to request: `_scheme=https` (or `http`) in the query picks the scheme and is
/// removed; the other parameters stay as they were, in order.
pub fn target_url(url: &str) -> Result<String, ScrapeError> {
    let bad = || ScrapeError::BadUrl(ProtocolError::MalformedUrl(url.to_string()));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let rest = rest.split('#').next().unwrap_or("");
    let (base, query) = match rest.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (rest, None),
    };
    let mut scheme = scheme.to_ascii_lowercase();
    let mut kept = Vec::new();
    for param in query.unwrap_or("").split('&') {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        if key == "_scheme" {
            match value {
                "http" | "https" => scheme = value.to_string(),
                other => return Err(ScrapeError::BadScheme(other.to_string())),
            }
        } else if !param.is_empty() {
            kept.push(param);
        }
    }
    let slash = if base.contains('/') { "" } else { "/" };
    let mut out = format!("{scheme}://{base}{slash}");
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    Ok(out)
}

/// Headers for the proxy hop (framing, connection, proxy credentials) and ours (`Id`) are not
/// sent on; `Host` comes from the URL.
const NOT_FORWARDED: &[&str] = &["Host", ID_HEADER, "Proxy-Authorization", "TE"];

/// The scraper's headers to send to the target.
pub fn forwarded_headers(request: &ScrapeRequest) -> Vec<(String, String)> {
    request
        .headers
        .iter()
        .filter(|(name, _)| {
            !HOP_BY_HOP
                .iter()
                .chain(NOT_FORWARDED)
                .any(|h| h.eq_ignore_ascii_case(name))
        })
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Performs the scrape; the response's body is still to be read, within the same deadline.
fn perform(
    agent: &Agent,
    prepared: &Prepared,
    deadline: Instant,
) -> Result<ureq::http::Response<ureq::Body>, ScrapeError> {
    let mut builder = ureq::http::Request::builder()
        .method(prepared.method.as_str())
        .uri(prepared.url.as_str());
    for (name, value) in &prepared.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder.body(()).map_err(|e| ScrapeError::BadRequest {
        url: prepared.url.clone(),
        reason: e.to_string(),
    })?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    let request = agent
        .configure_request(request)
        .timeout_global(Some(remaining))
        .build();
    agent.run(request).map_err(|error| {
        if matches!(error, ureq::Error::Timeout(_)) || Instant::now() >= deadline {
            ScrapeError::Timeout {
                url: prepared.url.clone(),
                timeout: prepared.timeout,
            }
        } else {
            ScrapeError::Target {
                url: prepared.url.clone(),
                error,
            }
        }
    })
}

/// Handles one scrape request from `link`'s proxy, from checks to push. `received` is when the
/// poll answer arrived: the deadline counts from there.
pub fn handle(ctx: &ScrapeContext, link: &ProxyLink, request: ScrapeRequest, received: Instant) {
    let fqdn = &ctx.fqdn;
    let Some(id) = request.id().map(str::to_string) else {
        log::warn!(
            "fqdn={fqdn} scrape_id=none proxy={} url={}: scrape request without an {ID_HEADER} header, so its result cannot be pushed; dropped",
            link.url,
            without_userinfo(&request.url).unwrap_or_else(|| request.url.clone())
        );
        ctx.metrics.scrape_done(Outcome::Refused);
        return;
    };
    let result = match prepare(&request, fqdn, &ctx.allow) {
        Ok(prepared) => {
            let deadline = received + prepared.timeout;
            log::debug!(
                "fqdn={fqdn} scrape_id={id} scraping {} {} timeout={}s",
                prepared.method,
                prepared.url,
                pushprox_protocol::format_scrape_timeout(prepared.timeout)
            );
            scrape_and_push(ctx, link, &id, &prepared, deadline)
        }
        Err(mut e) => {
            if let ScrapeError::NotAllowed {
                from_sd_targets, ..
            } = &mut e
            {
                *from_sd_targets = ctx.allow_from_sd_targets;
            }
            Err((e, received + push::ERROR_PUSH_WINDOW))
        }
    };
    let (error, deadline) = match result {
        Ok(()) => return,
        Err(failure) => failure,
    };
    let outcome = error.outcome();
    ctx.metrics.scrape_done(outcome);
    // A target down or too slow needs the operator as much as a refusal does.
    log::warn!("fqdn={fqdn} scrape_id={id} {error}");
    let status = error.status();
    match push::push_error(link, &id, status, &error.to_string(), deadline) {
        Ok(()) => {
            log::debug!("fqdn={fqdn} scrape_id={id} pushed the {status} for the failed scrape")
        }
        Err(e @ PushError::Late { .. }) => {
            ctx.metrics.push_late();
            log::info!("fqdn={fqdn} scrape_id={id} push of the failed scrape's {status}: {e}");
        }
        Err(e) => {
            ctx.metrics.push_failed();
            log::warn!(
                "fqdn={fqdn} scrape_id={id} push of the failed scrape's {status} to {} failed: {e}",
                link.url
            );
        }
    }
}

/// Answers a scrape beyond `--scrape.max-in-flight` at once with a 503 push, on the poller's
/// thread: it costs no thread and no connection to a target. Refusals are logged at most
/// every 10 s, with their count.
pub fn refuse_busy(
    ctx: &ScrapeContext,
    link: &ProxyLink,
    request: &ScrapeRequest,
    received: Instant,
    in_flight: &InFlight,
) {
    ctx.metrics.scrape_done(Outcome::Refused);
    let error = ScrapeError::Busy {
        max: in_flight.max(),
    };
    let id = request.id().unwrap_or("none");
    if let Some(n) = in_flight.refused() {
        log::warn!(
            "fqdn={} {n} scrape(s) refused since the last such line, the latest scrape_id={id} from {}: {error}",
            ctx.fqdn,
            link.url
        );
    }
    if request.id().is_none() {
        return;
    }
    let deadline = received + push::ERROR_PUSH_WINDOW;
    if let Err(e) = push::push_error(link, id, error.status(), &error.to_string(), deadline) {
        ctx.metrics.push_failed();
        log::debug!(
            "fqdn={} scrape_id={id} push of the 503 for a scrape beyond --scrape.max-in-flight to {} failed: {e}",
            ctx.fqdn,
            link.url
        );
    }
}

/// Scrapes and pushes the response. A failure of the scrape itself is returned (with the
/// deadline that applies to pushing its 500); push failures are logged and counted here.
fn scrape_and_push(
    ctx: &ScrapeContext,
    link: &ProxyLink,
    id: &str,
    prepared: &Prepared,
    deadline: Instant,
) -> Result<(), (ScrapeError, Instant)> {
    let fqdn = &ctx.fqdn;
    let response = perform(ctx.agents.for_url(&prepared.url), prepared, deadline)
        .map_err(|e| (e, deadline))?;
    let status = response.status().as_u16();
    let started = Instant::now();
    match push::push_response(link, id, response, deadline) {
        Ok(bytes) => {
            ctx.metrics.scrape_done(Outcome::Success);
            log::debug!(
                "fqdn={fqdn} scrape_id={id} pushed status={status} body_bytes={bytes} in {:?}",
                started.elapsed()
            );
            Ok(())
        }
        Err(PushError::Source(error)) => {
            let failure =
                if Instant::now() >= deadline || error.kind() == std::io::ErrorKind::TimedOut {
                    ScrapeError::Timeout {
                        url: prepared.url.clone(),
                        timeout: prepared.timeout,
                    }
                } else {
                    ScrapeError::Body {
                        url: prepared.url.clone(),
                        error,
                    }
                };
            // The proxy got a truncated push and still waits for this id: a 500 may reach it.
            Err((failure, Instant::now() + push::ERROR_PUSH_WINDOW))
        }
        Err(e @ PushError::Late { .. }) => {
            ctx.metrics.scrape_done(Outcome::Timeout);
            ctx.metrics.push_late();
            log::info!(
                "fqdn={fqdn} scrape_id={id} push of the scrape result (status={status}) to {}: {e}",
                link.url
            );
            Ok(())
        }
        Err(e) => {
            ctx.metrics.scrape_done(Outcome::Success);
            ctx.metrics.push_failed();
            log::warn!(
                "fqdn={fqdn} scrape_id={id} push of the scrape result to {} failed: {e}",
                link.url
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> ScrapeRequest {
        ScrapeRequest::from_bytes(text.as_bytes(), 64 * 1024).unwrap()
    }

    #[test]
    fn userinfo_is_cut_out_of_the_url_and_refused_with_400() {
        assert_eq!(
            without_userinfo("http://u:pw@h:9100/metrics?a=b@c"),
            Some("http://h:9100/metrics?a=b@c".to_string())
        );
        assert_eq!(without_userinfo("http://h:9100/x?a=b@c"), None);
        let r = request(
            "GET http://u:pw@h:9100/metrics HTTP/1.1\r\nHost: h:9100\r\n\
             X-Prometheus-Scrape-Timeout-Seconds: 5\r\nId: 1\r\n\r\n",
        );
        let error = prepare(&r, "h", &[]).unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(!error.to_string().contains("pw"), "{error}");
    }

    #[test]
    fn only_get_and_head_reach_the_target() {
        for method in ["GET", "HEAD"] {
            let r = request(&format!(
                "{method} http://h:9100/metrics HTTP/1.1\r\nId: 1\r\n\
                 X-Prometheus-Scrape-Timeout-Seconds: 5\r\n\r\n"
            ));
            assert_eq!(prepare(&r, "h", &[]).unwrap().method, method);
        }
        for method in ["DELETE", "POST", "PUT", "OPTIONS", "PROPFIND"] {
            let r = request(&format!(
                "{method} http://h:9100/api/x HTTP/1.1\r\nId: 1\r\n\
                 X-Prometheus-Scrape-Timeout-Seconds: 5\r\n\r\n"
            ));
            let error = prepare(&r, "h", &[]).unwrap_err();
            assert_eq!(error.status(), 405, "{method}");
            assert_eq!(error.outcome(), Outcome::Refused);
            assert!(error.to_string().contains(method), "{error}");
        }
    }

    #[test]
    fn scheme_parameter_picks_https_and_is_removed() {
        let cases = [
            ("http://h:9100/metrics", "http://h:9100/metrics"),
            (
                "http://h:9100/metrics?_scheme=https",
                "https://h:9100/metrics",
            ),
            (
                "http://h:9100/probe?target=x&_scheme=https&module=http_2xx",
                "https://h:9100/probe?target=x&module=http_2xx",
            ),
            ("https://h/metrics?_scheme=http", "http://h/metrics"),
            ("http://h:9100?_scheme=https", "https://h:9100/"),
            ("HTTP://h/m?a=1&&b=2#frag", "http://h/m?a=1&b=2"),
            // A parameter whose name merely contains _scheme is kept.
            ("http://h/m?x_scheme=https", "http://h/m?x_scheme=https"),
        ];
        for (url, want) in cases {
            assert_eq!(target_url(url).unwrap(), want, "{url}");
        }
        assert!(matches!(
            target_url("http://h/m?_scheme=ftp"),
            Err(ScrapeError::BadScheme(s)) if s == "ftp"
        ));
    }

    #[test]
    fn proxy_hop_headers_are_not_forwarded() {
        let req = request(
            "GET http://node1:9100/metrics HTTP/1.1\r\n\
             Host: node1:9100\r\n\
             User-Agent: Prometheus/2.42.0\r\n\
             Accept-Encoding: gzip\r\n\
             Id: 1234\r\n\
             Connection: close\r\n\
             Proxy-Authorization: Basic eA==\r\n\
             Content-Length: 0\r\n\
             X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
        );
        let names: Vec<String> = forwarded_headers(&req)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "User-Agent",
                "Accept-Encoding",
                "X-Prometheus-Scrape-Timeout-Seconds"
            ]
        );
    }

    #[test]
    fn host_must_be_our_fqdn() {
        let req = request(
            "GET http://Other.Example:9100/metrics HTTP/1.1\r\nId: 1\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
        );
        let err = prepare(&req, "node1.example", &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("other.example") && text.contains("node1.example"),
            "{text}"
        );
        assert!(text.contains("--fqdn"), "{text}");
        assert_eq!(err.outcome(), Outcome::Refused);

        let ok = prepare(&req, "OTHER.example.", &[]).unwrap();
        assert_eq!(ok.url, "http://Other.Example:9100/metrics");
        assert_eq!(ok.timeout, Duration::from_secs(10));
    }

    #[test]
    fn deadline_header_is_required() {
        let req = request("GET http://h:9100/metrics HTTP/1.1\r\nId: 1\r\n\r\n");
        let err = prepare(&req, "h", &[]).unwrap_err();
        assert!(matches!(err, ScrapeError::MissingDeadline));
        assert!(err.to_string().contains(SCRAPE_TIMEOUT_HEADER));
        let req = request(
            "GET http://h:9100/metrics HTTP/1.1\r\nX-Prometheus-Scrape-Timeout-Seconds: soon\r\n\r\n",
        );
        assert!(matches!(
            prepare(&req, "h", &[]),
            Err(ScrapeError::BadDeadline(_))
        ));
    }

    #[test]
    fn scrape_allow_refuses_other_ports_with_a_403_naming_the_flag() {
        let allow = [AllowRule::Port(9100), AllowRule::Port(9256)];
        let req = |url: &str| {
            request(&format!(
                "GET {url} HTTP/1.1\r\nId: 1\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"
            ))
        };
        assert!(prepare(&req("http://h:9100/metrics"), "h", &allow).is_ok());
        assert!(prepare(&req("http://h:9256/"), "h", &allow).is_ok());
        let err = prepare(&req("http://h:22/"), "h", &allow).unwrap_err();
        assert_eq!(err.status(), 403);
        assert_eq!(err.outcome(), Outcome::Refused);
        assert_eq!(
            err.to_string(),
            "scrape of http://h:22/ refused: port 22 is not in --scrape.allow (9100, 9256); add it there to allow it"
        );
        // No port: the scheme's, after _scheme.
        let err = prepare(&req("http://h/m?_scheme=https"), "h", &allow).unwrap_err();
        assert!(err.to_string().contains("port 443 "), "{err}");
        let err = prepare(&req("http://h/m"), "h", &allow).unwrap_err();
        assert!(err.to_string().contains("port 80 "), "{err}");
        // Other failures stay 500.
        assert_eq!(
            prepare(&req("http://x:9100/"), "h", &allow)
                .unwrap_err()
                .status(),
            500
        );
    }

    #[test]
    fn ports_outside_the_sd_targets_are_refused_naming_both_flags() {
        let error = ScrapeError::NotAllowed {
            url: "http://h:22/".into(),
            host: "h".into(),
            port: 22,
            allow: vec![AllowRule::Port(9100), AllowRule::Port(9256)],
            from_sd_targets: true,
        };
        assert_eq!(error.status(), 403);
        assert_eq!(
            error.to_string(),
            "scrape of http://h:22/ refused: port 22 is not one of the --sd.target ports \
             (9100, 9256), the only ones scraped without --scrape.allow; announce it with \
             --sd.target or allow it with --scrape.allow"
        );
    }

    #[test]
    fn scrape_allow_host_port_entries_only_count_for_their_host() {
        let allow = [
            AllowRule::HostPort("node1.example".into(), 9100),
            AllowRule::HostPort("node2.example".into(), 9256),
        ];
        let req = |url: &str| {
            request(&format!(
                "GET {url} HTTP/1.1\r\nId: 1\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"
            ))
        };
        let ok = prepare(&req("http://NODE1.example:9100/"), "node1.example", &allow);
        assert!(ok.is_ok());
        let err = prepare(&req("http://node1.example:9256/"), "node1.example", &allow)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "scrape of http://node1.example:9256/ refused: node1.example:9256 is not in \
             --scrape.allow (node1.example:9100, node2.example:9256); add 9256 or \
             node1.example:9256 there to allow it"
        );
    }
}
