//! The names an X.509 certificate carries: subject alternative names (DNS, e-mail, IP, URI)
//! and the subject's common names. A minimal DER reader, enough for these two fields and
//! nothing else: every length is checked against what is left, nothing is trusted, and a
//! certificate it cannot follow gives `None`, never a panic. (x509-parser would do it too, at
//! several hundred KiB of the static binary for two fields.) Signatures, dates and usages are
//! rustls-webpki's business, not this file's.

use std::net::IpAddr;

/// The names of one certificate.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CertNames {
    /// `dNSName` SANs, as written (possibly wildcards such as `*.example.com`).
    pub dns: Vec<String>,
    /// `rfc822Name` SANs.
    pub emails: Vec<String>,
    /// `iPAddress` SANs.
    pub ips: Vec<IpAddr>,
    /// `uniformResourceIdentifier` SANs.
    pub uris: Vec<String>,
    /// The subject's common names (`CN=`), in order.
    pub common_names: Vec<String>,
}

impl CertNames {
    /// Every SAN as a string (IP addresses in their usual text form), for matching
    /// `client_allowed_sans` and for messages.
    pub fn sans(&self) -> Vec<String> {
        let mut all = Vec::new();
        all.extend(self.dns.iter().cloned());
        all.extend(self.emails.iter().cloned());
        all.extend(self.ips.iter().map(|ip| ip.to_string()));
        all.extend(self.uris.iter().cloned());
        all
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
/// `[0] EXPLICIT` version, `[3] EXPLICIT` extensions.
const VERSION_TAG: u8 = 0xA0;
const EXTENSIONS_TAG: u8 = 0xA3;
/// 2.5.29.17 subjectAltName
const OID_SAN: &[u8] = &[0x55, 0x1D, 0x11];
/// 2.5.4.3 commonName
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

/// One DER element: (tag, contents, rest). Only single-byte tags and definite lengths of up
/// to four bytes, as DER certificates use.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1F == 0x1F {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7F) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, after) = (rest.get(..n)?, rest.get(n..)?);
        rest = after;
        bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize)
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

/// The element if it has `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = element(input)?;
    (t == tag).then_some((contents, rest))
}

/// The names of the DER certificate `der`; `None` if it is not a certificate this reader can
/// follow.
pub fn parse(der: &[u8]) -> Option<CertNames> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION_TAG) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer, validity
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (subject, after_subject) = expect(rest, SEQUENCE)?;
    let mut names = CertNames {
        common_names: common_names(subject)?,
        ..CertNames::default()
    };
    // subjectPublicKeyInfo, then optional [1] and [2] unique ids, then [3] extensions.
    rest = element(after_subject)?.2;
    while let Some((tag, contents, after)) = element(rest) {
        if tag == EXTENSIONS_TAG {
            let (mut exts, _) = expect(contents, SEQUENCE)?;
            while !exts.is_empty() {
                let (ext, after_ext) = expect(exts, SEQUENCE)?;
                exts = after_ext;
                let (oid, mut value) = expect(ext, OID)?;
                if value.first() == Some(&BOOLEAN) {
                    value = element(value)?.2;
                }
                if oid == OID_SAN {
                    let (octets, _) = expect(value, OCTET_STRING)?;
                    general_names(octets, &mut names)?;
                }
            }
        }
        rest = after;
    }
    Some(names)
}

/// The `CN=` values of a Name (SEQUENCE OF SET OF AttributeTypeAndValue).
fn common_names(mut name: &[u8]) -> Option<Vec<String>> {
    let mut cns = Vec::new();
    while !name.is_empty() {
        let (mut rdn, after) = expect(name, SET)?;
        name = after;
        while !rdn.is_empty() {
            let (atv, after_atv) = expect(rdn, SEQUENCE)?;
            rdn = after_atv;
            let (oid, value) = expect(atv, OID)?;
            if oid == OID_CN {
                let (tag, text, _) = element(value)?;
                // UTF8String, PrintableString, IA5String, TeletexString (when it is UTF-8);
                // other string types cannot name a host.
                if matches!(tag, 0x0C | 0x13 | 0x16 | 0x14) {
                    cns.extend(std::str::from_utf8(text).ok().map(str::to_string));
                }
            }
        }
    }
    Some(cns)
}

/// GeneralNames (SEQUENCE OF GeneralName), the kinds we use; others are skipped.
fn general_names(der: &[u8], names: &mut CertNames) -> Option<()> {
    let (mut list, _) = expect(der, SEQUENCE)?;
    while !list.is_empty() {
        let (tag, value, after) = element(list)?;
        list = after;
        let text = || std::str::from_utf8(value).ok().map(str::to_string);
        match tag {
            0x81 => names.emails.extend(text()),
            0x82 => names.dns.extend(text()),
            0x86 => names.uris.extend(text()),
            0x87 => match value.len() {
                4 => names
                    .ips
                    .push(IpAddr::from(<[u8; 4]>::try_from(value).ok()?)),
                16 => names
                    .ips
                    .push(IpAddr::from(<[u8; 16]>::try_from(value).ok()?)),
                _ => {}
            },
            _ => {}
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushprox_test_support::{KeyKind, TempDir};

    #[test]
    fn names_of_issued_certificates() {
        let dir = TempDir::new("certnames");
        let ca = dir.ca("ca");
        let key = dir.key("k.key", KeyKind::P256Sec1);
        let cert = dir.leaf(
            "c.pem",
            &key,
            &ca,
            "Client One",
            &[
                "DNS:a.example.com",
                "DNS:*.b.example.com",
                "email:ops@example.com",
                "IP:10.0.0.1",
                "IP:2001:db8::1",
                "URI:spiffe://example.com/client",
            ],
        );
        let names = parse(&dir.der(&cert)).unwrap();
        assert_eq!(names.dns, ["a.example.com", "*.b.example.com"]);
        assert_eq!(names.emails, ["ops@example.com"]);
        assert_eq!(
            names.ips,
            [
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        assert_eq!(names.uris, ["spiffe://example.com/client"]);
        assert_eq!(names.common_names, ["Client One"]);
        assert_eq!(
            names.sans(),
            [
                "a.example.com",
                "*.b.example.com",
                "ops@example.com",
                "10.0.0.1",
                "2001:db8::1",
                "spiffe://example.com/client"
            ]
        );

        let cn_only = dir.leaf("cn.pem", &key, &ca, "host.example.com", &[]);
        let names = parse(&dir.der(&cn_only)).unwrap();
        assert_eq!(names.common_names, ["host.example.com"]);
        assert!(names.sans().is_empty());

        // The CA certificate: no SAN, CN "ca".
        assert_eq!(parse(&dir.der(&ca.0)).unwrap().common_names, ["ca"]);
    }

    #[test]
    fn truncated_or_garbage_input_gives_none() {
        let dir = TempDir::new("certnames-bad");
        let ca = dir.ca("ca");
        let der = dir.der(&ca.0);
        // Every prefix of a real certificate, and every one-byte corruption of its head: no
        // panic; a prefix is never a certificate.
        for n in 0..der.len() {
            assert_eq!(parse(&der[..n]), None, "prefix of {n} bytes");
        }
        for i in 0..40.min(der.len()) {
            let mut bad = der.clone();
            bad[i] ^= 0xFF;
            let _ = parse(&bad);
        }
        assert_eq!(parse(b""), None);
        assert_eq!(parse(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]), None);
        assert_eq!(parse(&[0x30, 0x80, 0x00, 0x00]), None, "indefinite length");
        assert_eq!(parse(&[0x1F, 0x01, 0x00]), None, "multi-byte tag");
    }
}
