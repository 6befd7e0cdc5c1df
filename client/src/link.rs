//! The connection to one proxy: its URL, the agent that reaches it, and what every `/poll`
//! and `/push` carries (our FQDN, the bearer token).

use std::path::PathBuf;

use pushprox_protocol::{json_labels, json_targets, FQDN_HEADER, LABELS_HEADER, TARGETS_HEADER};
use ureq::Agent;

use crate::config::{Label, SdTarget};
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
    /// What every `/poll` announces besides the FQDN ([`announcements`]).
    pub announce: Vec<(&'static str, String)>,
}

/// The headers that announce `labels` and `targets` on every poll: [`LABELS_HEADER`] and
/// [`TARGETS_HEADER`], each only when there is something to announce.
pub fn announcements(labels: &[Label], targets: &[SdTarget]) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    if !labels.is_empty() {
        headers.push((LABELS_HEADER, json_labels(labels)));
    }
    if !targets.is_empty() {
        let targets: Vec<(u16, Vec<Label>)> =
            targets.iter().map(|t| (t.port, t.labels.clone())).collect();
        headers.push((TARGETS_HEADER, json_targets(&targets)));
    }
    headers
}

impl ProxyLink {
    /// `POST {url}/poll` with what the client announces.
    pub fn poll(&self) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let mut request = self.post("/poll");
        for (name, value) in &self.announce {
            request = request.header(*name, value);
        }
        request
    }

    /// `POST {url}{path}` with our FQDN and our bearer token if we have one.
    pub fn post(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let request = self
            .agent
            .post(format!("{}{path}", self.url))
            .header(FQDN_HEADER, &self.fqdn);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_exact_printable_ascii() {
        let labels = vec![
            ("env".to_string(), "prod".to_string()),
            ("site".to_string(), "Zürich 🦀".to_string()),
        ];
        let targets = vec![
            SdTarget {
                port: 9100,
                labels: vec![("job".into(), "node".into())],
            },
            SdTarget {
                port: 9256,
                labels: Vec::new(),
            },
        ];
        assert_eq!(
            announcements(&labels, &targets),
            [
                (
                    "X-PushProx-Labels",
                    r#"{"env":"prod","site":"Z\u00fcrich \ud83e\udd80"}"#.to_string()
                ),
                (
                    "X-PushProx-Targets",
                    r#"[{"port":9100,"labels":{"job":"node"}},{"port":9256,"labels":{}}]"#
                        .to_string()
                ),
            ]
        );
        assert!(announcements(&[], &[]).is_empty());
        assert_eq!(announcements(&labels, &[]).len(), 1);
    }
}
