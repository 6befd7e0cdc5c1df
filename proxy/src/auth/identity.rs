//! Client certificates as identities: with `RequireAndVerifyClientCert`, a client may poll
//! (and push) only for an FQDN its verified certificate names.
//!
//! The names are the certificate's DNS SANs, matched as TLS matches a server name (rustls-
//! webpki's own matcher: case-insensitive, `*.example.com` stands for exactly one left-most
//! label). Only a certificate with no SAN at all (of any kind: DNS, IP, e-mail, URI) is named
//! by its subject CN, compared whole (case-insensitive): CAs have put SANs in certificates for
//! twenty years, and a CN beside a SAN is ignored, as browsers and webpki ignore it; a
//! certificate issued for an IP address or a mail box names no host.

use rustls::pki_types::{CertificateDer, DnsName, ServerName};

use super::cert_names;

/// Whether the verified end-entity certificate `cert` names `fqdn` (a trailing dot and case
/// are ignored).
pub fn may_poll_for(cert: &CertificateDer<'_>, fqdn: &str) -> bool {
    let fqdn = pushprox_protocol::fqdn_key(fqdn.strip_suffix('.').unwrap_or(fqdn));
    if fqdn.is_empty() {
        return false;
    }
    let Some(names) = cert_names::parse(cert) else {
        return false;
    };
    if names.sans().is_empty() {
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

/// The names `may_poll_for` matches against (DNS SANs; the CNs when there is no SAN at
/// all), for a refusal message: "this certificate names a.example.com, *.b.example.com".
pub fn names(cert: &CertificateDer<'_>) -> Vec<String> {
    match cert_names::parse(cert) {
        Some(names) if names.sans().is_empty() => names.common_names,
        Some(names) => names.dns,
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushprox_test_support::{KeyKind, TempDir};

    #[test]
    fn sans_wildcards_and_common_names() {
        let dir = TempDir::new("identity");
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

        // A certificate with only an IP, e-mail or URI SAN names no host: its CN does not
        // count either (issue 16).
        for (file, san) in [
            ("ip.pem", "IP:10.0.0.5"),
            ("email.pem", "email:ops@example.com"),
            ("uri.pem", "URI:spiffe://example.com/host5"),
        ] {
            let cert = der(file, "host5.example.com", &[san]);
            assert!(!may_poll_for(&cert, "host5.example.com"), "{san}");
            assert!(!may_poll_for(&cert, "10.0.0.5"), "{san}");
            assert!(names(&cert).is_empty(), "{san}");
        }

        assert!(!may_poll_for(
            &CertificateDer::from(vec![0x30, 0x00]),
            "a.example.com"
        ));
        assert!(names(&CertificateDer::from(b"garbage".to_vec())).is_empty());
    }
}
