//! The clients the proxy knows: who polled, when, and how many scrapes went to each; at most
//! `--registration.max-clients` of them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::discovery::Announcement;

/// What is known of one client.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The FQDN as the client sent it.
    pub fqdn: String,
    /// When it last polled (or a poll of it ended).
    pub last_seen: Instant,
    /// Whether a poll of it is held open right now (filled in by [`Registry::live`]).
    pub polling: bool,
    /// Scrapes handed to it.
    pub scrapes: u64,
    /// Its labels and exporters, as its newest poll announced them: shared, never copied.
    pub announced: Arc<Announcement>,
}

/// Known clients by lower-case FQDN.
pub struct Registry {
    timeout: Duration,
    max_clients: usize,
    clients: Mutex<HashMap<String, ClientInfo>>,
}

/// A poll for a new FQDN when `--registration.max-clients` are registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryFull {
    pub max_clients: usize,
}

impl fmt::Display for RegistryFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the proxy already knows --registration.max-clients={} clients; a new client is registered once one of them is forgotten (--registration.timeout after its last poll), or raise the flag",
            self.max_clients
        )
    }
}

impl std::error::Error for RegistryFull {}

/// What [`Registry::poll_started`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// First poll of this FQDN (or first since it was forgotten).
    New,
    /// A client we knew.
    Known,
}

impl Registry {
    /// An empty registry of at most `max_clients`, forgetting clients `timeout` after they
    /// were last seen.
    pub fn new(timeout: Duration, max_clients: usize) -> Self {
        Registry {
            timeout,
            max_clients,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, ClientInfo>) -> R) -> R {
        f(&mut pushprox_daemon::sync::lock(&self.clients))
    }

    /// A poll of `fqdn` arrived and is now held; what it announced replaces what older polls
    /// did. A new client beyond `max_clients` is refused (clients past the registration
    /// timeout still count until the janitor forgets them, within seconds).
    pub fn poll_started(
        &self,
        key: &str,
        fqdn: &str,
        announced: Announcement,
    ) -> Result<Seen, RegistryFull> {
        self.with(|clients| {
            let (now, announced) = (Instant::now(), Arc::new(announced));
            if let Some(info) = clients.get_mut(key) {
                info.announced = announced;
                info.last_seen = now;
                return Ok(Seen::Known);
            }
            if clients.len() >= self.max_clients {
                return Err(RegistryFull {
                    max_clients: self.max_clients,
                });
            }
            let info = ClientInfo {
                fqdn: fqdn.to_string(),
                last_seen: now,
                polling: false,
                scrapes: 0,
                announced,
            };
            clients.insert(key.to_string(), info);
            Ok(Seen::New)
        })
    }

    /// A poll of `key` ended; `scraped` if it carried a scrape.
    pub fn poll_ended(&self, key: &str, scraped: bool) {
        self.with(|clients| {
            if let Some(info) = clients.get_mut(key) {
                info.last_seen = Instant::now();
                if scraped {
                    info.scrapes += 1;
                }
            }
        })
    }

    fn is_live(&self, info: &ClientInfo, polling: bool, now: Instant) -> bool {
        polling || now.duration_since(info.last_seen) <= self.timeout
    }

    /// Clients that have a poll open (`polling` says which) or were seen within the
    /// registration timeout, sorted by FQDN. Their announcements are shared, not copied.
    pub fn live(&self, polling: impl Fn(&str) -> bool) -> Vec<ClientInfo> {
        let now = Instant::now();
        let mut live: Vec<ClientInfo> = self.with(|clients| {
            clients
                .iter()
                .filter_map(|(key, c)| {
                    let p = polling(key);
                    self.is_live(c, p, now).then(|| ClientInfo {
                        polling: p,
                        ..c.clone()
                    })
                })
                .collect()
        });
        live.sort_by(|a, b| a.fqdn.cmp(&b.fqdn));
        live
    }

    /// Whether `key` is a live client.
    pub fn is_known(&self, key: &str, polling: bool) -> bool {
        let now = Instant::now();
        self.with(|clients| {
            clients
                .get(key)
                .is_some_and(|c| self.is_live(c, polling, now))
        })
    }

    /// Removes clients not seen within the registration timeout that have no poll open;
    /// returns their FQDNs.
    pub fn forget_expired(&self, polling: impl Fn(&str) -> bool) -> Vec<String> {
        let now = Instant::now();
        let mut gone = Vec::new();
        self.with(|clients| {
            clients.retain(|key, c| {
                let keep = self.is_live(c, polling(key), now);
                if !keep {
                    gone.push(c.fqdn.clone());
                }
                keep
            })
        });
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_live_while_polling_or_recently_seen() {
        let r = Registry::new(Duration::from_millis(50), 10);
        let none = Announcement::default;
        assert_eq!(r.poll_started("a", "A", none()), Ok(Seen::New));
        assert_eq!(r.poll_started("a", "A", none()), Ok(Seen::Known));
        r.poll_started("b", "b", none()).unwrap();
        r.poll_ended("b", true);
        std::thread::sleep(Duration::from_millis(80));
        // "a" still has a poll open; "b" timed out.
        let polling = |key: &str| key == "a";
        let live: Vec<_> = r
            .live(polling)
            .into_iter()
            .map(|c| (c.fqdn, c.polling))
            .collect();
        assert_eq!(live, [("A".to_string(), true)]);
        assert_eq!(r.forget_expired(polling), ["b"]);
        assert!(r.is_known("a", true) && !r.is_known("b", false));
    }

    #[test]
    fn new_clients_beyond_the_cap_are_refused_until_one_is_forgotten() {
        let r = Registry::new(Duration::from_millis(50), 2);
        let none = Announcement::default;
        r.poll_started("a", "a", none()).unwrap();
        r.poll_started("b", "b", none()).unwrap();
        let full = r.poll_started("c", "c", none()).unwrap_err();
        assert!(
            full.to_string().contains("--registration.max-clients=2"),
            "{full}"
        );
        // Known clients go on polling.
        assert_eq!(r.poll_started("a", "a", none()), Ok(Seen::Known));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(r.forget_expired(|k| k == "a").len(), 1);
        assert_eq!(r.poll_started("c", "c", none()), Ok(Seen::New));
    }
}
