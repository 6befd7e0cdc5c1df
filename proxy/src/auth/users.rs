//! The one table of users who may scrape (and read the API): the lines of
//! `--auth.scrape-users` and the web config's `basic_auth_users`, merged.
//!
//! - `user:$2y$10$...`, a bcrypt hash as `htpasswd -nBC 10 USER` prints it (also `$2b$`,
//!   `$2a$`): what to use, in either source; or
//! - `user:sha256:SALT_HEX:HASH_HEX` (the users file only), HASH being the SHA-256 of the salt
//!   bytes followed by the password, as `--hash-password` made it before bcrypt: still
//!   accepted, with a warning at load, because a GPU tries billions of such hashes a second.
//!
//! The table only says whether a password matches; caching, the bcrypt pool and the limits
//! on failures are [`super::passwords`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering;

use pushprox_daemon::AtomicU64;

use subtle::ConstantTimeEq;

use super::{digest, Digest, FileError};

/// The cost of the decoy hash is the highest of the users' costs, up to this (a cost-18 hash
/// would make loading the file take seconds).
const DECOY_MAX_COST: u32 = 12;

/// The cost of the hashes `--hash-password` makes, as `htpasswd -nBC 10`.
pub const HASH_COST: u32 = 10;

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

    /// A decoy hash of `cost` (capped), checked for unknown users.
    fn decoy(cost: u32) -> BcryptHash {
        let cost = cost.clamp(4, DECOY_MAX_COST);
        // A fixed salt is fine: nobody has the decoy's password, and nobody can log in with it.
        let text = bcrypt::hash_with_salt("pushprox decoy", cost, *b"pushprox-decoy!!")
            .map(|parts| parts.format_for_version(bcrypt::Version::TwoY))
            .unwrap_or_default();
        BcryptHash { text, cost }
    }
}

/// What a user's password is checked against.
#[derive(Debug, Clone)]
pub enum Secret {
    /// Deprecated users-file lines: SHA-256 of salt and password.
    Sha256 {
        salt: Vec<u8>,
        hash: Digest,
    },
    Bcrypt(BcryptHash),
}

impl Secret {
    /// Whether `password` matches: bcrypt compares its digests in constant time, and so does
    /// the SHA-256 comparison here. A bcrypt check takes tens of milliseconds: run it on the
    /// pool of [`super::passwords`].
    pub fn matches(&self, password: &str) -> bool {
        match self {
            Secret::Sha256 { salt, hash } => {
                let computed = digest(&[salt, password.as_bytes()]);
                computed.ct_eq(hash).into()
            }
            Secret::Bcrypt(hash) => bcrypt::verify(password, &hash.text).unwrap_or(false),
        }
    }

    /// Whether checking it is slow (bcrypt), which is what the pool and the limits are for.
    pub fn is_slow(&self) -> bool {
        matches!(self, Secret::Bcrypt(_))
    }
}

/// A user whose hash is refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserError {
    pub user: String,
    pub reason: String,
}

/// The users, by name; a name given in both sources has both secrets, either of which matches.
#[derive(Debug)]
pub struct Users {
    by_name: HashMap<String, Vec<Secret>>,
    /// Checked against when the user is unknown, so the answer takes as long (a bcrypt decoy
    /// as soon as one user has a bcrypt hash).
    decoy: Secret,
    /// Users whose line is salted SHA-256, for the warning at load.
    sha256_users: Vec<String>,
    /// Unique to this table: what was checked against another table does not count here.
    generation: u64,
}

/// The generation of the next table made.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

