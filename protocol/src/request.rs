//! The scrape request in proxy form: what Prometheus sends the proxy, and what the proxy hands
//! a client as the body of its poll.

use std::io::{BufRead, Write as _};
use std::time::Duration;

use crate::error::{quoted, ProtocolError};
use crate::head::{self, HeadLimits};
use crate::headers::Headers;
use crate::timeout::{parse_scrape_timeout, SCRAPE_TIMEOUT_HEADER};

/// The header that carries the proxy's id of a scrape, echoed in the push.
pub const ID_HEADER: &str = "Id";

/// A scrape request: method, absolute URL and the scraper's headers (including `Host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeRequest {
    /// `GET` in practice; any token is carried through.
    pub method: String,
    /// The absolute target URL, as sent: `http://client.example:9100/metrics`.
    pub url: String,
    /// Every header, in arrival order.
    pub headers: Headers,
}

/// The parts of an absolute scrape URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http` or `https`, lower case.
    pub scheme: String,
    /// Host name or IP literal, without brackets or port, lower case.
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// Path and query, at least `/`.
    pub path_and_query: String,
}

impl Target {
    /// Parses an absolute `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Target, ProtocolError> {
        let bad = || ProtocolError::MalformedUrl(quoted(url.as_bytes()));
        // As the head reader and Go's url.Parse: no control characters or spaces anywhere.
        if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad());
        }
        let (scheme, _, host_port, path) = split_authority(url).ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let path = path.split('#').next().unwrap_or("");
        // No port, or an empty one after the colon: "".
        let (host, port) = match host_port.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(bad)?;
                // After the bracket: nothing, or a colon and the port.
                let port = after.strip_prefix(':').or(after.is_empty().then_some(""));
                (host, port.ok_or_else(bad)?)
            }
            None => host_port.rsplit_once(':').unwrap_or((host_port, "")),
        };
        let port = match port {
            "" => None,
            p if p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse::<u16>().map_err(|_| bad())?)
            }
            _ => return Err(bad()),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:%".contains(&b));
        if !host_ok || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad());
        }
        Ok(Target {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path_and_query: if path.is_empty() { "/" } else { path }.into(),
        })
    }
}

/// Whether `target` is an absolute `http://` or `https://` URL (the scheme in any case): a
/// request target in proxy form, as Prometheus sends a scrape through its `proxy_url`.
pub fn is_absolute_url(target: &str) -> bool {
    let starts = |prefix: &str| {
        target
            .get(..prefix.len())
            .is_some_and(|t| t.eq_ignore_ascii_case(prefix))
    };
    starts("http://") || starts("https://")
}

/// `url` with its userinfo (`user:password@`) cut out, or `None` when it has none: what logs,
/// error texts and `Host` may show of a scrape URL.
pub fn without_userinfo(url: &str) -> Option<String> {
    let (scheme, Some(_), host_port, rest) = split_authority(url)? else {
        return None;
    };
    Some(format!("{scheme}://{host_port}{rest}"))
}

/// `url` split around its authority: the scheme, the userinfo (`user:password`) if any, the
/// host and port, and the path, query and fragment; `None` without `://`.
fn split_authority(url: &str) -> Option<(&str, Option<&str>, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    let (userinfo, host_port) = authority
        .rsplit_once('@')
        .map_or((None, authority), |(userinfo, host_port)| {
            (Some(userinfo), host_port)
        });
    Some((scheme, userinfo, host_port, rest))
}

impl ScrapeRequest {
    /// A `GET` of `url` with no headers yet; `Host` is taken from the URL when written.
    pub fn get(url: &str) -> Result<ScrapeRequest, ProtocolError> {
        Target::parse(url)?;
        Ok(ScrapeRequest {
            method: "GET".into(),
            url: url.into(),
            headers: Headers::new(),
        })
    }

    /// Parses a request head in proxy form (request line with an absolute URL) from `r`,
    /// reading at most `max_head` bytes. The bytes after the head are left in `r`.
    pub fn parse<R: BufRead>(r: &mut R, max_head: usize) -> Result<ScrapeRequest, ProtocolError> {
        let head = head::read_request(r, HeadLimits::bytes(max_head)).map_err(|e| match e {
            // One limit for the whole head here: a long line is a large head.
            ProtocolError::TargetTooLong { limit } => ProtocolError::HeadTooLarge { limit },
            other => other,
        })?;
        let method_ok = head.method.bytes().all(|b| b.is_ascii_uppercase());
        if !method_ok {
            let line = format!("{} {}", head.method, head.target);
            return Err(ProtocolError::MalformedRequestLine(quoted(line.as_bytes())));
        }
        Target::parse(&head.target)?;
        Ok(ScrapeRequest {
            method: head.method,
            url: head.target,
            headers: head.headers,
        })
    }

