//! The chain's hash as the counter row and checkpoints carry it (hex), apart
//! from `chain` so that `sql` (whose default `Tx::take_seqs` reads the
//! counter row) and `chain` (which hashes `sql` rows) need not import each
//! other.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use super::StoreError;

/// A chain hash.
pub type Hash = [u8; 32];

/// The hash before the first event.
pub const GENESIS: Hash = [0; 32];

/// Lowercase hex, as the counter row and checkpoints carry a hash.
pub fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a hash written by `hex`.
pub fn from_hex(s: &str) -> Result<Hash, StoreError> {
    let bad = || StoreError::Corrupt(format!("not a chain hash: {s:?}"));
    if s.len() != 64 || !s.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The counter row's `head` column (null before the chain existed).
pub fn head_of(v: Option<String>) -> Result<Hash, StoreError> {
    v.map_or(Ok(GENESIS), |s| from_hex(&s))
}
