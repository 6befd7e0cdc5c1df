//! Scrapes a shard passes on to the balancer's next server: those for an FQDN that does not
//! poll this proxy (`--scrape.unknown-fqdn-wait`). When one is passed on, the shard that
//! holds the client takes it, and the client, its poll answered, polls again through the
//! balancer, which now sends it here: another scrape for that FQDN already waiting here
//! should wait for it rather than be passed on a moment before it comes.

use pushprox_daemon::sync::lock;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries older than this are dropped once the map holds [`PRUNE_ABOVE`] of them, at most
/// once per [`PRUNE_EVERY`], so a flood of scrapes for made-up FQDNs costs no scan per scrape.
const REMEMBER: Duration = Duration::from_secs(10);
const PRUNE_ABOVE: usize = 1024;
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// Most FQDNs remembered: beyond, a new one is not recorded (a scrape waiting for it is then
/// passed on rather than waiting once more: what happens without this map).
const MAX_REMEMBERED: usize = 16 * 1024;

/// How many scrapes of each FQDN were passed on.
#[derive(Default)]
pub struct Passing {
    passed: Mutex<Passed>,
}

#[derive(Default)]
struct Passed {
    counts: HashMap<String, (u64, Instant)>,
    /// The last pruning; `None`: none yet.
    pruned: Option<Instant>,
}

impl Passing {
    /// Scrapes of `key` passed on so far (compare two readings).
    pub fn count(&self, key: &str) -> u64 {
        let passed = lock(&self.passed);
        passed.counts.get(key).map_or(0, |(n, _)| *n)
    }

    /// One more scrape of `key` passed on.
    pub fn passed(&self, key: &str) {
        let now = Instant::now();
        let mut passed = lock(&self.passed);
        let due = passed
            .pruned
            .is_none_or(|t| now.duration_since(t) >= PRUNE_EVERY);
        if passed.counts.len() >= PRUNE_ABOVE && due {
            passed.pruned = Some(now);
            passed
                .counts
                .retain(|_, (_, at)| now.duration_since(*at) < REMEMBER);
        }
        if passed.counts.len() >= MAX_REMEMBERED && !passed.counts.contains_key(key) {
            return;
        }
        let entry = passed.counts.entry(key.to_string()).or_insert((0, now));
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
        assert_eq!(p.passed.lock().unwrap().counts.len(), PRUNE_ABOVE + 1);
    }

    #[test]
    fn a_flood_of_made_up_fqdns_stays_bounded() {
        let p = Passing::default();
        for i in 0..MAX_REMEMBERED + 500 {
            p.passed(&format!("made-up-{i}"));
        }
        assert_eq!(p.passed.lock().unwrap().counts.len(), MAX_REMEMBERED);
        // One already remembered still counts.
        p.passed("made-up-7");
        assert_eq!(p.count("made-up-7"), 2);
        assert_eq!(p.count(&format!("made-up-{}", MAX_REMEMBERED + 1)), 0);
    }
}
