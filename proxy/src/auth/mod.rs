//! Who may talk to the proxy: clients by bearer token per FQDN (`--auth.client-tokens`) and
//! by the names of their verified TLS certificate (`--web.config.file` with a verifying
//! `client_auth_type`), scrapers and API readers by user and password (`--auth.scrape-users`,
//! the web config's `basic_auth_users`). Nothing here knows HTTP beyond the header values and
//! certificates it is given; the handlers turn a [`Refusal`] into a status.
//!
//! The two sources of users make one table ([`users::Users`]): a user of either may scrape.
//! As soon as the web config has `basic_auth_users`, scrapes and the API (`/clients`,
//! `/metrics`, `/`) both require a user, as exporter-toolkit guards every endpoint of an
//! exporter with them; `/-/healthy` stays open. `--auth.protect-api` does the same for
//! `--auth.scrape-users` alone. What the files say is an [`Access`], reloaded as a whole
//! with the rest of the files (see `crate::reload`); passwords are checked by
//! [`passwords::Passwords`], which outlives reloads.

pub mod cert_names;
pub mod identity;
pub mod passwords;
pub mod tokens;
pub mod users;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::CertificateDer;

use crate::digest::{digest, Digest};
use crate::reload::View;

pub use passwords::{Passwords, Verdict};
pub use tokens::ClientTokens;
pub use users::Users;

/// An `--auth.client-tokens` or `--auth.scrape-users` file that cannot be used.
#[derive(Debug)]
pub enum FileError {
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// `reason` names the line.
    Parse {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
}

impl FileError {
    /// Reads `path`, the file of `flag`, and parses it with `parse`.
    pub fn load<T>(
        flag: &'static str,
        path: &std::path::Path,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            flag,
            path: path.to_path_buf(),
            source,
        })?;
        parse(&text).map_err(|reason| FileError::Parse {
            flag,
            path: path.to_path_buf(),
            reason,
        })
    }
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Read { flag, path, source } => {
                write!(f, "cannot read {flag} file {}: {source}", path.display())
            }
            FileError::Parse { flag, path, reason } => {
                write!(f, "{flag} file {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for FileError {}

/// Why a request was refused, with a one-line reason for the requester (never echoing what
/// it sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials at all: the answer carries a challenge.
    Missing(String),
    /// Credentials that are malformed or not valid here.
    Wrong(String),
    /// Too many failed password checks from this address: not checked, retry later.
    TooMany {
        reason: String,
        retry_after: Duration,
    },
    /// Every password-checking thread is busy: retry shortly.
    Busy(String),
}

impl Refusal {
    /// The reason text.
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Missing(r) | Refusal::Wrong(r) | Refusal::Busy(r) => r,
            Refusal::TooMany { reason, .. } => reason,
        }
    }
}

/// The realm of the challenges (`WWW-Authenticate`, `Proxy-Authenticate`).
pub const REALM: &str = "pushprox";

/// What the credential files say, as last loaded.
#[derive(Debug, Default)]
pub struct Access {
    /// Tokens of clients; `None`: polls and pushes are not authenticated by token (as in Go).
    pub tokens: Option<ClientTokens>,
    /// Users of `--auth.scrape-users` and `basic_auth_users`; `None`: scrapes are not
    /// authenticated (as in Go).
    pub users: Option<Users>,
    /// Whether /clients, /metrics and / need a user too (`basic_auth_users`, or
    /// `--auth.protect-api`).
    pub protect_api: bool,
    /// The web config whose `client_auth_type` verifies client certificates, when one does:
    /// then a certificate names the FQDNs its client may poll for.
    pub client_certs: Option<PathBuf>,
}

/// The checks of each request: the current [`Access`], and the password checker.
pub struct Auth {
    access: View<Access>,
    passwords: Passwords,
}

impl Auth {
    pub fn new(access: View<Access>, passwords: Passwords) -> Auth {
        Auth { access, passwords }
    }

    /// What the files say now.
    pub fn access(&self) -> Arc<Access> {
        self.access.get()
    }

