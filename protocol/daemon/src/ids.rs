//! Random ids: the proxy's scrape ids, the client's instance id. std's `RandomState` is
//! seeded from the OS's randomness, so no random number crate is needed.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;

use crate::AtomicU64;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// 64 random bits: std's per-process SipHash keys (from the OS), over a counter that never
/// repeats within the process, the time and `salt`. The keys already differ between
/// processes, so the process id adds nothing (and would cost a system call per id).
pub fn random_u64(salt: u64) -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.write_u64(salt);
    h.finish()
}

/// A new random version-4 UUID such as `0c6e3a4e-8a6b-4c3a-9d4e-4c0f6b1f2a77`, as the Go proxy
/// sends for scrape ids.
pub fn scrape_id() -> String {
    let hi = (random_u64(1) & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let lo = (random_u64(2) & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

/// A random id for this process, 16 hex digits.
pub fn instance_id() -> String {
    format!("{:016x}", random_u64(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_ids_are_uuid_shaped_and_distinct() {
        let a = scrape_id();
        let b = scrape_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
    }

    #[test]
    fn instance_ids_are_16_hex_digits_and_differ() {
        let a = instance_id();
        let b = instance_id();
        assert_eq!(a.len(), 16, "{a}");
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }
}
