//! The HTTP agents: one per proxy, and those for the targets on this host. Both keep idle
//! connections and cache name lookups.

use std::time::Duration;

use ureq::tls::TlsConfig;
use ureq::unversioned::transport::Connector as _;
use ureq::Agent;

use crate::liveness::MarkPolls;
use crate::resolver::CachingResolver;

/// A proxy that accepts no TCP connection within this is reported, and polled again later.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle keep-alive connections each agent keeps per host (ureq keeps 3). Scrapes that overlap
/// use as many connections to the target, and their pushes as many to the proxy, as there are
/// scrapes at once; an idle connection still goes after ureq's 15 s.
const IDLE_CONNECTIONS: usize = 16;

/// Whether `url`'s host is `localhost` or a loopback address.
pub fn is_loopback(url: &str) -> bool {
    url.parse::<ureq::http::Uri>()
        .ok()
        .and_then(|uri| {
            uri.host()
                .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
        })
        .is_some_and(|host| {
            host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
}

/// The agent for the proxy at `url`. Its forward proxy follows ALL_PROXY, HTTPS_PROXY,
/// HTTP_PROXY and NO_PROXY, except for a loopback `url` (localhost, 127.0.0.0/8, ::1), which
/// is always reached directly, as Go's net/http does; `tls` only matters for an https proxy.
pub fn proxy_agent(tls: TlsConfig, url: &str) -> Agent {
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .max_redirects(0)
        .user_agent(format!("pushprox-client/{}", env!("CARGO_PKG_VERSION")))
        .max_idle_connections(IDLE_CONNECTIONS)
        .max_idle_connections_per_host(IDLE_CONNECTIONS);
    let config = if is_loopback(url) {
        config.proxy(None)
    } else {
        config
    }
    .build();
    // Each write marks the poll sent on its thread as open (liveness.rs).
    Agent::with_parts(
        config,
        crate::tcp::connectors().chain(MarkPolls),
        CachingResolver::default(),
    )
}

/// The agent for targets on this host. With `connect_host` (`--scrape.target-host`) every
/// connection goes to that host, on the URL's port; the URL's host stays the TLS name checked
/// and the `Host` header sent, so certificates for the FQDN and virtual hosts keep working.
pub fn target_agent(tls: TlsConfig, connect_host: Option<String>) -> Agent {
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        // Targets are on this host: never through an HTTP(S)_PROXY.
        .proxy(None)
        // A redirect could lead anywhere (another port, the proxy's API) with the scraper's
        // headers: the 3xx goes back to the scraper, whose next request passes our checks again.
        .max_redirects(0)
        // Send only the scraper's headers.
        .user_agent("")
        .accept("")
        .accept_encoding("")
        .max_idle_connections(IDLE_CONNECTIONS)
        .max_idle_connections_per_host(IDLE_CONNECTIONS)
        .build();
    Agent::with_parts(
        config,
        crate::tcp::connectors(),
        CachingResolver::connecting_to(connect_host),
    )
}

/// Says whether `url` is reached through a forward proxy from the environment: a poll that
/// fails there is otherwise hard to explain.
pub fn log_forward_proxy(agent: &Agent, url: &str) {
    let Some(forward) = agent.config().proxy() else {
        return;
    };
    let direct = url
        .parse::<ureq::http::Uri>()
        .is_ok_and(|uri| forward.is_no_proxy(&uri));
    if direct {
        log::info!("reaching {url} directly: NO_PROXY exempts it from the forward proxy");
    } else {
        log::info!(
            "reaching {url} through the forward proxy {}:{} (from ALL_PROXY, HTTPS_PROXY or HTTP_PROXY; exempt hosts with NO_PROXY)",
            forward.host(),
            forward.port()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_proxy_urls() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:80",
            "http://127.1.2.3",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "http://proxy.example:8080",
            "http://10.0.0.1",
            "http://[2001:db8::1]",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }
}
