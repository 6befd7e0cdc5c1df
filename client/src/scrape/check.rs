//! Checking the request the proxy handed out (method, host, port, deadline) and turning it
//! into what is sent to the target.

use std::time::Duration;

use pushprox_protocol::{without_userinfo, ProtocolError, ScrapeRequest, HOP_BY_HOP, ID_HEADER};

use crate::config::AllowRule;

use super::ScrapeError;

/// A scrape request checked and turned into what is sent to the target.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Prepared {
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
pub(super) fn prepare(
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
        .scrape_timeout()
        .ok_or(ScrapeError::MissingDeadline)?;
    let timeout = timeout.map_err(ScrapeError::BadDeadline)?;
    Ok(Prepared {
        method: request.method.clone(),
        url,
        headers: forwarded_headers(request),
        timeout,
    })
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
pub(super) fn target_url(url: &str) -> Result<String, ScrapeError> {
    let bad = || ScrapeError::BadUrl(ProtocolError::MalformedUrl(url.to_string()));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let rest = rest.split('#').next().unwrap_or("");
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut scheme = scheme.to_ascii_lowercase();
    let mut kept = Vec::new();
    for param in query.split('&') {
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
pub(super) fn forwarded_headers(request: &ScrapeRequest) -> Vec<(String, String)> {
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