impl Users {
    /// Reads and parses an `--auth.scrape-users` file; errors name the file and the line. Logs
    /// a warning naming the users whose lines are still salted SHA-256.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let users = FileError::load("--auth.scrape-users", path, Self::parse)?;
        if let Some(warning) = users.sha256_warning(path) {
            log::warn!("{warning}");
        }
        Ok(users)
    }

    /// Parses the text of an `--auth.scrape-users` file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_name: HashMap<String, Vec<Secret>> = HashMap::new();
        let mut sha256_users = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let expected = || {
                format!(
                    "line {n}: expected user:BCRYPT_HASH (make one with `htpasswd -nBC 10 USER`) or the older user:sha256:SALT_HEX:HASH_HEX"
                )
            };
            let (user, rest) = line.split_once(':').ok_or_else(expected)?;
            if user.is_empty() {
                return Err(format!("line {n}: the user name is empty"));
            }
            let secret = if rest.starts_with('$') {
                let hash = BcryptHash::parse(rest)
                    .map_err(|why| format!("line {n}: the hash of user {user} is {why}"))?;
                Secret::Bcrypt(hash)
            } else {
                let fields: Vec<&str> = rest.split(':').collect();
                let [scheme, salt, hash] = fields[..] else {
                    return Err(expected());
                };
                if scheme != "sha256" {
                    return Err(format!(
                        "line {n}: unknown scheme \"{scheme}\" for user {user}: use a bcrypt hash (`htpasswd -nBC 10 USER`)"
                    ));
                }
                let salt = from_hex(salt)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("line {n}: the salt of user {user} is not hex"))?;
                let hash: Digest =
                    from_hex(hash)
                        .and_then(|h| h.try_into().ok())
                        .ok_or_else(|| {
                            format!("line {n}: the hash of user {user} is not 64 hex digits")
                        })?;
                sha256_users.push(user.to_string());
                Secret::Sha256 { salt, hash }
            };
            if by_name.insert(user.to_string(), vec![secret]).is_some() {
                return Err(format!("line {n}: user {user} is listed twice"));
            }
        }
        if by_name.is_empty() {
            return Err("no user line: every scrape would be refused".into());
        }
        Ok(Self::with_decoy(by_name, sha256_users))
    }

    /// The users of `basic_auth_users` (name to bcrypt hash); the error names the first bad
    /// user.
    pub fn from_bcrypt_map(users: BTreeMap<String, String>) -> Result<Users, UserError> {
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
                    by_name.insert(user, vec![Secret::Bcrypt(h)]);
                }
                Err(reason) => return Err(UserError { user, reason }),
            }
        }
        Ok(Self::with_decoy(by_name, Vec::new()))
    }

    fn with_decoy(by_name: HashMap<String, Vec<Secret>>, sha256_users: Vec<String>) -> Users {
        let cost = by_name
            .values()
            .flatten()
            .filter_map(|s| match s {
                Secret::Bcrypt(h) => Some(h.cost()),
                Secret::Sha256 { .. } => None,
            })
            .max();
        let decoy = match cost {
            Some(cost) => Secret::Bcrypt(BcryptHash::decoy(cost)),
            None => Secret::Sha256 {
                salt: vec![0; 16],
                hash: [0; 32],
            },
        };
        Users {
            by_name,
            decoy,
            sha256_users,
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Both tables as one: a user of either may log in.
    pub fn merge(self, other: Users) -> Users {
        let mut by_name = self.by_name;
        for (user, secrets) in other.by_name {
            by_name.entry(user).or_default().extend(secrets);
        }
        let mut sha256_users = self.sha256_users;
        sha256_users.extend(other.sha256_users);
        Self::with_decoy(by_name, sha256_users)
    }

    /// The warning logged at load when some lines are salted SHA-256.
    fn sha256_warning(&self, path: &Path) -> Option<String> {
        (!self.sha256_users.is_empty()).then(|| {
            format!(
                "--auth.scrape-users file {}: salted SHA-256 lines are deprecated, a GPU tries billions of them a second if the file leaks (users {}); replace each with the line `htpasswd -nBC 10 USER` prints (bcrypt)",
                path.display(),
                self.sha256_users.join(", ")
            )
        })
    }

    /// Unique to this table (each load makes a new one).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of users, for the start-up log.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The secrets of `user`, and whether the user exists: an unknown user gets the decoy,
    /// which costs what a known one costs and never matches.
    pub fn secrets(&self, user: &str) -> (&[Secret], bool) {
        match self.by_name.get(user) {
            Some(secrets) => (secrets, true),
            None => (std::slice::from_ref(&self.decoy), false),
        }
    }

    /// Whether `password` is the password of `user`, checked here and now (no cache, no
    /// limit).
    #[cfg(test)]
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let (secrets, known) = self.secrets(user);
        // Every secret is checked, so the time does not tell which one matched.
        let matched = secrets.iter().fold(false, |ok, s| s.matches(password) | ok);
        matched & known
    }
}

