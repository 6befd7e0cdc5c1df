//! Load balancers whose word on a scrape's target the proxy takes (`--web.trusted-proxies`).
//!
//! nginx forwards a proxy-form scrape (`GET http://host:9100/metrics`) in origin form
//! (`GET /metrics`, `Host:` of its own choosing), which would read as the proxy's own
//! `/metrics`. A balancer listed here passes the original absolute target in
//! [`TARGET_HEADER`], and the request is then that scrape. From any other peer the header is
//! dropped unread, so nobody else can turn a request into a scrape, and it never reaches a
//! client.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::http::Request;

/// The absolute target (`http://host:port/path?query`) of a scrape a trusted balancer
/// forwarded in origin form.
pub const TARGET_HEADER: &str = "X-PushProx-Target";

/// One network of `--web.trusted-proxies`: `10.0.0.0/8`, `::1/128`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedNet {
    addr: IpAddr,
    prefix: u8,
}

impl TrustedNet {
    /// Whether `ip` is in this network; an IPv4-mapped IPv6 peer (`::ffff:10.0.0.1`, seen on
    /// a dual-stack listener) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        // The top `prefix` bits (an IPv4 address is in the top 32, see `high_bits`).
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0);
        let same_network = high_bits(self.addr) & mask == high_bits(ip) & mask;
        self.addr.is_ipv4() == ip.is_ipv4() && same_network
    }
}

/// The address in the high bits of a `u128`: an IPv6 address whole, an IPv4 one in the top 32.
fn high_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl FromStr for TrustedNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("{text:?} is not an address or network (e.g. 10.0.0.5, 10.0.0.0/8, ::1/128)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(TrustedNet {
            addr: addr.to_canonical(),
            prefix,
        })
    }
}

impl fmt::Display for TrustedNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Applies [`TARGET_HEADER`] to a request before it is routed: from a peer in `trusted`, a
/// request carrying an absolute `http://` or `https://` target there becomes a scrape of that
/// target. The header is removed in every case. Returns the target taken, for the log.
pub fn apply(trusted: &[TrustedNet], peer: SocketAddr, request: &mut Request) -> Option<String> {
    let value = request.head.headers.remove(TARGET_HEADER)?;
    if !trusted.iter().any(|n| n.contains(peer.ip())) {
        log::debug!("ignored {TARGET_HEADER} from={peer}: not in --web.trusted-proxies");
        return None;
    }
    let value = value.trim();
    if !pushprox_protocol::is_absolute_url(value) {
        log::warn!(
            "ignored {TARGET_HEADER} from={peer}: {:?} is not an absolute http:// or https:// URL; check the balancer's configuration",
            crate::redact::shown(value)
        );
        return None;
    }
    request.head.target = value.to_string();
    Some(request.head.target.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{RequestHead, Version};

    fn net(s: &str) -> TrustedNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_addresses() {
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net(" 127.0.0.1 ").to_string(), "127.0.0.1/32");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("fd00::/8").to_string(), "fd00::/8");
        assert_eq!(net("::ffff:10.1.2.3/32").to_string(), "10.1.2.3/32");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "host.example",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<TrustedNet>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn matches_by_prefix() {
        let n = net("10.1.0.0/16");
        assert!(n.contains(ip("10.1.255.7")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(n.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped peer");
        assert!(!n.contains(ip("::1")));
        assert!(net("0.0.0.0/0").contains(ip("192.0.2.1")));
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
        let v6 = net("fd00:1::/32");
        assert!(v6.contains(ip("fd00:1:ffff::1")));
        assert!(!v6.contains(ip("fd00:2::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
    }

    fn request(target: &str, headers: &[(&str, &str)]) -> Request {
        let mut head = RequestHead {
            method: "GET".into(),
            target: target.into(),
            version: Version::Http11,
            headers: Default::default(),
            framing: pushprox_protocol::Framing::Length(0),
        };
        for (n, v) in headers {
            head.headers.append(*n, *v);
        }
        Request { head }
    }

    #[test]
    fn header_believed_only_from_trusted_peers() {
        let trusted = [net("127.0.0.0/8")];
        let lb: SocketAddr = "127.0.0.5:40000".parse().unwrap();
        let other: SocketAddr = "192.0.2.9:40000".parse().unwrap();
        let target = "http://host-01.shard.test:9100/metrics?x=1";

        let mut r = request("/metrics", &[(TARGET_HEADER, target), ("Accept", "*/*")]);
        assert_eq!(apply(&trusted, lb, &mut r).as_deref(), Some(target));
        assert_eq!(r.target(), target);
        assert_eq!(r.header(TARGET_HEADER), None, "never forwarded to a client");
        assert_eq!(r.header("Accept"), Some("*/*"));

        let mut r = request("/metrics", &[(TARGET_HEADER, target)]);
        assert_eq!(apply(&trusted, other, &mut r), None);
        assert_eq!(
            r.target(),
            "/metrics",
            "an untrusted peer gets the proxy's own /metrics"
        );
        assert_eq!(r.header(TARGET_HEADER), None);

        let mut r = request("/metrics", &[(TARGET_HEADER, target)]);
        assert_eq!(apply(&[], lb, &mut r), None, "no flag: nobody is trusted");
        assert_eq!(r.target(), "/metrics");

        let mut r = request("/metrics", &[]);
        assert_eq!(apply(&trusted, lb, &mut r), None);
        assert_eq!(r.target(), "/metrics", "no header: as before");

        let mut r = request("/poll", &[(TARGET_HEADER, "/clients")]);
        assert_eq!(apply(&trusted, lb, &mut r), None, "not absolute");
        assert_eq!(r.target(), "/poll");
    }
}
