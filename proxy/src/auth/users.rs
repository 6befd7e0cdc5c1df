//! `--auth.scrape-users`: who may scrape through the proxy (and read its API with
//! `--auth.protect-api`). One user per line, either
//!
//! - `user:$2y$10$...`, a bcrypt hash as `htpasswd -nBC 10 USER` prints it (also `$2b$`,
//!   `$2a$`): what to use; checked and cached as the web config's `basic_auth_users`
//!   ([`crate::web_config::users`]); or
//! - `user:sha256:SALT_HEX:HASH_HEX`, HASH being the SHA-256 of the salt bytes followed by the
//!   password, as `pushprox-proxy --hash-password USER` makes it: still accepted, with a
//!   warning at load, because a GPU tries billions of such hashes a second.

use std::collections::HashMap;
use std::path::Path;

use super::constant_time_eq;
use crate::sha256::{digest, from_hex, to_hex, Digest};
use crate::web_config::users::{decoy, BcryptHash, CheckCache};

#[derive(Debug)]
enum Entry {
    Sha256 { salt: Vec<u8>, hash: Digest },
    Bcrypt(BcryptHash),
}

/// The users of the file.
#[derive(Debug)]
pub struct Users {
    by_name: HashMap<String, Entry>,
    /// Checked against when the user is unknown, so the answer takes as long (a bcrypt decoy
    /// as soon as one user has a bcrypt hash).
    decoy: Entry,
    /// Users whose line is salted SHA-256, for the warning at load.
    sha256_users: Vec<String>,
    cache: CheckCache,
}

impl Users {
    /// Reads and parses the file; errors name the file and the line. Logs a warning naming
    /// the users whose lines are still salted SHA-256.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read --auth.scrape-users file {}: {e}",
                path.display()
            )
        })?;
        let users = Self::parse(&text)
            .map_err(|e| format!("--auth.scrape-users file {}: {e}", path.display()))?;
        if let Some(warning) = users.sha256_warning(path) {
            log::warn!("{warning}");
        }
        Ok(users)
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_name = HashMap::new();
        let mut sha256_users = Vec::new();
        let mut bcrypt_cost = None;
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
            let entry = if rest.starts_with('$') {
                let hash = BcryptHash::parse(rest)
                    .map_err(|why| format!("line {n}: the hash of user {user} is {why}"))?;
                bcrypt_cost = bcrypt_cost.max(Some(hash.cost()));
                Entry::Bcrypt(hash)
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
                Entry::Sha256 { salt, hash }
            };
            if by_name.insert(user.to_string(), entry).is_some() {
                return Err(format!("line {n}: user {user} is listed twice"));
            }
        }
        if by_name.is_empty() {
            return Err("no user line: every scrape would be refused".into());
        }
        let decoy = match bcrypt_cost {
            Some(cost) => Entry::Bcrypt(decoy(cost)),
            None => Entry::Sha256 {
                salt: vec![0; 16],
                hash: [0; 32],
            },
        };
        Ok(Users {
            by_name,
            decoy,
            sha256_users,
            cache: CheckCache::default(),
        })
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

    /// Number of users, for the start-up log.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether `password` is the password of `user`.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let (entry, known) = match self.by_name.get(user) {
            Some(e) => (e, true),
            None => (&self.decoy, false),
        };
        match entry {
            Entry::Sha256 { salt, hash } => {
                let computed = digest(&[salt, password.as_bytes()]);
                constant_time_eq(&computed, hash) & known
            }
            Entry::Bcrypt(hash) => self.cache.check(user, password, hash, known),
        }
    }
}

/// The salted SHA-256 users-file line for `user` with `password` and `salt`, what
/// `--hash-password` printed before bcrypt (it loads with a warning: see [`bcrypt_line`]).
#[cfg_attr(not(test), allow(dead_code))]
pub fn line(user: &str, password: &str, salt: &[u8]) -> String {
    let hash = digest(&[salt, password.as_bytes()]);
    format!("{user}:sha256:{}:{}", to_hex(salt), to_hex(&hash))
}

