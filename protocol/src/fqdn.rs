//! A client's FQDN: the characters it may hold, and the key a client is known by. The proxy
//! (poll bodies, `--auth.client-tokens` patterns, the rendezvous of polls and scrapes) and
//! the client (`--fqdn`, `--scrape.allow`) use these, so that both sides agree on a name.

/// Whether `name` is a host name as a poll body, `--fqdn` or a tokens file carries it: not
/// empty, and only letters, digits, `-`, `.`, `_` and `:` (an IPv6 address).
pub fn is_fqdn(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
}

/// The key of a client: its FQDN in lower case, as a scrape's host is compared
/// case-insensitively.
pub fn fqdn_key(fqdn: &str) -> String {
    fqdn.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["host.example.com", "Node-1_a", "::1", "10.0.0.1"] {
            assert!(is_fqdn(good), "{good}");
        }
        for bad in ["", "a b", "host/x", "ünï", "h\n"] {
            assert!(!is_fqdn(bad), "{bad:?}");
        }
        assert_eq!(fqdn_key("Host.Example"), "host.example");
    }
}
