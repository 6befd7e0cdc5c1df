//! SHA-256 (ring's) of concatenated parts: what the password cache keys, the token table and
//! the reloader's file fingerprints are made of.

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// The SHA-256 of the concatenated `parts`.
pub fn digest(parts: &[&[u8]]) -> Digest {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}