/// The bcrypt users-file line for `user` with `password`, cost 10, as `htpasswd -nBC 10`
/// makes it: what `--hash-password` prints. The bcrypt salt is the first 16 bytes of the
/// SHA-256 of `salt` (16 random bytes from [`new_salt`]).
pub fn bcrypt_line(user: &str, password: &str, salt: &[u8]) -> String {
    let mut bcrypt_salt = [0u8; 16];
    bcrypt_salt.copy_from_slice(&digest(&[salt])[..16]);
    // Cost 10 is within bcrypt's 4..=31, the only way hash_with_salt fails.
    let hash = bcrypt::hash_with_salt(password, 10, bcrypt_salt)
        .expect("bcrypt cost 10 is valid")
        .format_for_version(bcrypt::Version::TwoY);
    format!("{user}:{hash}")
}

/// 16 random bytes from the kernel, for a new salt.
pub fn new_salt() -> std::io::Result<[u8; 16]> {
    use std::io::Read;
    let mut salt = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut salt)?;
    Ok(salt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_lines_verify() {
        let salt = new_salt().unwrap();
        let text = format!(
            "# scrapers\n{}\n\n{}\n",
            line("prometheus", "s3cret:with colon", &salt),
            line("alice", "pw", b"\x01\x02")
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
        let made = bcrypt_line("prom", "pw:d", &new_salt().unwrap());
        assert!(
            made.starts_with("prom:$2y$10$") && made.len() == 5 + 60,
            "{made}"
        );
        // What htpasswd checks: `htpasswd -vb FILE USER PASSWORD`.
        let dir = crate::web_config::testcerts::Dir::new("hashpassword");
        let file = dir.write("users", &format!("{made}\n"));
        let status = std::process::Command::new("htpasswd")
            .args(["-vb", file.to_str().unwrap(), "prom", "pw:d"])
            .output()
            .unwrap()
            .status;
        assert!(status.success());
        let users = Users::parse(&made).unwrap();
        assert!(users.sha256_users.is_empty());
        assert!(users.verify("prom", "pw:d"));
        assert!(!users.verify("prom", "pw"));
    }

    #[test]
    fn known_line() {
        // sha256(0x0102 || "pw"), checked with: printf '\x01\x02pw' | sha256sum
        assert_eq!(
            line("alice", "pw", b"\x01\x02"),
            "alice:sha256:0102:c5a5cb9dd07108ca298559f2db1943db694cc3879b820c4a92ca36f799b67e2c"
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let good = line("a", "b", b"\x00");
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
    fn htpasswd_bcrypt_lines_verify_beside_sha256_ones() {
        use crate::web_config::users::tests::htpasswd;
        let text = format!(
            "# scrapers\n{}\n{}\n{}\n",
            htpasswd("prometheus", "s3cret:with colon"),
            line("legacy", "old", b"\x01\x02"),
            htpasswd("alice", "pw").replacen("$2y$", "$2b$", 1),
        );
        let users = Users::parse(&text).unwrap();
        assert_eq!(users.len(), 3);
        assert_eq!(users.sha256_users, ["legacy"]);
        assert_eq!(
            users.sha256_warning(Path::new("/etc/pushprox/users")).unwrap(),
            "--auth.scrape-users file /etc/pushprox/users: salted SHA-256 lines are deprecated, a GPU tries billions of them a second if the file leaks (users legacy); replace each with the line `htpasswd -nBC 10 USER` prints (bcrypt)"
        );
        assert!(matches!(users.decoy, Entry::Bcrypt(_)));
        assert!(users.verify("prometheus", "s3cret:with colon"));
        assert!(users.verify("prometheus", "s3cret:with colon"), "cached");
        assert!(!users.verify("prometheus", "s3cret"));
        assert!(users.verify("legacy", "old"));
        assert!(!users.verify("legacy", "new"));
        assert!(users.verify("alice", "pw"));
        assert!(!users.verify("bob", "pw"));
    }
}
