//! The in-process memory of DPoP proofs seen (replay refused per process).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use super::PROOF_WINDOW_SECS;

/// A bounded in-process replay cache of DPoP proofs seen, keyed on the
/// proof's `jkt` and `jti`, each kept until `iat` + [`PROOF_WINDOW_SECS`]
/// (after which [`verify_proof`] refuses the proof as stale anyway).
///
/// Thread-safe. Expired entries are evicted as calls come; when the cache
/// is full of unexpired entries a new proof is refused rather than an old
/// one forgotten, so it fails closed. Per process: instances behind a load
/// balancer each keep their own, so a replay sent to another instance is
/// caught only within the window there (use server nonces to do better).
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<ReplayInner>,
}

struct ReplayInner {
    /// Key -> when it expires (unix seconds, inclusive).
    seen: HashMap<Arc<str>, i64>,
    /// The same keys by expiry, soonest first.
    by_expiry: BinaryHeap<Reverse<(i64, Arc<str>)>>,
}

impl ReplayCache {
    /// A cache holding at most `capacity` unexpired proofs.
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity,
            inner: Mutex::new(ReplayInner {
                seen: HashMap::new(),
                by_expiry: BinaryHeap::new(),
            }),
        }
    }

    /// Records the proof `(jkt, jti)` made at `iat`, and returns whether it
    /// is its first use: `false` for a repeat within the window, and also
    /// (failing closed) when the cache is full of unexpired proofs or when
    /// `iat` is outside [`PROOF_WINDOW_SECS`] of `now` (such a proof does
    /// not verify anyway). Call it after [`verify_proof`] succeeded, with
    /// the [`Proof`]'s `jkt`, `jti` and `iat`.
    pub fn first_use(&self, jkt: &str, jti: &str, iat: i64, now: i64) -> bool {
        if iat.abs_diff(now) > PROOF_WINDOW_SECS.unsigned_abs() {
            return false;
        }
        let expires = iat.saturating_add(PROOF_WINDOW_SECS);
        // Length-prefixed, so no two (jkt, jti) pairs share a key.
        let key = format!("{}:{jkt}{jti}", jkt.len());
        let mut inner = self.inner.lock();
        inner.evict(now);
        if inner.seen.contains_key(key.as_str()) || inner.seen.len() >= self.capacity {
            return false;
        }
        let key: Arc<str> = key.into();
        inner.seen.insert(key.clone(), expires);
        inner.by_expiry.push(Reverse((expires, key)));
        true
    }

    /// How many proofs are remembered (expired ones included until the next
    /// call to `first_use` evicts them).
    pub fn len(&self) -> usize {
        self.inner.lock().seen.len()
    }

    /// Whether no proof is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most unexpired proofs held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl ReplayInner {
    /// Forgets the proofs that expired before `now`.
    fn evict(&mut self, now: i64) {
        while let Some(Reverse((expires, _))) = self.by_expiry.peek() {
            if *expires >= now {
                break;
            }
            if let Some(Reverse((_, key))) = self.by_expiry.pop() {
                self.seen.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn replay_cache_refuses_a_repeat() {
        let cache = ReplayCache::new(10);
        assert!(cache.is_empty());
        assert!(cache.first_use("jkt-a", "j-1", NOW, NOW));
        assert!(!cache.first_use("jkt-a", "j-1", NOW, NOW + 1));
        // Another jkt with the same jti, and another jti.
        assert!(cache.first_use("jkt-b", "j-1", NOW, NOW));
        assert!(cache.first_use("jkt-a", "j-2", NOW, NOW));
        // Pairs that concatenate alike stay apart.
        assert!(cache.first_use("jkt-a", "bj-1", NOW, NOW));
        assert!(cache.first_use("jkt-ab", "j-1", NOW, NOW));
        assert_eq!(cache.len(), 5);
    }

    #[test]
    fn replay_cache_forgets_after_the_window() {
        let cache = ReplayCache::new(10);
        assert!(cache.first_use("jkt", "j-1", NOW, NOW));
        // Kept through iat + window, when the proof still verifies.
        assert!(!cache.first_use("jkt", "j-1", NOW, NOW + PROOF_WINDOW_SECS));
        assert!(cache.first_use("jkt", "j-2", NOW, NOW + PROOF_WINDOW_SECS));
        assert_eq!(cache.len(), 2);
        // Past it, both are evicted; the proof itself is stale by then.
        assert!(cache.first_use("jkt", "j-3", NOW + 61, NOW + PROOF_WINDOW_SECS + 1));
        assert_eq!(cache.len(), 1);
        // A proof outside the window is never accepted.
        assert!(!cache.first_use("jkt", "j-1", NOW, NOW + PROOF_WINDOW_SECS + 1));
        assert!(!cache.first_use("jkt", "j-4", NOW + 1000, NOW));
        assert!(!cache.first_use("jkt", "j-5", i64::MIN, i64::MAX));
    }

    #[test]
    fn replay_cache_fails_closed_when_full() {
        let cache = ReplayCache::new(3);
        for jti in ["a", "b", "c"] {
            assert!(cache.first_use("jkt", jti, NOW, NOW));
        }
        assert!(!cache.first_use("jkt", "d", NOW, NOW));
        assert!(!cache.first_use("jkt", "d", NOW + 10, NOW + 10));
        assert_eq!(cache.len(), 3);
        // Once those expire there is room again.
        assert!(cache.first_use("jkt", "d", NOW + 61, NOW + 61));
        assert_eq!(cache.len(), 1);
        assert!(!ReplayCache::new(0).first_use("jkt", "a", NOW, NOW));
    }

    #[test]
    fn replay_cache_is_shared_across_threads() {
        let cache = std::sync::Arc::new(ReplayCache::new(1000));
        let firsts: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let cache = cache.clone();
                    s.spawn(move || {
                        (0..100)
                            .filter(|i| cache.first_use("jkt", &i.to_string(), NOW, NOW))
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        assert_eq!(firsts, 100);
    }
}
