//! `basic_auth_users`: user names and bcrypt hashes as `htpasswd -nBC 10 ""` makes them
//! (`$2y$`, `$2b$`, `$2a$`).
//!
//! bcrypt is slow on purpose (about 50-100 ms at cost 10), and Prometheus sends the same
//! credentials with every scrape, so successful checks are remembered for [`CACHE_TTL`] under
//! a SHA-256 of user, password and hash: a changed password or hash never matches an old
//! entry, and the cache holds no password. Failed checks are not remembered. As in
//! exporter-toolkit, one bcrypt runs at a time, so a flood of wrong passwords costs the proxy
//! one core at most; and an unknown user is checked against a decoy hash, so it costs what a
//! wrong password costs and user names cannot be probed by timing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sha256::{digest, Digest};

/// How long a successful check is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// At most this many remembered checks (a few per scraper is the need).
pub const CACHE_ENTRIES: usize = 256;
/// The cost of the decoy hash is the highest of the users' costs, up to this (a cost-18 hash
/// would make loading the file take seconds).
const DECOY_MAX_COST: u32 = 12;

/// A bcrypt hash that parsed: 60 ASCII characters, a `$2y$`/`$2b$`/`$2a$` prefix, a cost
/// bcrypt allows, and base64 salt and digest.
#[derive(Clone, PartialEq, Eq)]
pub struct BcryptHash {
    text: String,
    cost: u32,
}

// `{:?}` shows the cost, never the hash (which a GPU could attack).
impl std::fmt::Debug for BcryptHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BcryptHash(cost {})", self.cost)
    }
}

impl BcryptHash {
    /// Checks `text`; the error says what is wrong and how to make a good one.
    pub fn parse(text: &str) -> Result<BcryptHash, String> {
        let how = "make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`";
        let prefix = text.get(..4).unwrap_or("");
        if !matches!(prefix, "$2y$" | "$2b$" | "$2a$") {
            return Err(format!(
                "not a bcrypt hash (it must start with $2y$, $2b$ or $2a$); {how}"
            ));
        }
        let parts: bcrypt::HashParts = text
            .parse()
            .map_err(|e: bcrypt::BcryptError| format!("not a valid bcrypt hash ({e}); {how}"))?;
        let cost = parts.get_cost();
        if !(4..=31).contains(&cost) {
            return Err(format!("bcrypt cost {cost} is outside 4..31; {how}"));
        }
        Ok(BcryptHash {
            text: text.to_string(),
            cost,
        })
    }

    /// The bcrypt cost (log2 of the rounds).
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Whether `password` matches (bcrypt compares its digests in constant time).
    fn matches(&self, password: &str) -> bool {
        bcrypt::verify(password, &self.text).unwrap_or(false)
    }
}

/// A user whose hash is refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserError {
    pub user: String,
    pub reason: String,
}

/// Remembered successful checks, bounded in size and age, plus the lock that lets one bcrypt
/// run at a time.
#[derive(Debug, Default)]
pub struct CheckCache {
    ok_until: Mutex<HashMap<Digest, Instant>>,
    bcrypt: Mutex<()>,
}

impl CheckCache {
    /// The cache key of a check: distinct for any change of user, password or hash (the
    /// lengths keep "ab"+"c" apart from "a"+"bc").
    fn key(user: &str, password: &str, hash: &str) -> Digest {
        let len = |s: &str| (s.len() as u64).to_be_bytes();
        digest(&[
            &len(user),
            user.as_bytes(),
            &len(password),
            password.as_bytes(),
            hash.as_bytes(),
        ])
    }