    /// Parses a whole request head from bytes (the body of a poll response).
    pub fn from_bytes(bytes: &[u8], max_head: usize) -> Result<ScrapeRequest, ProtocolError> {
        ScrapeRequest::parse(&mut &bytes[..], max_head)
    }

    /// The parsed URL.
    pub fn target(&self) -> Result<Target, ProtocolError> {
        Target::parse(&self.url)
    }

    /// The proxy's id of this scrape, if set.
    pub fn id(&self) -> Option<&str> {
        self.headers.get(ID_HEADER)
    }

    /// The scraper's timeout (`X-Prometheus-Scrape-Timeout-Seconds`), if set.
    pub fn scrape_timeout(&self) -> Option<Result<Duration, ProtocolError>> {
        self.headers
            .get(SCRAPE_TIMEOUT_HEADER)
            .map(parse_scrape_timeout)
    }

    /// Writes the request in proxy form, as Go's `Request.WriteProxy` does: the request line
    /// with the absolute URL, `Host`, `User-Agent`, then the other headers sorted by name,
    /// each line ending in CRLF, and the empty line. There is no body.
    pub fn to_proxy_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{} {} HTTP/1.1\r\n", self.method, self.url);
        // Without a Host header, as Go's URL.Host: never the userinfo.
        let host = self.headers.get("Host").unwrap_or_else(|| {
            split_authority(&self.url).map_or("", |(_, _, host_port, _)| host_port)
        });
        Headers::write_field(&mut out, "Host", host);
        if let Some(ua) = self.headers.get("User-Agent") {
            Headers::write_field(&mut out, "User-Agent", ua);
        }
        let mut rest: Vec<(&str, &str)> = self
            .headers
            .iter()
            .filter(|(n, _)| {
                !n.eq_ignore_ascii_case("Host") && !n.eq_ignore_ascii_case("User-Agent")
            })
            .collect();
        // By name regardless of case, as Go sorts its canonical keys; stable for repeats.
        rest.sort_by(|(a, _), (b, _)| {
            a.bytes()
                .map(|c| c.to_ascii_lowercase())
                .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
        });
        for (n, v) in rest {
            Headers::write_field(&mut out, n, v);
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_urls_and_userinfo() {
        for url in ["http://h/", "HTTPS://h:1/x", "hTTp://h"] {
            assert!(is_absolute_url(url), "{url}");
        }
        for target in ["/metrics", "h:443", "ftp://h/", "http:/h", "*"] {
            assert!(!is_absolute_url(target), "{target}");
        }
        assert_eq!(
            without_userinfo("https://u:p@w@h:1/x?q=a@b").as_deref(),
            Some("https://h:1/x?q=a@b")
        );
        assert_eq!(without_userinfo("http://h/x?q=a@b"), None);
        assert_eq!(without_userinfo("/path@x"), None);
    }

    #[test]
    fn targets() {
        let t = Target::parse("http://Client.Example:9100/metrics?_scheme=https").unwrap();
        assert_eq!(t.scheme, "http");
        assert_eq!(t.host, "client.example");
        assert_eq!(t.port, Some(9100));
        assert_eq!(t.path_and_query, "/metrics?_scheme=https");
        let t = Target::parse("https://[::1]:8443").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path_and_query.as_str()),
            ("::1", Some(8443), "/")
        );
        let t = Target::parse("http://user:pw@host/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("host", None));
        for bad in [
            "/metrics",
            "ftp://host/",
            "http://",
            "http://:9100/",
            "http://host:99999/",
            "http://host:x/",
            "http://ho st/",
            "http://host/a b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_line_must_be_absolute_http() {
        for bad in [
            &b"GET /metrics HTTP/1.1\r\n\r\n"[..],
            b"GET http://h/ HTTP/2\r\n\r\n",
            b"get http://h/ HTTP/1.1\r\n\r\n",
            b"GET  http://h/ HTTP/1.1\r\n\r\n",
            b"<html><body>Gateway Timeout</body></html>",
            b"",
        ] {
            assert!(
                ScrapeRequest::from_bytes(bad, 1024).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn written_without_host_header_takes_host_from_url() {
        let req = ScrapeRequest::get("http://h:1/m").unwrap();
        assert_eq!(
            req.to_proxy_bytes(),
            b"GET http://h:1/m HTTP/1.1\r\nHost: h:1\r\n\r\n"
        );
    }
}
