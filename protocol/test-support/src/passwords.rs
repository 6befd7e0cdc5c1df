//! bcrypt lines, as `htpasswd -nbBC 10 USER PASSWORD` prints them after `USER:`.

/// The `$2y$10$...` hash of `password` at cost 10 (the cost of the binaries' own
/// `--hash-password`), in the `$2y$` form that `htpasswd` writes.
pub fn bcrypt_line(password: &str) -> String {
    bcrypt::hash_with_result(password, 10)
        .map(|h| h.format_for_version(bcrypt::Version::TwoY))
        .unwrap_or_else(|e| panic!("bcrypt cannot hash a test password: {e}"))
}