    fn remembered(&self, key: &Digest, now: Instant) -> bool {
        let map = self.ok_until.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).is_some_and(|until| *until > now)
    }

    fn remember(&self, key: Digest, now: Instant) {
        let mut map = self.ok_until.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_ENTRIES {
            map.retain(|_, until| *until > now);
        }
        if map.len() >= CACHE_ENTRIES {
            // Still full of live entries: start over rather than grow.
            map.clear();
        }
        map.insert(key, now + CACHE_TTL);
    }

    /// Whether `password` matches `hash` for `user`: from the cache, else by bcrypt (one at a
    /// time). `known` false: `hash` is the decoy, the answer is false whatever it computes.
    pub fn check(&self, user: &str, password: &str, hash: &BcryptHash, known: bool) -> bool {
        let key = CheckCache::key(user, password, &hash.text);
        let now = Instant::now();
        if self.remembered(&key, now) {
            return known;
        }
        let _one_at_a_time = self.bcrypt.lock().unwrap_or_else(|e| e.into_inner());
        // Another thread may have checked the same credentials while this one waited.
        if self.remembered(&key, Instant::now()) {
            return known;
        }
        let ok = hash.matches(password) & known;
        if ok {
            self.remember(key, Instant::now());
        }
        ok
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ok_until.lock().unwrap().len()
    }
}

/// A decoy hash of `cost` (capped), checked for unknown users.
pub fn decoy(cost: u32) -> BcryptHash {
    let cost = cost.clamp(4, DECOY_MAX_COST);
    // A fixed salt is fine: nobody has the decoy's password, and nobody can log in with it.
    let text = bcrypt::hash_with_salt("pushprox decoy", cost, *b"pushprox-decoy!!")
        .map(|parts| parts.format_for_version(bcrypt::Version::TwoY))
        .unwrap_or_default();
    BcryptHash { text, cost }
}

/// The users of `basic_auth_users`.
#[derive(Debug)]
pub struct BasicAuthUsers {
    by_name: HashMap<String, BcryptHash>,
    decoy: BcryptHash,
    cache: CheckCache,
}

