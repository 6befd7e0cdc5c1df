//! One scrape: check the request the proxy handed out, perform it against the local target
//! within its deadline, and push the result (or the reason it failed) back.

use std::sync::Arc;
use std::time::Instant;

use pushprox_protocol::{ScrapeRequest, ID_HEADER};
use ureq::Agent;

use crate::config::AllowRule;
use crate::in_flight::InFlight;
use crate::link::ProxyLink;
use crate::metrics::{Metrics, Outcome};
use crate::push::{self, PushError};

mod check;
mod error;

use check::{prepare, Prepared};
pub use error::ScrapeError;
use pushprox_protocol::without_userinfo;

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
    let (fqdn, proxy) = (&ctx.fqdn, &link.url);
    let Some(id) = request.id().map(str::to_string) else {
        log::warn!(
            "fqdn={fqdn} scrape_id=none proxy={proxy} url={}: scrape request without an {ID_HEADER} header, so its result cannot be pushed; dropped",
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
    let Err((error, deadline)) = result else {
        return;
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
                "fqdn={fqdn} scrape_id={id} push of the failed scrape's {status} to {proxy} failed: {e}"
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
    let (fqdn, proxy) = (&ctx.fqdn, &link.url);
    ctx.metrics.scrape_done(Outcome::Refused);
    let error = ScrapeError::Busy {
        max: in_flight.max(),
    };
    let id = request.id().unwrap_or("none");
    if let Some(n) = in_flight.refused() {
        log::warn!(
            "fqdn={fqdn} {n} scrape(s) refused since the last such line, the latest scrape_id={id} from {proxy}: {error}"
        );
    }
    if request.id().is_none() {
        return;
    }
    let deadline = received + push::ERROR_PUSH_WINDOW;
    if let Err(e) = push::push_error(link, id, error.status(), &error.to_string(), deadline) {
        ctx.metrics.push_failed();
        log::debug!(
            "fqdn={fqdn} scrape_id={id} push of the 503 for a scrape beyond --scrape.max-in-flight to {proxy} failed: {e}"
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
    let (fqdn, proxy) = (&ctx.fqdn, &link.url);
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
                "fqdn={fqdn} scrape_id={id} push of the scrape result (status={status}) to {proxy}: {e}"
            );
            Ok(())
        }
        Err(e) => {
            ctx.metrics.scrape_done(Outcome::Success);
            ctx.metrics.push_failed();
            log::warn!(
                "fqdn={fqdn} scrape_id={id} push of the scrape result to {proxy} failed: {e}"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check::{forwarded_headers, target_url};
    use super::*;
    use pushprox_protocol::SCRAPE_TIMEOUT_HEADER;
    use std::time::Duration;

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
