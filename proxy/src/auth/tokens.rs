//! `--auth.client-tokens`: which bearer token may poll and push for which FQDN.
//!
//! One `FQDN TOKEN` per line; `#` starts a comment. The FQDN may be `*.example.com` (any name
//! ending in `.example.com`, at any depth) or `*` (any name). For a given FQDN only the most
//! specific pattern that matches it counts: an exact name, then the longest wildcard suffix,
//! then `*`. A pattern may be listed more than once, for token rotation. Only the SHA-256 of
//! each token is kept.

use std::collections::HashMap;
use std::path::Path;

use subtle::ConstantTimeEq;

use super::{digest, Digest, FileError, Refusal};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Pattern {
    /// `host.example.com`
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Suffix(String),
    /// `*`
    Any,
}

impl Pattern {
    fn parse(text: &str) -> Option<Pattern> {
        let text = text.to_ascii_lowercase();
        let name_ok = pushprox_protocol::is_fqdn;
        if text == "*" {
            Some(Pattern::Any)
        } else if let Some(rest) = text.strip_prefix("*.") {
            name_ok(rest).then(|| Pattern::Suffix(format!(".{rest}")))
        } else {
            name_ok(&text).then_some(Pattern::Exact(text))
        }
    }

    /// How well it matches `fqdn` (lower case): higher is more specific; `None`: no match.
    fn specificity(&self, fqdn: &str) -> Option<usize> {
        match self {
            Pattern::Exact(name) => (name == fqdn).then_some(usize::MAX),
            Pattern::Suffix(suffix) => (fqdn.len() > suffix.len()
                && fqdn.ends_with(suffix.as_str()))
            .then_some(suffix.len()),
            Pattern::Any => Some(0),
        }
    }
}

/// The tokens of the file, by pattern.
#[derive(Debug)]
pub struct ClientTokens {
    rules: HashMap<Pattern, Vec<Digest>>,
}

impl ClientTokens {
    /// Reads and parses the file; errors name the file and the line.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        FileError::load("--auth.client-tokens", path, Self::parse)
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rules: HashMap<Pattern, Vec<Digest>> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let n = i + 1;
            let mut fields = line.split_whitespace();
            let (Some(fqdn), Some(token), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(format!(
                    "line {n}: expected two fields, FQDN and TOKEN, separated by white space"
                ));
            };
            let pattern = Pattern::parse(fqdn)
                .ok_or_else(|| format!("line {n}: \"{fqdn}\" is not an FQDN, *.domain or *"))?;
            rules
                .entry(pattern)
                .or_default()
                .push(digest(&[token.as_bytes()]));
        }
        if rules.is_empty() {
            return Err("no FQDN TOKEN line: every poll and push would be refused".into());
        }
        Ok(ClientTokens { rules })
    }

    /// Number of patterns, for the start-up log.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether `token` may poll or push for `fqdn`.
    pub fn check(&self, fqdn: &str, token: &str) -> Result<(), Refusal> {
        let fqdn = pushprox_protocol::fqdn_key(fqdn);
        let best = self
            .rules
            .iter()
            .filter_map(|(p, tokens)| p.specificity(&fqdn).map(|s| (s, tokens)))
            .max_by_key(|(s, _)| *s);
        let Some((_, tokens)) = best else {
            return Err(Refusal::Wrong(format!(
                "no token is configured for client {fqdn} in --auth.client-tokens"
            )));
        };
        let presented = digest(&[token.as_bytes()]);
        // Compare with every token of the pattern, so the time does not tell which matched.
        let matched = tokens
            .iter()
            .fold(false, |ok, t| bool::from(t.ct_eq(&presented)) | ok);
        if matched {
            Ok(())
        } else {
            Err(Refusal::Wrong(format!(
                "the bearer token is not valid for client {fqdn}"
            )))
        }
    }

    /// Whether `token` is valid for at least one pattern: lets a push be refused before its
    /// body is read.
    pub fn known(&self, token: &str) -> bool {
        let presented = digest(&[token.as_bytes()]);
        self.rules
            .values()
            .flatten()
            .fold(false, |ok, t| bool::from(t.ct_eq(&presented)) | ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# clients of the lab
host.example.com   tok-host
*.example.com      tok-domain   # any other host of example.com
*.db.example.com   tok-db
*.db.example.com   tok-db-next
*                  tok-any

";

    #[test]
    fn most_specific_pattern_wins() {
        let t = ClientTokens::parse(FILE).unwrap();
        assert_eq!(t.len(), 4);
        assert!(t.check("host.example.com", "tok-host").is_ok());
        assert!(t.check("HOST.example.com", "tok-host").is_ok());
        // The exact name shadows the wildcard.
        assert!(t.check("host.example.com", "tok-domain").is_err());
        assert!(t.check("web.example.com", "tok-domain").is_ok());
        assert!(t.check("a.b.example.com", "tok-domain").is_ok());
        assert!(t.check("pg1.db.example.com", "tok-db").is_ok());
        assert!(t.check("pg1.db.example.com", "tok-db-next").is_ok());
        assert!(t.check("pg1.db.example.com", "tok-domain").is_err());
        // `*.example.com` does not match example.com itself; `*` does.
        assert!(t.check("example.com", "tok-domain").is_err());
        assert!(t.check("example.com", "tok-any").is_ok());
        assert!(t.check("other.org", "tok-any").is_ok());
        assert!(t.check("other.org", "tok-host").is_err());
        assert!(t.known("tok-db-next"));
        assert!(!t.known("nope"));
    }

    #[test]
    fn no_catch_all_means_unknown_names_are_refused() {
        let t = ClientTokens::parse("a.example t1\n").unwrap();
        let Err(Refusal::Wrong(reason)) = t.check("b.example", "t1") else {
            panic!()
        };
        assert!(
            reason.contains("no token is configured for client b.example"),
            "{reason}"
        );
    }

    #[test]
    fn bad_lines_are_named_and_tokens_not_echoed() {
        for (text, want) in [
            (
                "host only-one-field-secret\nlonely\n",
                "line 2: expected two fields",
            ),
            ("a b c\n", "line 1: expected two fields"),
            ("bad/name secret\n", "line 1: \"bad/name\" is not an FQDN"),
            ("*.*.x secret\n", "is not an FQDN"),
            ("# nothing\n\n", "no FQDN TOKEN line"),
        ] {
            let err = ClientTokens::parse(text).unwrap_err();
            assert!(err.contains(want), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
        let t = ClientTokens::parse("h t\n").unwrap();
        let Err(Refusal::Wrong(reason)) = t.check("h", "guess-me") else {
            panic!()
        };
        assert!(!reason.contains("guess-me"));
    }
}