impl BasicAuthUsers {
    /// Checks every hash; the error names the first bad user.
    pub fn new(users: BTreeMap<String, String>) -> Result<BasicAuthUsers, UserError> {
        let mut by_name = HashMap::new();
        for (user, hash) in users {
            if user.contains(':') {
                return Err(UserError {
                    user,
                    reason:
                        "a user name cannot contain ':' (basic auth splits user and password there)"
                            .into(),
                });
            }
            match BcryptHash::parse(&hash) {
                Ok(h) => {
                    by_name.insert(user, h);
                }
                Err(reason) => return Err(UserError { user, reason }),
            }
        }
        let cost = by_name.values().map(BcryptHash::cost).max().unwrap_or(10);
        Ok(BasicAuthUsers {
            by_name,
            decoy: decoy(cost),
            cache: CheckCache::default(),
        })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether `password` is the password of `user`.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.by_name.get(user) {
            Some(hash) => self.cache.check(user, password, hash, true),
            None => self.cache.check(user, password, &self.decoy, false),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `htpasswd -nbBC 10 USER PASSWORD` (apache2-utils): the line it prints.
    pub fn htpasswd(user: &str, password: &str) -> String {
        let out = std::process::Command::new("htpasswd")
            .args(["-nbBC", "10", user, password])
            .output()
            .expect("htpasswd (Debian package apache2-utils)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn hash_of(line: &str) -> String {
        line.split_once(':').unwrap().1.to_string()
    }

    #[test]
    fn htpasswd_hashes_verify() {
        let alice = hash_of(&htpasswd("alice", "s3cret:with colon"));
        assert!(alice.starts_with("$2y$10$"), "{alice}");
        // The same hash with the other prefixes htpasswd-compatible tools write.
        let mut users = BTreeMap::new();
        users.insert("alice".to_string(), alice.clone());
        users.insert("bob".to_string(), alice.replacen("$2y$", "$2b$", 1));
        users.insert("carol".to_string(), alice.replacen("$2y$", "$2a$", 1));
        let users = BasicAuthUsers::new(users).unwrap();
        assert_eq!(users.len(), 3);
        for user in ["alice", "bob", "carol"] {
            assert!(users.verify(user, "s3cret:with colon"), "{user}");
            assert!(!users.verify(user, "s3cret"), "{user}");
        }
        assert!(!users.verify("dave", "s3cret:with colon"));
        assert!(!users.verify("", ""));
    }

    #[test]
    fn the_documented_example_hash() {
        // exporter-toolkit's docs: `$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG`
        // is the shape of a hash; it parses with cost 10.
        let h = BcryptHash::parse("$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG")
            .unwrap();
        assert_eq!(h.cost(), 10);
    }

    #[test]
    fn bad_hashes_name_the_user() {
        let how = "make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`";
        for (hash, want) in [
            ("plain", format!("not a bcrypt hash (it must start with $2y$, $2b$ or $2a$); {how}")),
            (
                "$2x$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG",
                format!("not a bcrypt hash (it must start with $2y$, $2b$ or $2a$); {how}"),
            ),
            (
                "$2y$10$short",
                format!("not a valid bcrypt hash (Invalid hash: the hash format is malformed; expected 60 ASCII bytes); {how}"),
            ),
            (
                "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7é",
                format!("not a valid bcrypt hash (Invalid hash: the hash format is malformed; expected 60 ASCII bytes); {how}"),
            ),
            (
                "$2y$99$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG",
                format!("bcrypt cost 99 is outside 4..31; {how}"),
            ),
        ] {
            let mut users = BTreeMap::new();
            users.insert("prom".to_string(), hash.to_string());
            assert_eq!(
                BasicAuthUsers::new(users).unwrap_err(),
                UserError {
                    user: "prom".into(),
                    reason: want
                },
                "{hash}"
            );
        }
    }

    #[test]
    fn successes_are_cached_failures_are_not() {
        let hash = BcryptHash::parse(&hash_of(&htpasswd("u", "pw"))).unwrap();
        let cache = CheckCache::default();
        let t = Instant::now();
        assert!(cache.check("u", "pw", &hash, true));
        let first = t.elapsed();
        let t = Instant::now();
        assert!(cache.check("u", "pw", &hash, true));
        let second = t.elapsed();
        assert!(second * 10 < first, "cached {second:?} vs bcrypt {first:?}");
        assert_eq!(cache.len(), 1);
        assert!(!cache.check("u", "wrong", &hash, true));
        assert_eq!(cache.len(), 1, "a failure is not remembered");
        // Same password, another hash (the file changed): not a cache hit.
        let other = BcryptHash::parse(&hash_of(&htpasswd("u", "other"))).unwrap();
        assert!(!cache.check("u", "pw", &other, true));
        // Known false (the decoy path) is never true, even for a remembered key.
        assert!(!cache.check("u", "pw", &hash, false));
        assert_ne!(
            CheckCache::key("ab", "c", "h"),
            CheckCache::key("a", "bc", "h")
        );
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = CheckCache::default();
        let now = Instant::now();
        for i in 0..(CACHE_ENTRIES * 3) {
            cache.remember(CheckCache::key("u", &i.to_string(), "h"), now);
            assert!(cache.len() <= CACHE_ENTRIES);
        }
        let key = CheckCache::key("u", "x", "h");
        cache.remember(key, now);
        assert!(cache.remembered(&key, now));
        assert!(!cache.remembered(&key, now + CACHE_TTL), "expired");
    }

    #[test]
    fn an_unknown_user_costs_a_bcrypt() {
        let mut map = BTreeMap::new();
        map.insert("prom".to_string(), hash_of(&htpasswd("prom", "pw")));
        let users = BasicAuthUsers::new(map).unwrap();
        assert_eq!(users.decoy.cost(), 10);
        // The fastest of five: other tests share the cores, and a check that lost the CPU for
        // a while says nothing about its own cost.
        let time = |user: &str, pw: &str| {
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    assert!(!users.verify(user, pw));
                    t.elapsed()
                })
                .min()
                .unwrap_or_default()
        };
        let wrong = time("prom", "nope");
        let unknown = time("nobody", "nope");
        // Both ran bcrypt at cost 10; neither is a fast path.
        assert!(
            unknown * 3 > wrong && wrong * 3 > unknown,
            "wrong {wrong:?} unknown {unknown:?}"
        );
    }
}
