//! Name resolution for the client's agents, with a short cache.
//!
//! ureq's default resolver starts a thread for every lookup that has a time-out, which for a
//! client was three new threads per scrape (the poll, the target, the push). The client only
//! ever asks for a handful of names: its own FQDN and its proxies. IP literals need no lookup
//! at all, and a name's addresses are kept for [`TTL`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pushprox_daemon::sync::lock;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;
use ureq::Error;

/// How long resolved addresses are reused.
pub const TTL: Duration = Duration::from_secs(30);
/// Most names remembered; scrapes choose ports, so the key space is bounded only here.
const MAX_ENTRIES: usize = 64;

/// A resolver that answers IP literals at once and caches names for [`TTL`].
#[derive(Debug, Default)]
pub struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
    /// `--scrape.target-host`: the host every name resolves to (the URL's port is kept).
    connect_host: Option<String>,
}

impl CachingResolver {
    /// A resolver that, given `Some(host)`, resolves every URL's host as `host`.
    pub fn connecting_to(connect_host: Option<String>) -> Self {
        CachingResolver {
            connect_host,
            ..CachingResolver::default()
        }
    }
}

fn default_port(uri: &Uri) -> Option<u16> {
    match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        if let (Some(host), Some(authority)) = (&self.connect_host, uri.authority()) {
            let port = authority
                .port_u16()
                .or_else(|| default_port(uri))
                .unwrap_or(80);
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            let replaced: Uri = format!("{}://{host}:{port}/", uri.scheme_str().unwrap_or("http"))
                .parse()
                .map_err(|_| {
                    Error::BadUri(format!("--scrape.target-host {host} with port {port}"))
                })?;
            return self.resolve_cached(&replaced, config, timeout);
        }
        self.resolve_cached(uri, config, timeout)
    }
}

impl CachingResolver {
    /// IP literals at once, names from the cache or looked up.
    fn resolve_cached(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        if let Some(authority) = uri.authority() {
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let port = authority.port_u16().or_else(|| default_port(uri));
            if let (Ok(ip), Some(port)) = (host.parse::<IpAddr>(), port) {
                let mut addrs = self.empty();
                addrs.push(SocketAddr::new(ip, port));
                return Ok(addrs);
            }
        }
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or(""),
            uri.authority().map_or("", |a| a.as_str())
        );
        let cached = {
            let cache = lock(&self.cache);
            cache
                .get(&key)
                .filter(|(at, _)| at.elapsed() < TTL)
                .map(|(_, addrs)| addrs.clone())
        };
        if let Some(addrs) = cached {
            return Ok(addrs);
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        let mut cache = lock(&self.cache);
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::Agent;

    fn resolve(r: &CachingResolver, url: &str) -> Vec<SocketAddr> {
        let uri: Uri = url.parse().unwrap();
        let config = Agent::config_builder().build();
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::from_secs(5),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        r.resolve(&uri, &config, timeout)
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn connect_host_replaces_every_host_and_keeps_the_port() {
        let r = CachingResolver::connecting_to(Some("127.0.0.9".into()));
        assert_eq!(
            resolve(&r, "https://host-a.example:9100/metrics"),
            ["127.0.0.9:9100".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve(&r, "http://host-a.example/metrics"),
            ["127.0.0.9:80".parse::<SocketAddr>().unwrap()]
        );
        let r = CachingResolver::connecting_to(Some("::1".into()));
        assert_eq!(
            resolve(&r, "https://host-a.example/"),
            ["[::1]:443".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn ip_literals_need_no_lookup_and_names_are_cached() {
        let r = CachingResolver::default();
        assert_eq!(
            resolve(&r, "http://127.0.0.2:9100/metrics"),
            ["127.0.0.2:9100".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve(&r, "https://[::1]/"),
            ["[::1]:443".parse::<SocketAddr>().unwrap()]
        );
        assert!(
            r.cache.lock().unwrap().is_empty(),
            "literals are not cached"
        );
        let first = resolve(&r, "http://localhost:9100/");
        assert!(!first.is_empty());
        assert_eq!(r.cache.lock().unwrap().len(), 1);
        assert_eq!(resolve(&r, "http://localhost:9100/other"), first);
        assert_eq!(
            r.cache.lock().unwrap().len(),
            1,
            "the same name and port is one entry"
        );
    }
}
