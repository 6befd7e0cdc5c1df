//! `--auth.scrape-users`: who may scrape through the proxy (and read its API with
//! `--auth.protect-api`). One `user:sha256:SALT_HEX:HASH_HEX` per line, HASH being the
//! SHA-256 of the salt bytes followed by the password; `pushprox-proxy --hash-password USER`
//! makes such a line.

use std::collections::HashMap;
use std::path::Path;

use super::constant_time_eq;
use super::sha256::{digest, from_hex, to_hex, Digest};

#[derive(Debug)]
struct Entry {
    salt: Vec<u8>,
    hash: Digest,
}

/// The users of the file.
#[derive(Debug)]
pub struct Users {
    by_name: HashMap<String, Entry>,
    /// Checked against when the user is unknown, so the answer takes as long.
    decoy: Entry,
}

impl Users {
    /// Reads and parses the file; errors name the file and the line.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read --auth.scrape-users file {}: {e}",
                path.display()
            )
        })?;
        Self::parse(&text).map_err(|e| format!("--auth.scrape-users file {}: {e}", path.display()))
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_name = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let fields: Vec<&str> = line.split(':').collect();
            let [user, scheme, salt, hash] = fields[..] else {
                return Err(format!(
                    "line {n}: expected user:sha256:SALT_HEX:HASH_HEX (make one with --hash-password USER)"
                ));
            };
            if user.is_empty() {
                return Err(format!("line {n}: the user name is empty"));
            }
            if scheme != "sha256" {
                return Err(format!(
                    "line {n}: unknown scheme \"{scheme}\" for user {user}: only sha256 is supported"
                ));
            }
            let salt = from_hex(salt)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("line {n}: the salt of user {user} is not hex"))?;
            let hash: Digest = from_hex(hash)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| format!("line {n}: the hash of user {user} is not 64 hex digits"))?;
            if by_name
                .insert(user.to_string(), Entry { salt, hash })
                .is_some()
            {
                return Err(format!("line {n}: user {user} is listed twice"));
            }
        }
        if by_name.is_empty() {
            return Err("no user line: every scrape would be refused".into());
        }
        Ok(Users {
            by_name,
            decoy: Entry {
                salt: vec![0; 16],
                hash: [0; 32],
            },
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
        let hash = digest(&[&entry.salt, password.as_bytes()]);
        constant_time_eq(&hash, &entry.hash) & known
    }
}

/// The users-file line for `user` with `password` and `salt`.
pub fn line(user: &str, password: &str, salt: &[u8]) -> String {
    let hash = digest(&[salt, password.as_bytes()]);
    format!("{user}:sha256:{}:{}", to_hex(salt), to_hex(&hash))
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
        assert!(users.verify("prometheus", "s3cret:with colon"));
        assert!(!users.verify("prometheus", "s3cret"));
        assert!(users.verify("alice", "pw"));
        assert!(!users.verify("bob", "pw"));
        assert!(!users.verify("", ""));
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
            ("alice:pw\n", "line 1: expected user:sha256"),
            ("alice:md5:00:00\n", "unknown scheme \"md5\""),
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
}
