//! Randomness straight from the operating system (getrandom): keys, key
//! ids, nonces, salts and refresh tokens.
//!
//! May import: nothing of Recall's (the bottom layer). The layers:
//! docs/DESIGN.md, "Parts".

/// `N` random bytes from the OS. The OS source failing is not something a
/// server can go on from, so it aborts loudly rather than hand out zeros.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if let Err(e) = getrandom::fill(&mut out) {
        panic!("the operating system's random source failed: {e}");
    }
    out
}

/// A random index below `n` (not for secrets: spreading load).
pub fn below(n: usize) -> usize {
    let r = u64::from_le_bytes(bytes::<8>());
    (r % n.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_differ_and_indexes_stay_in_range() {
        assert_ne!(super::bytes::<32>(), super::bytes::<32>());
        for _ in 0..100 {
            assert!(super::below(3) < 3);
        }
        assert_eq!(super::below(0), 0);
    }
}