/// The bcrypt users-file line for `user` with `password`, cost 10, with a random salt, as
/// `htpasswd -nBC 10` makes it: what `--hash-password` prints.
pub fn bcrypt_line(user: &str, password: &str) -> Result<String, bcrypt::BcryptError> {
    let hash =
        bcrypt::hash_with_result(password, HASH_COST)?.format_for_version(bcrypt::Version::TwoY);
    Ok(format!("{user}:{hash}"))
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Instant;

    /// The salted SHA-256 users-file line for `user` with `password` and `salt`, what
    /// `--hash-password` printed before bcrypt.
    pub fn sha256_line(user: &str, password: &str, salt: &[u8]) -> String {
        let hash = digest(&[salt, password.as_bytes()]);
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        format!("{user}:sha256:{}:{}", hex(salt), hex(&hash))
    }

    /// A bcrypt line at cost 4 (fast), as the bcrypt crate makes it.
    pub fn quick_line(user: &str, password: &str) -> String {
        let hash = bcrypt::hash_with_result(password, 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        format!("{user}:{hash}")
    }

    fn hash_of(line: &str) -> String {
        line.split_once(':').unwrap().1.to_string()
    }

    #[test]
    fn made_lines_verify() {
        let text = format!(
            "# scrapers\n{}\n\n{}\n",
            sha256_line("prometheus", "s3cret:with colon", b"\x07\x08\x09"),
            sha256_line("alice", "pw", b"\x01\x02")
        );
        let users = Users::parse(&text).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users.sha256_users, ["prometheus", "alice"]);
        assert!(users.verify("prometheus", "s3cret:with colon"));
        assert!(!users.verify("prometheus", "s3cret"));
        assert!(users.verify("alice", "pw"));
        assert!(!users.verify("bob", "pw"));
        assert!(!users.verify("", ""));
    }

    #[test]
    fn bcrypt_lines_are_htpasswd_lines() {
        let made = bcrypt_line("prom", "pw:d").unwrap();
        assert!(
            made.starts_with("prom:$2y$10$") && made.len() == 5 + 60,
            "{made}"
        );
        assert_ne!(made, bcrypt_line("prom", "pw:d").unwrap(), "a random salt");
        let users = Users::parse(&made).unwrap();
        assert!(users.sha256_users.is_empty());
        assert!(users.verify("prom", "pw:d"));
        assert!(!users.verify("prom", "pw"));
    }

    #[test]
    fn known_line() {
        // sha256(0x0102 || "pw"), checked with: printf '\x01\x02pw' | sha256sum
        assert_eq!(
            sha256_line("alice", "pw", b"\x01\x02"),
            "alice:sha256:0102:c5a5cb9dd07108ca298559f2db1943db694cc3879b820c4a92ca36f799b67e2c"
        );
        let users = Users::parse(
            "alice:sha256:0102:c5a5cb9dd07108ca298559f2db1943db694cc3879b820c4a92ca36f799b67e2c",
        )
        .unwrap();
        assert!(users.verify("alice", "pw"));
    }

    #[test]
    fn bad_lines_are_named() {
        let good = sha256_line("a", "b", b"\x00");
        for (text, want) in [
            ("alice\n", "line 1: expected user:BCRYPT_HASH"),
            ("alice:pw\n", "line 1: expected user:BCRYPT_HASH"),
            ("alice:md5:00:00\n", "unknown scheme \"md5\""),
            (
                "alice:$2y$10$short\n",
                "line 1: the hash of user alice is not a valid bcrypt hash (Invalid hash: the hash format is malformed; expected 60 ASCII bytes); make one with",
            ),
            (
                "alice:$1$abc$def\n",
                "line 1: the hash of user alice is not a bcrypt hash (it must start with $2y$, $2b$ or $2a$)",
            ),
            ("alice:sha256:zz:00\n", "salt of user alice is not hex"),
            (
                "alice:sha256:00:0011\n",
                "hash of user alice is not 64 hex digits",
            ),
            (":sha256:00:00\n", "user name is empty"),
            ("#\n", "no user line"),
        ] {
            let err = Users::parse(text).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        let twice = format!("{good}\n{good}\n");
        assert!(Users::parse(&twice)
            .unwrap_err()
            .contains("line 2: user a is listed twice"));
    }

    #[test]
    fn bcrypt_lines_verify_beside_sha256_ones() {
        let text = format!(
            "# scrapers\n{}\n{}\n{}\n",
            quick_line("prometheus", "s3cret:with colon"),
            sha256_line("legacy", "old", b"\x01\x02"),
            quick_line("alice", "pw").replacen("$2y$", "$2b$", 1),
        );
        let users = Users::parse(&text).unwrap();
        assert_eq!(users.len(), 3);
        assert_eq!(users.sha256_users, ["legacy"]);
        assert_eq!(
            users.sha256_warning(Path::new("/etc/pushprox/users")).unwrap(),
            "--auth.scrape-users file /etc/pushprox/users: salted SHA-256 lines are deprecated, a GPU tries billions of them a second if the file leaks (users legacy); replace each with the line `htpasswd -nBC 10 USER` prints (bcrypt)"
        );
        assert!(matches!(users.decoy, Secret::Bcrypt(_)));
        assert!(users.verify("prometheus", "s3cret:with colon"));
        assert!(!users.verify("prometheus", "s3cret"));
        assert!(users.verify("legacy", "old"));
        assert!(!users.verify("legacy", "new"));
        assert!(users.verify("alice", "pw"));
        assert!(!users.verify("bob", "pw"));
    }

    #[test]
    fn bcrypt_maps_take_every_prefix_and_merge_with_the_file() {
        let alice = hash_of(&quick_line("alice", "s3cret:with colon"));
        let mut map = BTreeMap::new();
        map.insert("alice".to_string(), alice.clone());
        map.insert("bob".to_string(), alice.replacen("$2y$", "$2b$", 1));
        map.insert("carol".to_string(), alice.replacen("$2y$", "$2a$", 1));
        let web = Users::from_bcrypt_map(map).unwrap();
        assert_eq!(web.len(), 3);
        for user in ["alice", "bob", "carol"] {
            assert!(web.verify(user, "s3cret:with colon"), "{user}");
            assert!(!web.verify(user, "s3cret"), "{user}");
        }
        // The same name in the users file, with another password: either logs in.
        let file = Users::parse(&sha256_line("alice", "other", b"\x01")).unwrap();
        let all = web.merge(file);
        assert_eq!(all.len(), 3);
        assert!(all.verify("alice", "s3cret:with colon"));
        assert!(all.verify("alice", "other"));
        assert!(!all.verify("alice", "neither"));
        assert!(!all.verify("dave", "other"));
    }

    #[test]
    fn the_documented_example_hash() {
        // exporter-toolkit's docs: the shape of a hash; it parses with cost 10.
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
                Users::from_bcrypt_map(users).unwrap_err(),
                UserError {
                    user: "prom".into(),
                    reason: want
                },
                "{hash}"
            );
        }
    }

    #[test]
    fn an_unknown_user_costs_a_bcrypt() {
        let web = Users::parse(&bcrypt_line("prom", "pw").unwrap()).unwrap();
        let Secret::Bcrypt(decoy) = &web.decoy else {
            panic!("a bcrypt decoy")
        };
        assert_eq!(decoy.cost(), 10);
        // The fastest of five: other tests share the cores, and a check that lost the CPU for
        // a while says nothing about its own cost.
        let time = |user: &str, pw: &str| {
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    assert!(!web.verify(user, pw));
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
