//! What to check after a TLS failure whose words (from rustls) an operator may not know.

use std::io;

use rustls::{AlertDescription, CertificateError, Error as TlsError};

use super::ca::{Trusted, TARGET_TRUSTED, TRUSTED};

/// The rustls error inside a ureq error: ureq returns it as is, or (from a handshake) inside
/// an `io::Error`.
fn rustls_error(error: &ureq::Error) -> Option<&TlsError> {
    match error {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(e) => e.get_ref()?.downcast_ref::<TlsError>(),
        _ => None,
    }
}

/// What the client trusts for `peer`.
fn trusted(peer: &str) -> Option<&'static Trusted> {
    match peer {
        "target" => TARGET_TRUSTED.get().or_else(|| TRUSTED.get()),
        _ => TRUSTED.get(),
    }
}

/// A hint to append to `error`'s text, starting with "; ", or empty when there is nothing to
/// add. `peer` is "proxy" or "target".
pub fn hint(error: &ureq::Error, peer: &str) -> String {
    let cert = match rustls_error(error) {
        Some(TlsError::InvalidCertificate(cert)) => cert,
        Some(TlsError::AlertReceived(alert)) if peer == "proxy" => return refused_hint(*alert),
        None if peer == "proxy" && cut_after_handshake(error) => {
            // With TLS 1.3 a proxy that wants a client certificate refuses after the
            // handshake, and the client sees its request's write fail, not the alert.
            return "; if the proxy checks client certificates (client_auth_type in its web \
                    config), this is how it refuses a client without an acceptable one: give \
                    --tls.cert and --tls.key, and see the proxy's log"
                .to_string();
        }
        _ => return String::new(),
    };
    // The flag that gives CA certificates for this peer.
    let cacert = if peer == "target" {
        "--scrape.tls.cacert"
    } else {
        "--tls.cacert"
    };
    match cert {
        CertificateError::Other(other)
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            format!(
                "; the {peer}'s certificate is marked as a CA certificate, which rustls refuses \
                 for a server: `openssl req -x509` makes such a certificate unless given \
                 `-addext basicConstraints=critical,CA:FALSE`"
            )
        }
        CertificateError::UnknownIssuer => match trusted(peer) {
            Some(Trusted::Nothing(looked)) => format!(
                "; this client has no CA certificates to check the {peer}'s certificate with \
                 ({looked}): give {cacert} FILE or set SSL_CERT_FILE"
            ),
            Some(Trusted::Flag(flag)) => format!(
                "; the {peer}'s certificate is not signed by a CA in {flag}{}",
                if peer == "target" {
                    " (--scrape.tls.cacert trusts other CAs for targets, \
                     --scrape.tls.insecure-skip-verify none)"
                } else {
                    ""
                }
            ),
            Some(Trusted::System(source)) => format!(
                "; the {peer}'s certificate is not signed by a CA of the system's ({source}); \
                 give the CA's PEM file with {cacert} or SSL_CERT_FILE"
            ),
            None => format!(
                "; the {peer}'s certificate is not signed by a CA in {cacert} or the \
                 system's CA bundle"
            ),
        },
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "; the {peer}'s certificate does not name the host of its URL in its \
                 subjectAltName"
            )
        }
        _ => String::new(),
    }
}

/// Whether `error` is a connection to the proxy cut by the peer while TLS is in use (the CA
/// certificates for the proxy have been loaded, which happens at the first TLS connection).
fn cut_after_handshake(error: &ureq::Error) -> bool {
    let ureq::Error::Io(e) = error else {
        return false;
    };
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    ) && TRUSTED.get().is_some()
}

/// What the proxy's handshake alert means for this client's certificate.
fn refused_hint(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure => {
            "; the proxy requires a client certificate: give --tls.cert and --tls.key (a \
             certificate of the CA in its client_ca_file, naming this client's --fqdn)"
                .to_string()
        }
        AlertDescription::BadCertificate
        | AlertDescription::UnknownCA
        | AlertDescription::CertificateUnknown
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateRevoked
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::AccessDenied => {
            "; the proxy refused this client's certificate (--tls.cert): check that it is \
             signed by the CA in the proxy's client_ca_file, still valid, and names this \
             client's --fqdn; the proxy's log says which"
                .to_string()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A handshake failure as ureq returns it: the rustls error inside an `io::Error`.
    fn handshake(e: TlsError) -> ureq::Error {
        ureq::Error::Io(io::Error::new(io::ErrorKind::InvalidData, e))
    }

    #[test]
    fn hints_for_rustls_errors() {
        let ca_as_server = TlsError::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(webpki::Error::CaUsedAsEndEntity)),
        ));
        assert!(hint(&handshake(ca_as_server), "proxy").contains("CA:FALSE"));
        let unknown = TlsError::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(hint(&handshake(unknown.clone()), "proxy").contains("--tls.cacert"));
        let target = hint(&ureq::Error::Rustls(unknown), "target");
        assert!(target.contains("target's certificate"), "{target}");
        // No CA list loaded in this test process: the hint names the target's own flag.
        assert!(target.contains("--scrape.tls.cacert"), "{target}");
        let name = TlsError::InvalidCertificate(CertificateError::NotValidForName);
        assert!(hint(&handshake(name), "target").contains("target's certificate does not name"));
        let required = TlsError::AlertReceived(AlertDescription::CertificateRequired);
        assert!(
            hint(&handshake(required.clone()), "proxy").contains("requires a client certificate")
        );
        assert_eq!(hint(&handshake(required), "target"), "");
        let unknown_ca = TlsError::AlertReceived(AlertDescription::UnknownCA);
        assert!(hint(&ureq::Error::Rustls(unknown_ca), "proxy").contains("client_ca_file"));
        let refused = ureq::Error::Io(io::ErrorKind::ConnectionRefused.into());
        assert_eq!(hint(&refused, "proxy"), "");
        let expired = TlsError::InvalidCertificate(CertificateError::Expired);
        assert_eq!(hint(&handshake(expired), "proxy"), "");
    }
}
