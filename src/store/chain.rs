//! The log's hash chain (tamper evidence). Every event row stores
//! `prev_hash`, the hash of the event before it, and `hash`, SHA-256 over
//! its own stored columns, `prev_hash` included. Both are computed in the
//! appending transaction from the counter row's `head` (the last event's
//! hash, locked with the seq), so the chain follows seq order (G6) on both
//! stores. Changing any stored byte of an event changes its hash, which no
//! longer matches its `hash` column; deleting one breaks the seqs or the
//! next `prev_hash`; cutting the tail leaves `recall_seq.head` unmatched.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use sha2::{Digest, Sha256};

pub use super::head::{from_hex, head_of, hex, Hash, GENESIS};
use super::sql::{Row, Val};

/// The stored columns an event's hash covers, in this order; the same
/// order as the insert's parameters (`rows::append_after`).
pub const HASHED_COLS: &str =
    "seq, stream, type, version, at, actor, ip, user_id, session_id, data, prev_hash";

/// What tells this encoding from any later one.
const DOMAIN: &[u8] = b"recall-event-v1";

/// SHA-256 over the values of `HASHED_COLS`, each tagged with its kind and
/// length so no two rows encode alike.
pub fn digest(cols: &[Val]) -> Hash {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    for v in cols {
        match v {
            Val::Null => h.update([0u8]),
            Val::Int(i) => {
                h.update([1u8]);
                h.update(i.to_be_bytes());
            }
            Val::Text(t) => {
                h.update([2u8]);
                h.update((t.len() as u64).to_be_bytes());
                h.update(t.as_bytes());
            }
            Val::Blob(b) => {
                h.update([3u8]);
                h.update((b.len() as u64).to_be_bytes());
                h.update(b);
            }
        }
    }
    h.finalize().into()
}

/// A stored hash column: 32 bytes, or `None` when null or another length.
pub fn stored(v: &Val) -> Option<Hash> {
    match v {
        Val::Blob(b) => b.as_slice().try_into().ok(),
        _ => None,
    }
}

/// What verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub ok: bool,
    /// The last seq whose bytes and links checked out (0: none).
    pub verified_through: i64,
    /// The first seq that did not: edited, missing, or cut from the tail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<i64>,
}

/// Checks rows in seq order, a page at a time: each row's `hash` must be
/// the digest of its columns, its `prev_hash` the `hash` of the row before,
/// and seqs must follow one another.
#[derive(Debug)]
pub struct Walker {
    /// The seq the next row must have.
    next: i64,
    /// The hash the next row's `prev_hash` must equal (`None`: take the
    /// first row's as given, when verifying from the middle).
    prev: Option<Hash>,
    verified: i64,
    bad: Option<i64>,
}

impl Walker {
    /// Starts at seq `first`, whose `prev_hash` must be `prev` if known.
    pub fn new(first: i64, prev: Option<Hash>) -> Self {
        Walker {
            next: first,
            prev,
            verified: first - 1,
            bad: None,
        }
    }

    /// Found a fault already.
    pub fn failed(&self) -> bool {
        self.bad.is_some()
    }

    /// The seq the next row must have.
    pub fn next(&self) -> i64 {
        self.next
    }

    /// Checks one row read as `HASHED_COLS` then `hash`.
    pub fn row(&mut self, row: &Row) {
        if self.bad.is_some() {
            return;
        }
        let cols = &row.0;
        let (Some(Val::Int(seq)), Some(prev_col), Some(hash_col)) =
            (cols.first(), cols.get(10), cols.get(11))
        else {
            self.bad = Some(self.next);
            return;
        };
        if *seq != self.next {
            // A row is missing before this one.
            self.bad = Some(self.next);
            return;
        }
        let computed = digest(&cols[..11]);
        let prev_ok = match (self.prev, stored(prev_col)) {
            (Some(want), Some(got)) => want == got,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if stored(hash_col) != Some(computed) || !prev_ok {
            self.bad = Some(*seq);
            return;
        }
        self.prev = Some(computed);
        self.verified = *seq;
        self.next = seq + 1;
    }

    /// Ends the walk at the log's head: `head` is the counter row's hash of
    /// the last event and `last` its seq; a shorter or different tail is a
    /// fault at the first seq missing.
    pub fn finish(mut self, last: i64, head: Hash) -> Verdict {
        if self.bad.is_none() && self.verified < last {
            self.bad = Some(self.next);
        }
        if self.bad.is_none() && self.verified == last && last > 0 {
            if let Some(prev) = self.prev {
                if prev != head {
                    self.bad = Some(last);
                }
            }
        }
        Verdict {
            ok: self.bad.is_none(),
            verified_through: self
                .bad
                .map_or(self.verified, |b| (b - 1).min(self.verified)),
            first_bad_seq: self.bad,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(seq: i64, data: &str, prev: Hash) -> Vec<Val> {
        vec![
            seq.into(),
            "user:x".into(),
            "logged_out".into(),
            1i64.into(),
            42i64.into(),
            Val::Null,
            Val::Null,
            Val::Null,
            Val::Null,
            data.into(),
            prev.to_vec().into(),
        ]
    }

    fn chain(n: i64) -> (Vec<Row>, Hash) {
        let mut prev = GENESIS;
        let mut rows = Vec::new();
        for seq in 1..=n {
            let mut c = cols(seq, &format!("{{\"n\":{seq}}}"), prev);
            prev = digest(&c);
            c.push(prev.to_vec().into());
            rows.push(Row(c));
        }
        (rows, prev)
    }

    fn walk(rows: &[Row], last: i64, head: Hash) -> Verdict {
        let mut w = Walker::new(1, Some(GENESIS));
        for r in rows {
            w.row(r);
        }
        w.finish(last, head)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (rows, head) = chain(5);
        let v = walk(&rows, 5, head);
        assert_eq!((v.ok, v.verified_through, v.first_bad_seq), (true, 5, None));
    }

    #[test]
    fn any_edited_column_names_its_seq() {
        let (rows, head) = chain(5);
        for col in 1..12 {
            let mut edited = rows.clone();
            edited[2].0[col] = match &edited[2].0[col] {
                Val::Int(i) => Val::Int(i + 1),
                Val::Text(t) => Val::Text(format!("{t}x")),
                Val::Blob(b) => {
                    let mut b = b.clone();
                    b[0] ^= 1;
                    Val::Blob(b)
                }
                Val::Null => Val::Text("x".into()),
            };
            let v = walk(&edited, 5, head);
            assert_eq!(v.first_bad_seq, Some(3), "column {col}");
            assert_eq!(v.verified_through, 2);
        }
    }

    #[test]
    fn a_missing_row_or_a_cut_tail_is_named() {
        let (mut rows, head) = chain(5);
        rows.remove(1);
        assert_eq!(walk(&rows, 5, head).first_bad_seq, Some(2));
        let (mut rows, head) = chain(5);
        rows.pop();
        assert_eq!(walk(&rows, 5, head).first_bad_seq, Some(5));
        let (rows, _) = chain(5);
        assert_eq!(walk(&rows, 5, GENESIS).first_bad_seq, Some(5));
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let h = digest(&[Val::Text("a".into())]);
        assert_eq!(from_hex(&hex(&h)).unwrap(), h);
        assert!(from_hex("zz").is_err());
        assert!(from_hex(&"é".repeat(32)).is_err());
    }
}
