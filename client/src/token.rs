//! `--auth.token-file`: the bearer token this client shows the proxy on /poll and /push.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::StartupError;

/// The token, read once at start. Its `Debug` hides it, so it never reaches a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Reads the file: one token, white space around it ignored.
    pub fn read(path: &Path) -> Result<BearerToken, StartupError> {
        let fail = |reason: String| StartupError::TokenFile {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| fail("it is not UTF-8 text".into()))?;
        BearerToken::parse(&text).map_err(fail)
    }

    /// Checks the file's text; the reasons never quote the token.
    pub fn parse(text: &str) -> Result<BearerToken, String> {
        let token = text.trim();
        if token.is_empty() {
            return Err("it is empty; put the token the proxy's --auth.client-tokens lists for this client's FQDN in it".into());
        }
        if token.chars().any(char::is_whitespace) {
            return Err("it holds more than one word; it must hold the token alone".into());
        }
        // It goes into a header value: visible ASCII only.
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "the token has characters other than visible ASCII, which cannot be sent in an HTTP header"
                    .into(),
            );
        }
        Ok(BearerToken(token.to_string()))
    }

    /// The value of the `Authorization` header.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<hidden>)")
    }
}

/// A 401 or 403 from the proxy on /poll or /push: it does not accept our token (or our lack
/// of one) for this FQDN. The text says which flag to check and never shows the token.
#[derive(Debug)]
pub struct TokenRefused {
    pub status: u16,
    /// The proxy's reason, an excerpt of its answer.
    pub answer: String,
    pub fqdn: String,
    /// `--auth.token-file`, if given.
    pub token_file: Option<PathBuf>,
}

impl fmt::Display for TokenRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status;
        let reason = pushprox_protocol::reason_phrase(status);
        let (answer, fqdn) = (&self.answer, &self.fqdn);
        // A proxy that identifies clients by certificate says so; a token would not help.
        if answer.contains("certificate") {
            return write!(
                f,
                "the proxy refused this client's TLS certificate for fqdn {fqdn} ({status} \
                 {reason}: \"{answer}\"); give --tls.cert and --tls.key a certificate with \
                 {fqdn} among its DNS subjectAltNames, or run with the --fqdn it names"
            );
        }
        match &self.token_file {
            Some(file) => write!(
                f,
                "the proxy refused the bearer token of --auth.token-file {} for fqdn {fqdn} \
                 ({status} {reason}: \"{answer}\"); check that the file holds the token the \
                 proxy's --auth.client-tokens lists for {fqdn}",
                file.display()
            ),
            None => write!(
                f,
                "the proxy wants a bearer token for fqdn {fqdn} ({status} {reason}: \
                 \"{answer}\"); give this client the token the proxy's --auth.client-tokens \
                 lists for {fqdn} with --auth.token-file"
            ),
        }
    }
}

impl std::error::Error for TokenRefused {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_space_around_is_trimmed() {
        let t = BearerToken::parse("  s3cr3t-Token_1\n\n").unwrap();
        assert_eq!(t.header_value(), "Bearer s3cr3t-Token_1");
        assert_eq!(format!("{t:?}"), "BearerToken(<hidden>)");
    }

    #[test]
    fn empty_several_words_or_control_characters_are_refused_without_quoting() {
        for bad in ["", " \n\t", "zq1 zq2", "zq1\nzq2", "zqö", "zq\u{7f}"] {
            let err = BearerToken::parse(bad).unwrap_err();
            assert!(!err.contains("zq"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn refusal_names_the_flag_the_file_and_the_fqdn() {
        let mut refused = TokenRefused {
            status: 403,
            answer: "the bearer token is not valid for any client FQDN".into(),
            fqdn: "node1.example".into(),
            token_file: Some("/etc/pushprox/token".into()),
        };
        let text = refused.to_string();
        for part in [
            "refused",
            "--auth.token-file /etc/pushprox/token",
            "node1.example",
            "403 Forbidden",
            "not valid",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        refused.answer =
            "the client certificate is not valid for node1.example: it names b.example".into();
        let text = refused.to_string();
        assert!(
            text.contains("TLS certificate")
                && text.contains("--tls.cert")
                && !text.contains("--auth.client-tokens")
                && !text.contains("--auth.token-file"),
            "a certificate-bound 403 gives no token advice: {text}"
        );
        refused.answer = "the bearer token is not valid for any client FQDN".into();
        refused.token_file = None;
        refused.status = 401;
        let text = refused.to_string();
        assert!(
            text.contains("401 Unauthorized") && text.contains("with --auth.token-file"),
            "{text}"
        );
    }

    #[test]
    fn unreadable_and_empty_files_name_the_flag_and_the_file() {
        let err = BearerToken::read(Path::new("/nonexistent/token"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--auth.token-file") && err.contains("/nonexistent/token"),
            "{err}"
        );
        let dir = pushprox_test_support::TempDir::new("client-empty-token");
        let path = dir.write("token", "\n");
        let err = BearerToken::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("--auth.token-file")
                && err.contains(path.to_str().unwrap())
                && err.contains("empty"),
            "{err}"
        );
    }
}