    /// The password checker, for its counts.
    pub fn passwords(&self) -> &Passwords {
        &self.passwords
    }

    /// Whether a peer with `certs` (its TLS chain, end entity first) may poll for, or
    /// answer scrapes sent to, `fqdn`. Only a certificate verified against the web config's
    /// client CA names an identity (`RequireAndVerifyClientCert`, or
    /// `VerifyClientCertIfGiven` when one was given); then the FQDN must be one it names.
    /// In those modes a poll or push without a certificate is refused too, unless bearer
    /// tokens (`--auth.client-tokens`) authenticate clients: with `VerifyClientCertIfGiven`
    /// the connections without one are Prometheus' and the API readers' (basic auth).
    pub fn certificate_may(
        &self,
        certs: Option<&[CertificateDer<'static>]>,
        fqdn: &str,
    ) -> Result<(), Refusal> {
        let access = self.access();
        let Some(web_config) = &access.client_certs else {
            return Ok(());
        };
        let Some(cert) = certs.and_then(<[_]>::first) else {
            if access.tokens.is_none() {
                return Err(Refusal::Wrong(format!(
                    "this proxy identifies clients by TLS certificate (client_auth_type in {}): poll and push with a certificate naming {fqdn} (pushprox-client --tls.cert, --tls.key)",
                    web_config.display()
                )));
            }
            return Ok(());
        };
        if identity::may_poll_for(cert, fqdn) {
            return Ok(());
        }
        let names = identity::names(cert);
        let named = if names.is_empty() {
            "no DNS name (and a common name counts only without any SAN)".to_string()
        } else {
            names.join(", ")
        };
        Err(Refusal::Wrong(format!(
            "the client certificate is not valid for {fqdn}: it names {named}"
        )))
    }

    /// The bearer token of a poll or push, from its `Authorization` header value; `Ok(None)`
    /// when clients are not authenticated.
    pub fn client_token<'a>(
        &self,
        authorization: Option<&'a str>,
    ) -> Result<Option<&'a str>, Refusal> {
        let access = self.access();
        let Some(tokens) = &access.tokens else {
            return Ok(None);
        };
        let Some(value) = authorization else {
            return Err(Refusal::Missing(
                "this proxy requires Authorization: Bearer <token> on /poll and /push (--auth.client-tokens); give the client its token with --auth.token-file".into(),
            ));
        };
        let token = scheme(value, "Bearer")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Refusal::Wrong("the Authorization header is not \"Bearer <token>\"".into())
            })?;
        if tokens.known(token) {
            Ok(Some(token))
        } else {
            Err(Refusal::Wrong(
                "the bearer token is not valid for any client FQDN".into(),
            ))
        }
    }

    /// Whether `token` (from [`Auth::client_token`]) may poll or push for `fqdn`.
    pub fn client_may(&self, token: Option<&str>, fqdn: &str) -> Result<(), Refusal> {
        match (&self.access().tokens, token) {
            (Some(tokens), Some(token)) => tokens.check(fqdn, token),
            (Some(_), None) => Err(Refusal::Missing("no bearer token".into())),
            (None, _) => Ok(()),
        }
    }

    /// Checks a scrape's `Proxy-Authorization` header value, sent from `source`.
    pub fn scraper(
        &self,
        proxy_authorization: Option<&str>,
        source: IpAddr,
    ) -> Result<(), Refusal> {
        let access = self.access();
        let Some(users) = &access.users else {
            return Ok(());
        };
        self.check_basic(
            users,
            proxy_authorization,
            source,
            "this proxy requires Proxy-Authorization: Basic for scrapes (basic_auth_users of --web.config.file, or --auth.scrape-users); put user:password@ in Prometheus' proxy_url",
        )
    }

    /// Checks the `Authorization` header value of a request to /clients, /metrics or /,
    /// sent from `source`.
    pub fn api(&self, authorization: Option<&str>, source: IpAddr) -> Result<(), Refusal> {
        let access = self.access();
        let Some(users) = access.users.as_ref().filter(|_| access.protect_api) else {
            return Ok(());
        };
        self.check_basic(
            users,
            authorization,
            source,
            "this proxy requires Authorization: Basic for its API (basic_auth_users of --web.config.file, or --auth.scrape-users with --auth.protect-api)",
        )
    }

    /// Checks basic credentials against the users.
    fn check_basic(
        &self,
        users: &Users,
        value: Option<&str>,
        source: IpAddr,
        missing: &str,
    ) -> Result<(), Refusal> {
        let Some(value) = value else {
            return Err(Refusal::Missing(missing.into()));
        };
        let Some((user, password)) = basic(value) else {
            return Err(Refusal::Wrong(
                "the credentials are not \"Basic base64(user:password)\"".into(),
            ));
        };
        match self.passwords.check(users, &user, &password, source) {
            Verdict::Valid => Ok(()),
            Verdict::Invalid => Err(Refusal::Wrong("wrong user name or password".into())),
            Verdict::TooMany { retry_after } => Err(Refusal::TooMany {
                reason: format!(
                    "too many wrong passwords from this address: retry in {}s",
                    retry_after.as_secs().max(1)
                ),
                retry_after,
            }),
            Verdict::Busy => Err(Refusal::Busy(
                "the proxy is busy checking passwords; retry shortly".into(),
            )),
        }
    }
}

