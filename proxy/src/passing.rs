//! Scrapes a shard passes on to the balancer's next server: those for an FQDN that does not
//! poll this proxy (`--scrape.unknown-fqdn-wait`). When one is passed on, the shard that
//! holds the client takes it, and the client, its poll answered, polls again through the
//! balancer, which now sends it here: another scrape for that FQDN already waiting here
//! should wait for it rather than be passed on a moment before it comes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries older than this are dropped once the map holds [`PRUNE_ABOVE`] of them.
const REMEMBER: Duration = Duration::from_secs(10);
const PRUNE_ABOVE: usize = 1024;

/// How many scrapes of each FQDN were passed on.
#[derive(Default)]
pub struct Passing {
    passed: Mutex<HashMap<String, (u64, Instant)>>,
}

impl Passing {
    /// Scrapes of `key` passed on so far (compare two readings).
    pub fn count(&self, key: &str) -> u64 {
        let passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        passed.get(key).map_or(0, |(n, _)| *n)
    }

    /// One more scrape of `key` passed on.
    pub fn passed(&self, key: &str) {
        let now = Instant::now();
        let mut passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        if passed.len() >= PRUNE_ABOVE {
            passed.retain(|_, (_, at)| now.duration_since(*at) < REMEMBER);
        }
        let entry = passed.entry(key.to_string()).or_insert((0, now));
        *entry = (entry.0 + 1, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_passes_per_fqdn() {
        let p = Passing::default();
        assert_eq!(p.count("a"), 0);
        p.passed("a");
        p.passed("a");
        p.passed("b");
        assert_eq!((p.count("a"), p.count("b"), p.count("c")), (2, 1, 0));
    }

    #[test]
    fn a_full_map_keeps_its_recent_entries() {
        let p = Passing::default();
        for i in 0..PRUNE_ABOVE {
            p.passed(&i.to_string());
        }
        // All recent: none dropped.
        p.passed("new");
        assert_eq!(p.count("0"), 1);
        assert_eq!(p.passed.lock().unwrap().len(), PRUNE_ABOVE + 1);
    }
}
