//! Who may talk to the proxy: clients by bearer token per FQDN (`--auth.client-tokens`) and
//! by the names of their verified TLS certificate (`--web.config.file` with a verifying
//! `client_auth_type`), scrapers and API readers by user and password (`--auth.scrape-users`,
//! the web config's `basic_auth_users`). Nothing here knows HTTP beyond the header values and
//! certificates it is given; the handlers turn a [`Refusal`] into a status.
//!
//! The two sources of users add up: a user of either may scrape. As soon as the web config
//! has `basic_auth_users`, scrapes and the API (`/clients`, `/metrics`, `/`) both require a
//! user, as exporter-toolkit guards every endpoint of an exporter with them; `/-/healthy`
//! stays open. `--auth.protect-api` does the same for `--auth.scrape-users` alone.

pub mod base64;
pub mod tokens;
pub mod users;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::config::Config;
use crate::web_config::identity;
use crate::web_config::reload::Reloader;
use crate::web_config::LoadedWebConfig;

pub use tokens::ClientTokens;
pub use users::Users;

use crate::web_config::BasicAuthUsers;

/// Why a request was refused, with a one-line reason for the requester (never echoing what
/// it sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials at all: the answer carries a challenge.
    Missing(String),
    /// Credentials that are malformed or not valid here.
    Wrong(String),
}

impl Refusal {
    /// The reason text.
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Missing(r) | Refusal::Wrong(r) => r,
        }
    }
}

/// The realm of the challenges (`WWW-Authenticate`, `Proxy-Authenticate`).
pub const REALM: &str = "pushprox";

/// How often the token file and the web config (and the files it names) are checked for
/// changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// The loaded credential files.
#[derive(Default)]
pub struct Auth {
    /// Tokens of clients, re-read when the file changes; `None`: polls and pushes are not
    /// authenticated by token (as in Go).
    pub clients: Option<Reloader<ClientTokens>>,
    /// Users that may scrape; `None`: scrapes are not authenticated (as in Go).
    pub scrapers: Option<Users>,
    /// Whether /clients, /metrics and / need a scrape user too.
    pub protect_api: bool,
    /// `--web.config.file`, re-read when it or a file it names changes.
    pub web: Option<Reloader<LoadedWebConfig>>,
}

impl Auth {
    /// Reads the files the flags name, and starts the threads that re-read the token file
    /// and the web config when they change.
    pub fn load(config: &Config) -> Result<Self, String> {
        let clients = match config.client_tokens.as_deref() {
            None => None,
            Some(path) => Some(Reloader::start(
                "client-tokens",
                path,
                RELOAD_EVERY,
                |p: &Path| ClientTokens::load(p).map(|t| (t, Vec::new())),
            )?),
        };
        let scrapers = config
            .scrape_users
            .as_deref()
            .map(Users::load)
            .transpose()?;
        let web = match config.web_config_file.as_deref() {
            None => None,
            Some(path) => Some(
                // The loader's message names the file and the key.
                Reloader::start("web-config", path, RELOAD_EVERY, LoadedWebConfig::load)
                    .map_err(|e| e.to_string())?,
            ),
        };
        Ok(Auth {
            clients,
            scrapers,
            protect_api: config.protect_api,
            web,
        })
    }

    /// The web config as last loaded.
    pub fn web_config(&self) -> Option<Arc<LoadedWebConfig>> {
        self.web.as_ref().map(Reloader::get)
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
        let Some(web) = self.web_config() else {
            return Ok(());
        };
        let verifies = web
            .config
            .tls
            .as_ref()
            .is_some_and(|t| t.client_auth.verifies());
        let Some(cert) = certs.and_then(<[_]>::first) else {
            if verifies && self.clients.is_none() {
                return Err(Refusal::Wrong(format!(
                    "this proxy identifies clients by TLS certificate (client_auth_type in {}): poll and push with a certificate naming {fqdn} (pushprox-client --tls.cert, --tls.key)",
                    web.config.path.display()
                )));
            }
            return Ok(());
        };
        if !verifies || identity::may_poll_for(cert, fqdn) {
            return Ok(());
        }
        let names = identity::names(cert);
        let named = if names.is_empty() {
            "no DNS name or common name".to_string()
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
        let Some(tokens) = &self.clients else {
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
        if tokens.get().known(token) {
            Ok(Some(token))
        } else {
            Err(Refusal::Wrong(
                "the bearer token is not valid for any client FQDN".into(),
            ))
        }
    }

    /// Whether `token` (from [`Auth::client_token`]) may poll or push for `fqdn`.
    pub fn client_may(&self, token: Option<&str>, fqdn: &str) -> Result<(), Refusal> {
        match (&self.clients, token) {
            (Some(tokens), Some(token)) => tokens.get().check(fqdn, token),
            (Some(_), None) => Err(Refusal::Missing("no bearer token".into())),
            (None, _) => Ok(()),
        }
    }

    /// Checks a scrape's `Proxy-Authorization` header value.
    pub fn scraper(&self, proxy_authorization: Option<&str>) -> Result<(), Refusal> {
        let web = self.web_config();
        let web_users = web.as_ref().and_then(|w| w.config.users.as_ref());
        if self.scrapers.is_none() && web_users.is_none() {
            return Ok(());
        }
        check_basic(
            self.scrapers.as_ref(),
            web_users,
            proxy_authorization,
            "this proxy requires Proxy-Authorization: Basic for scrapes (basic_auth_users of --web.config.file, or --auth.scrape-users); put user:password@ in Prometheus' proxy_url",
        )
    }

    /// Checks the `Authorization` header value of a request to /clients, /metrics or /.
    pub fn api(&self, authorization: Option<&str>) -> Result<(), Refusal> {
        let web = self.web_config();
        let web_users = web.as_ref().and_then(|w| w.config.users.as_ref());
        let scrapers = self.scrapers.as_ref().filter(|_| self.protect_api);
        if scrapers.is_none() && web_users.is_none() {
            return Ok(());
        }
        check_basic(
            self.scrapers.as_ref(),
            web_users,
            authorization,
            "this proxy requires Authorization: Basic for its API (basic_auth_users of --web.config.file, or --auth.scrape-users with --auth.protect-api)",
        )
    }
}

/// Checks basic credentials against the users of either source.
fn check_basic(
    users: Option<&Users>,
    web_users: Option<&BasicAuthUsers>,
    value: Option<&str>,
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
    let known = web_users.is_some_and(|u| u.verify(&user, &password))
        || users.is_some_and(|u| u.verify(&user, &password));
    if known {
        Ok(())
    } else {
        Err(Refusal::Wrong("wrong user name or password".into()))
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
    let decoded = base64::decode(scheme(value, "Basic")?)?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Equality whose time depends only on the lengths, not on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold back into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
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
        let auth = Auth {
            clients: Some(Reloader::fixed(
                ClientTokens::parse("a.example ta\nb.example tb\n").unwrap(),
            )),
            scrapers: Some(Users::parse(&users::line("prom", "pw", b"salt")).unwrap()),
            protect_api: false,
            web: None,
        };
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
        assert!(matches!(auth.scraper(None), Err(Refusal::Missing(_))));
        assert!(matches!(
            auth.scraper(Some("Basic cHJvbTpubw==")),
            Err(Refusal::Wrong(_))
        ));
        assert!(auth.scraper(Some("Basic cHJvbTpwdw==")).is_ok());
        assert!(
            auth.api(None).is_ok(),
            "API open without --auth.protect-api"
        );
        let open = Auth::default();
        assert_eq!(open.client_token(None), Ok(None));
        assert!(open.scraper(None).is_ok());
    }
}
