//! The known bodies: the 20 KiB one and the deterministic stream of /big/N.

use super::*;

/// The `/20k` body: Prometheus-like text, the same in every run.
pub(crate) fn small_body() -> Vec<u8> {
    let mut body = Vec::with_capacity(SMALL_LEN + 64);
    let mut i = 0u64;
    while body.len() < SMALL_LEN {
        let line = format!(
            "bench_series_total{{series=\"{i:05}\",job=\"pushprox-bench\"}} {}\n",
            mix(i) % 1_000_000_007
        );
        body.extend_from_slice(line.as_bytes());
        i += 1;
    }
    body.truncate(SMALL_LEN);
    body[SMALL_LEN - 1] = b'\n';
    body
}

/// splitmix64's finaliser: a good 64-bit mix of the block number.
pub(crate) fn mix(k: u64) -> u64 {
    let mut z = SEED.wrapping_add(k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with the bytes of the `/big` stream at `offset`: byte i is byte i%8 of mix(i/8).
pub(crate) fn stream_at(offset: u64, out: &mut [u8]) {
    let mut pos = offset;
    let mut i = 0;
    while i < out.len() {
        let word = mix(pos / 8).to_le_bytes();
        let within = (pos % 8) as usize;
        let n = (8 - within).min(out.len() - i);
        out[i..i + n].copy_from_slice(&word[within..within + n]);
        i += n;
        pos += n as u64;
    }
}
