//! A poll waiting for a scrape: its connection, kept unanswered and without a thread.

use std::io;
use std::sync::Arc;

use pushprox_protocol::{fqdn_key, MAX_POLLS_HEADER, RETRY_HEADER, RETRY_NEXT};

use crate::http::{After, Connection, Held};
use crate::registry::Registry;
#[cfg(test)]
use crate::rendezvous::MAX_POLLS_PER_CLIENT;

/// [`crate::rendezvous::MAX_POLLS_PER_CLIENT`] as every poll's answer says it, written once rather than per answer.
const MAX_POLLS: &str = "8";

/// A poll held open until a scrape for its FQDN takes it.
pub struct ParkedPoll {
    conn: Connection,
    /// The FQDN as the client sent it.
    pub fqdn: String,
    /// Its place among the parked connections, given back with the poll.
    _share: Held,
    /// Told when the poll ends, and whether it carried a scrape.
    registry: Arc<Registry>,
}

impl ParkedPoll {
    pub fn new(conn: Connection, fqdn: String, share: Held, registry: Arc<Registry>) -> Self {
        ParkedPoll {
            conn,
            fqdn,
            _share: share,
            registry,
        }
    }

    /// Whether the client hung up while the poll waited.
    pub fn is_gone(&self) -> bool {
        self.conn.peer_gone()
    }

    /// Answers the poll with the scrape request in proxy form; an error when the client is
    /// gone or the write fails, so the scrape can go to the next poll. The caller goes on
    /// with the connection (the client's next poll comes on it).
    pub fn hand_over(self, scrape: &[u8]) -> io::Result<After> {
        if self.is_gone() {
            self.drop_gone();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the client closed the poll's connection",
            ));
        }
        let headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            (MAX_POLLS_HEADER, MAX_POLLS),
        ];
        let answered = self.conn.respond_checked(200, &headers, scrape);
        self.registry
            .poll_ended(&fqdn_key(&self.fqdn), answered.is_ok());
        answered
    }

    /// Answers the poll without a scrape (superseded, held too long, the proxy stopping),
    /// with `extra` headers after the one every poll's answer has.
    pub fn answer(self, status: u16, extra: &[(&str, &str)], reason: &str) {
        self.registry.poll_ended(&fqdn_key(&self.fqdn), false);
        let max_polls = [(MAX_POLLS_HEADER, MAX_POLLS)];
        let headers: Vec<(&str, &str)> = max_polls.iter().chain(extra).copied().collect();
        if let After::Next(conn) = self.conn.respond_text(status, &headers, reason) {
            conn.resume();
        }
    }

    /// Answers a poll of a proxy that is stopping: poll again at once, elsewhere. 404, which a
    /// balancer retries on its next server without counting this proxy as failed (its pushes
    /// still come here); our client polls again at once on the marker.
    pub fn come_back(self) {
        let headers = [(RETRY_HEADER, RETRY_NEXT), ("Retry-After", "0")];
        let reason =
            "the proxy is stopping: poll again at once (another proxy, or this one restarted)";
        self.answer(404, &headers, reason);
    }

    /// Answers a poll that a newer poll of the same client replaced.
    pub fn superseded(self) {
        log::debug!("poll superseded by a newer poll fqdn={}", self.fqdn);
        let reason = format!(
            "Error WaitForScrapeInstruction: request is expired: a newer poll of {} took over",
            self.fqdn
        );
        self.answer(408, &[], &reason);
    }

    /// Frees a poll whose client hung up.
    pub fn drop_gone(self) {
        self.registry.poll_ended(&fqdn_key(&self.fqdn), false);
        self.conn.abandon(499);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_polls_header_says_the_rendezvous_limit() {
        assert_eq!(MAX_POLLS, MAX_POLLS_PER_CLIENT.to_string());
    }
}
