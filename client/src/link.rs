//! The connection to one proxy: its URL, the agent that reaches it, and what every `/poll`
//! and `/push` carries (the bearer token, `Connection: close` while idle).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use ureq::Agent;

use crate::token::{BearerToken, TokenRefused};

/// One proxy: where to poll and push, as whom, and the agent that reaches it.
pub struct ProxyLink {
    /// Without a trailing `/`.
    pub url: String,
    pub agent: Agent,
    /// Our FQDN, for messages.
    pub fqdn: String,
    /// `--auth.token-file` and its token, shown on every /poll and /push.
    pub token: Option<(PathBuf, BearerToken)>,
    /// Whether this client is idle towards this proxy (the poller decides): then its polls and
    /// pushes ask for `Connection: close`, and the proxy keeps no thread for it.
    pub idle: AtomicBool,
}

impl ProxyLink {
    /// `POST {url}{path}`, with our bearer token if we have one, asking for the connection to
    /// close after it while the client is idle.
    pub fn post(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let mut request = self.agent.post(format!("{}{path}", self.url));
        if self.idle.load(Ordering::SeqCst) {
            request = request.header("Connection", "close");
        }
        match &self.token {
            Some((_, token)) => request.header("Authorization", token.header_value()),
            None => request,
        }
    }

    /// A 401 or 403 answer to /poll or /push, explained.
    pub fn token_refused(&self, status: u16, answer: String) -> TokenRefused {
        TokenRefused {
            status,
            answer,
            fqdn: self.fqdn.clone(),
            token_file: self.token.as_ref().map(|(path, _)| path.clone()),
        }
    }
}

/// Statuses with which a proxy refuses a client's credentials.
pub fn is_token_refusal(status: u16) -> bool {
    status == 401 || status == 403
}
