//! Client certificates as identities: with `RequireAndVerifyClientCert`, a client may poll
//! (and push) only for an FQDN its verified certificate names.
//!
//! The names are the certificate's DNS SANs, matched as TLS matches a server name (rustls-
//! webpki's own matcher: case-insensitive, `*.example.com` stands for exactly one left-most
//! label). Only a certificate with no DNS SAN at all is named by its subject CN, compared
//! whole (case-insensitive): CAs have put SANs in certificates for twenty years, and a CN
//! beside a SAN is ignored, as browsers and webpki ignore it.

use rustls::pki_types::{CertificateDer, DnsName, ServerName};

use super::cert_names;

/// Whether the verified end-entity certificate `cert` names `fqdn` (a trailing dot and case
/// are ignored).
pub fn may_poll_for(cert: &CertificateDer<'_>, fqdn: &str) -> bool {
    let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn).to_ascii_lowercase();
    if fqdn.is_empty() {
        return false;
    }
    let Some(names) = cert_names::parse(cert) else {
        return false;
    };
    if names.dns.is_empty() {
        return names.common_names.iter().any(|cn| {
            cn.strip_suffix('.')
                .unwrap_or(cn)
                .eq_ignore_ascii_case(&fqdn)
        });
    }
    let Ok(name) = DnsName::try_from(fqdn) else {
        return false;
    };
    let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&ServerName::DnsName(name))
        .is_ok()
}

/// The names `may_poll_for` matches against (DNS SANs, else the CNs), for a refusal
/// message: "this certificate names a.example.com, *.b.example.com".
pub fn names(cert: &CertificateDer<'_>) -> Vec<String> {
    match cert_names::parse(cert) {
        Some(names) if !names.dns.is_empty() => names.dns,
        Some(names) => names.common_names,
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testcerts::{Dir, KeyKind};

    #[test]
    fn sans_wildcards_and_common_names() {
        let dir = Dir::new("identity");
        let ca = dir.ca("ca");
        let key = dir.key("k.key", KeyKind::P256Sec1);
        let der = |file: &str, cn: &str, sans: &[&str]| {
            let pem = dir.leaf(file, &key, &ca, cn, sans);
            CertificateDer::from(dir.der(&pem))
        };

        let exact = der("exact.pem", "client", &["DNS:host1.example.com"]);
        assert!(may_poll_for(&exact, "host1.example.com"));
        assert!(
            may_poll_for(&exact, "HOST1.Example.com."),
            "case and trailing dot"
        );
        assert!(!may_poll_for(&exact, "host2.example.com"));
        assert!(!may_poll_for(&exact, "example.com"));
        assert!(
            !may_poll_for(&exact, "client"),
            "the CN beside a SAN is ignored"
        );
        assert!(!may_poll_for(&exact, ""));
        assert_eq!(names(&exact), ["host1.example.com"]);

        let wildcard = der(
            "wild.pem",
            "client",
            &["DNS:*.dc1.example.com", "DNS:db.example.com"],
        );
        assert!(may_poll_for(&wildcard, "web7.dc1.example.com"));
        assert!(may_poll_for(&wildcard, "db.example.com"));
        assert!(
            !may_poll_for(&wildcard, "a.web7.dc1.example.com"),
            "one label only"
        );
        assert!(
            !may_poll_for(&wildcard, "dc1.example.com"),
            "not the parent itself"
        );
        assert!(
            !may_poll_for(&wildcard, "*.dc1.example.com"),
            "not a wildcard FQDN"
        );
        assert_eq!(names(&wildcard), ["*.dc1.example.com", "db.example.com"]);

        let cn_only = der("cn.pem", "Host3.Example.com", &[]);
        assert!(may_poll_for(&cn_only, "host3.example.com"));
        assert!(may_poll_for(&cn_only, "host3.example.com."));
        assert!(!may_poll_for(&cn_only, "x.host3.example.com"));
        assert_eq!(names(&cn_only), ["Host3.Example.com"]);

        // A CN with a SAN naming something else: the CN does not count.
        let both = der("both.pem", "host4.example.com", &["DNS:other.example.com"]);
        assert!(!may_poll_for(&both, "host4.example.com"));
        assert!(may_poll_for(&both, "other.example.com"));

        // An IP SAN is not a DNS SAN: the CN names the certificate.
        let ip = der("ip.pem", "host5.example.com", &["IP:10.0.0.5"]);
        assert!(may_poll_for(&ip, "host5.example.com"));
        assert!(!may_poll_for(&ip, "10.0.0.5"));

        assert!(!may_poll_for(
            &CertificateDer::from(vec![0x30, 0x00]),
            "a.example.com"
        ));
        assert!(names(&CertificateDer::from(b"garbage".to_vec())).is_empty());
    }
}
