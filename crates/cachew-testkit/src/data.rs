//! Deterministic test data: the same seed gives the same bytes on every
//! run, so a failing test fails again.

/// Compressible but not trivially so: random nibbles (each byte `0..16`),
/// from an xorshift generator seeded with `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8 & 0x0f
        })
        .collect()
}

/// Incompressible bytes (the low byte of an xorshift generator started at
/// `seed`, which must not be 0), so an archive is larger than its headers.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    assert_ne!(seed, 0, "xorshift needs a non-zero seed");
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        assert_eq!(noise(64, 7), noise(64, 7));
        assert_ne!(noise(64, 7), noise(64, 8));
        assert!(noise(4096, 1).iter().all(|&b| b < 16));
        let r = random_bytes(4096, 3);
        assert_eq!(r, random_bytes(4096, 3));
        assert!(r.iter().any(|&b| b >= 16), "full bytes, not nibbles");
    }
}
