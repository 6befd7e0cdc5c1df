//! Everything the proxy reads from files besides its flags, loaded as one value: the web
//! config (TLS, users, headers), `--tls.cert`/`--tls.key`, `--auth.scrape-users` and
//! `--auth.client-tokens`. [`crate::reload::Reloader`] loads it again when any of those files
//! changes, and the front and the request checks read the parts they need from the result.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::{Access, ClientTokens, FileError, Users};
use crate::config::Config;
use crate::http::TlsSetup;
use crate::reload::Loaded;

use super::{TlsConfigError, WebConfig, WebConfigError};

/// A file the flags name cannot be used; at start the proxy stops, at a reload it keeps the
/// last good version.
#[derive(Debug)]
pub enum SettingsError {
    /// `--auth.client-tokens` or `--auth.scrape-users`.
    File(FileError),
    /// `--web.config.file`, or a file it names.
    WebConfig(WebConfigError),
    /// `--tls.cert` and `--tls.key`.
    Tls(TlsConfigError),
    /// A reload that would switch between HTTP and HTTPS.
    SchemeChanged,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::File(e) => e.fmt(f),
            SettingsError::WebConfig(e) => e.fmt(f),
            SettingsError::Tls(e) => e.fmt(f),
            SettingsError::SchemeChanged => f.write_str(
                "switching between HTTP and HTTPS needs a restart; the listener keeps its scheme",
            ),
        }
    }
}

impl std::error::Error for SettingsError {}

/// What the files say, as last loaded.
pub struct Settings {
    /// Who may poll, push, scrape and read the API.
    pub access: Arc<Access>,
    /// `None`: plain HTTP.
    pub tls: Option<Arc<TlsSetup>>,
    /// `http_server_config.headers`, added to every answer.
    pub headers: Arc<Vec<(String, String)>>,
    /// The web config, for the start-up log (its users are in `access`).
    pub web: Option<WebConfig>,
    /// Users of `basic_auth_users` and of `--auth.scrape-users`, for the start-up log.
    pub web_users: usize,
    pub file_users: usize,
}

impl Settings {
    /// Reads every file the flags name; also returns those files (and the ones the web
    /// config names), which are what a change is looked for in.
    pub fn load(config: &Config) -> Result<Loaded<Settings>, SettingsError> {
        // What a change is looked for in: the files the flags name, then those the web config
        // names, then --tls.cert and --tls.key.
        let named = [
            &config.client_tokens,
            &config.scrape_users,
            &config.web_config_file,
        ];
        let mut files: Vec<PathBuf> = named.into_iter().flatten().cloned().collect();
        let tokens = config.client_tokens.as_deref().map(ClientTokens::load);
        let tokens = tokens.transpose().map_err(SettingsError::File)?;
        let file_users = config.scrape_users.as_deref().map(Users::load);
        let file_users = file_users.transpose().map_err(SettingsError::File)?;
        let web = config.web_config_file.as_deref().map(WebConfig::load);
        let mut web = web.transpose().map_err(SettingsError::WebConfig)?;
        if let Some(web) = &web {
            files.extend(web.files().into_iter().skip(1));
        }
        let tls = match (&config.tls_cert, &config.tls_key, &web) {
            (Some(cert), Some(key), _) => {
                files.push(cert.clone());
                files.push(key.clone());
                Some(super::tls::from_files(cert, key).map_err(SettingsError::Tls)?)
            }
            (_, _, Some(web)) => web.server_config().map_err(SettingsError::WebConfig)?,
            _ => None,
        };
        let web_users = web.as_mut().and_then(|w| w.users.take());
        let counts = (
            web_users.as_ref().map_or(0, Users::len),
            file_users.as_ref().map_or(0, Users::len),
        );
        let protect_api = web_users.is_some() || config.protect_api;
        let users = match (web_users, file_users) {
            (Some(a), Some(b)) => Some(a.merge(b)),
            (a, b) => a.or(b),
        };
        let client_certs = web
            .as_ref()
            .filter(|w| w.tls.as_ref().is_some_and(|t| t.client_auth.verifies()))
            .map(|w| w.path.clone());
        let headers = web.as_ref().map(|w| w.headers.clone()).unwrap_or_default();
        let settings = Settings {
            access: Arc::new(Access {
                tokens,
                users,
                protect_api,
                client_certs,
            }),
            tls,
            headers: Arc::new(headers),
            web,
            web_users: counts.0,
            file_users: counts.1,
        };
        Ok((settings, files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reload::Reloader;
    use crate::web_config::tls::tests::{client_trusting, handshake};
    use clap::Parser;
    use pushprox_test_support::{KeyKind, TempDir};
    use std::time::{Duration, Instant};

    #[test]
    fn a_rotated_certificate_is_served_to_new_handshakes() {
        let dir = TempDir::new("rotate");
        let ca = dir.ca("ca");
        let key = dir.key("server.key", KeyKind::P256Pkcs8);
        dir.leaf("server.crt", &key, &ca, "proxy", &["DNS:localhost"]);
        let path = dir.write(
            "web.yml",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
        );
        let config = Config::try_parse_from([
            "pushprox-proxy",
            "--web.config.file",
            path.to_str().unwrap(),
        ])
        .unwrap();
        let reloader = Reloader::start("settings", Duration::from_millis(20), move || {
            Settings::load(&config)
        })
        .unwrap();
        let tls = reloader
            .current()
            .view(|s: &Settings| s.tls.clone().unwrap());
        let served = || {
            let (client, _) = handshake(tls.get(), client_trusting(&ca.0), "localhost").unwrap();
            client.peer_certificates().unwrap()[0].to_vec()
        };
        let first = dir.der(&dir.path("server.crt"));
        assert_eq!(served(), first);

        // certbot-style: a new key and certificate written over the old files. The key
        // first: in between, the pair does not match, and the last good config stays.
        let key = dir.key("server.key", KeyKind::Ed25519);
        let deadline = Instant::now() + Duration::from_secs(5);
        while reloader.current().last_error().is_none() {
            assert!(Instant::now() < deadline, "no failed reload seen");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(served(), first);
        dir.leaf("server.crt", &key, &ca, "proxy", &["DNS:localhost"]);
        let second = dir.der(&dir.path("server.crt"));
        assert_ne!(first, second);
        while served() != second {
            assert!(
                Instant::now() < deadline,
                "the new certificate is not served"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(reloader.current().last_error(), None);
    }

    #[test]
    fn the_flags_files_are_watched_and_users_merged() {
        let dir = TempDir::new("settings-files");
        let ca = dir.ca("ca");
        let key = dir.key("k.key", KeyKind::P256Sec1);
        let cert = dir.leaf("c.pem", &key, &ca, "proxy", &["DNS:localhost"]);
        let users = dir.write(
            "users",
            &crate::auth::users::tests::sha256_line("file-user", "pw", b"\x01"),
        );
        let tokens = dir.write("tokens", "a.example tok\n");
        let config = Config::try_parse_from([
            "pushprox-proxy",
            "--tls.cert",
            cert.to_str().unwrap(),
            "--tls.key",
            key.to_str().unwrap(),
            "--auth.scrape-users",
            users.to_str().unwrap(),
            "--auth.client-tokens",
            tokens.to_str().unwrap(),
        ])
        .unwrap();
        let (settings, files) = Settings::load(&config).unwrap();
        assert_eq!(files, [tokens, users, cert, key]);
        assert!(settings.tls.is_some());
        assert!(!settings.access.protect_api);
        assert_eq!(settings.file_users, 1);
        let all = settings.access.users.as_ref().unwrap();
        assert!(all.verify("file-user", "pw"));
    }
}
