//! Listen addresses (`-l` of the proxy, `--metrics-addr` of the client): parsed once, bound
//! the way Go listens.

use std::fmt;
use std::io;
use std::net::TcpListener;

/// `host:port`, `[v6]:port`, or `:port` for every interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    /// `None`: every interface.
    pub host: Option<String>,
    pub port: u16,
    /// As given on the command line, for logs.
    pub text: String,
}

impl ListenAddr {
    /// The value parser of a listen-address flag.
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        let bad = || format!("\"{text}\" is not a listen address such as :8080 or 127.0.0.1:8080");
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(ListenAddr {
            host: (!host.is_empty()).then(|| host.to_string()),
            port,
            text: text.to_string(),
        })
    }

    /// The addresses to bind, in the order to try: `:8080` is every interface, IPv6 and IPv4
    /// on one dual-stack socket (`[::]:8080`, as Go listens), or IPv4 alone (`0.0.0.0:8080`)
    /// on a host without IPv6.
    pub fn candidates(&self) -> Vec<String> {
        match &self.host {
            None => vec![
                format!("[::]:{}", self.port),
                format!("0.0.0.0:{}", self.port),
            ],
            Some(host) if host.contains(':') => vec![format!("[{host}]:{}", self.port)],
            Some(host) => vec![format!("{host}:{}", self.port)],
        }
    }

    /// Binds the first candidate the host supports; an address in use ends the search.
    pub fn bind(&self) -> Result<TcpListener, ListenError> {
        bind_first(&self.candidates())
    }
}

/// No candidate address could be bound.
#[derive(Debug)]
pub struct ListenError {
    /// The last address tried.
    pub addr: String,
    pub source: io::Error,
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.source)
    }
}

impl std::error::Error for ListenError {}

fn bind_first(addrs: &[String]) -> Result<TcpListener, ListenError> {
    let mut failure = ListenError {
        addr: String::new(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "no listen address"),
    };
    for addr in addrs {
        match TcpListener::bind(addr.as_str()) {
            Ok(listener) => return Ok(listener),
            Err(source) => {
                let in_use = source.kind() == io::ErrorKind::AddrInUse;
                failure = ListenError {
                    addr: addr.clone(),
                    source,
                };
                if in_use {
                    break;
                }
            }
        }
    }
    Err(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let all = ListenAddr::parse(":9999").unwrap();
        assert_eq!(all.candidates(), ["[::]:9999", "0.0.0.0:9999"]);
        assert_eq!(
            ListenAddr::parse("127.0.0.1:80").unwrap().candidates(),
            ["127.0.0.1:80"]
        );
        let v6 = ListenAddr::parse("[::1]:1234").unwrap();
        assert_eq!(v6.host.as_deref(), Some("::1"));
        assert_eq!(v6.candidates(), ["[::1]:1234"]);
        assert_eq!(v6.text, "[::1]:1234");
        for bad in ["9369", "host:", "host:http", ":70000"] {
            assert!(ListenAddr::parse(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn binds_the_first_address_the_host_has_and_stops_at_one_in_use() {
        // 192.0.2.1 (TEST-NET-1) is no address of this host: binding it fails, with no traffic.
        let first = bind_first(&["192.0.2.1:0".into(), "127.0.0.1:0".into()]).unwrap();
        assert!(first.local_addr().unwrap().ip().is_loopback());
        let taken = first.local_addr().unwrap().to_string();
        let err = bind_first(&[taken.clone(), "127.0.0.1:0".into()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot listen on {taken}: ")),
            "{err}"
        );
    }
}