/// The credentials after `name ` in a header value (scheme case-insensitive).
fn scheme<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let value = value.trim();
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(name).then(|| rest.trim())
}

/// User and password of a `Basic` header value.
pub fn basic(value: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(scheme(value, "Basic")?)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn auth(access: Access) -> Auth {
        use clap::Parser;
        // The limits of the flags' defaults.
        let config = crate::config::Config::parse_from(["pushprox-proxy"]);
        Auth::new(
            View::fixed(Arc::new(access)),
            Passwords::start(config.password_limits()).unwrap(),
        )
    }

    #[test]
    fn digests_are_sha256() {
        // printf abc | sha256sum
        let hex: String = digest(&[b"a", b"bc"])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn header_values() {
        assert_eq!(
            basic("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap(),
            ("Aladdin".to_string(), "open sesame".to_string())
        );
        assert_eq!(
            basic("basic dTpwOnE=").unwrap(),
            ("u".to_string(), "p:q".to_string())
        );
        assert!(basic("Bearer QWxh").is_none());
        assert!(basic("Basic !!!").is_none());
        assert!(basic("Basic dXNlcg==").is_none(), "no colon");
        assert_eq!(scheme("Bearer  tok ", "bearer"), Some("tok"));
        assert_eq!(scheme("Bearertok", "bearer"), None);
    }

    #[test]
    fn refusals() {
        let auth = auth(Access {
            tokens: Some(ClientTokens::parse("a.example ta\nb.example tb\n").unwrap()),
            users: Some(Users::parse(&users::tests::sha256_line("prom", "pw", b"salt")).unwrap()),
            protect_api: false,
            client_certs: None,
        });
        assert!(matches!(auth.client_token(None), Err(Refusal::Missing(_))));
        assert!(matches!(
            auth.client_token(Some("Basic x")),
            Err(Refusal::Wrong(_))
        ));
        assert!(matches!(
            auth.client_token(Some("Bearer nope")),
            Err(Refusal::Wrong(_))
        ));
        let token = auth.client_token(Some("Bearer tb")).unwrap();
        assert!(auth.client_may(token, "b.example").is_ok());
        assert!(matches!(
            auth.client_may(token, "a.example"),
            Err(Refusal::Wrong(_))
        ));
        assert!(matches!(auth.scraper(None, HERE), Err(Refusal::Missing(_))));
        assert!(matches!(
            auth.scraper(Some("Basic cHJvbTpubw=="), HERE),
            Err(Refusal::Wrong(_))
        ));
        assert!(auth.scraper(Some("Basic cHJvbTpwdw=="), HERE).is_ok());
        assert!(
            auth.api(None, HERE).is_ok(),
            "API open without --auth.protect-api"
        );
        let open = super::tests::auth(Access::default());
        assert_eq!(open.client_token(None), Ok(None));
        assert!(open.scraper(None, HERE).is_ok());
    }
}
