//! DPoP (RFC 9449) on Recall's side: proofs at the token endpoints (login,
//! refresh, `/oauth/token`) and with protected requests, their fleet-wide
//! replay check, and stateless server nonces.
//!
//! Replay: a proof's (key, `jti`) may be used once within its window. Each
//! instance remembers the proofs it saw (so a replay to the same instance
//! is refused whatever else happens), and the fleet shares the check:
//! through Redis (`SET NX`) when the fleet has one, else through the log's
//! PostgreSQL; the embedded store is one instance, so its memory is the
//! fleet's. If the shared part does not answer, bound requests get 503
//! (fail closed, G5). Redis is untrusted (G9): a hostile Redis can answer
//! "first use" to a replay, so a proof captured by someone who also
//! controls Redis can be replayed to another instance within its 60 s
//! window (never to the same instance, and never with another request's
//! method, URI or token); it can also refuse honest proofs (denial of
//! service). Docs/DESIGN.md says so.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use recall_verifier::dpop::{self, Expect, Proof, ReplayCache, PROOF_WINDOW_SECS};
use sha2::{Digest, Sha256};

use super::Core;
use crate::clock::Timestamp;
use crate::error::{DpopRefusal, Error, Unavailable};
use crate::metrics::inc;

/// Salt of the server-nonce key (HKDF from the master key).
const NONCE_SALT: &[u8] = b"recall dpop nonce key v1";
/// A nonce is good in the minute it was made and the next.
const NONCE_BUCKET_SECS: i64 = 60;
/// Proofs remembered per instance.
const LOCAL_PROOFS: usize = 1 << 20;

/// What a request presents of DPoP: its proof (the one `DPoP` header) and
/// the method and URI the proof must name.
#[derive(Debug, Clone, Default)]
pub struct DpopInput {
    /// The `DPoP` header; `Err` when there were several.
    pub proof: Option<Result<String, ()>>,
    pub htm: String,
    pub htu: String,
}

/// The DPoP machinery of one instance.
pub struct DpopGuard {
    seen: ReplayCache,
    nonce_key: Option<[u8; 32]>,
    checks: AtomicU64,
}

impl DpopGuard {
    /// With server nonces when `nonces` (keyed from the master key).
    pub fn new(master: &crate::keys::MasterKey, nonces: bool) -> Self {
        DpopGuard {
            seen: ReplayCache::new(LOCAL_PROOFS),
            nonce_key: nonces.then(|| master.derive(NONCE_SALT, b"")),
            checks: AtomicU64::new(0),
        }
    }

    fn nonce_for(key: &[u8; 32], bucket: i64) -> String {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!());
        mac.update(&bucket.to_be_bytes());
        let tag = mac.finalize().into_bytes();
        let mut raw = bucket.to_be_bytes().to_vec();
        raw.extend_from_slice(&tag[..16]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// A fresh nonce (any instance of the fleet accepts it), when nonces are on.
    pub fn nonce(&self, now_secs: i64) -> Option<String> {
        let key = self.nonce_key.as_ref()?;
        Some(Self::nonce_for(key, now_secs.div_euclid(NONCE_BUCKET_SECS)))
    }

    /// Whether `nonce` is one this fleet made in this minute or the last.
    fn nonce_ok(&self, nonce: Option<&str>, now_secs: i64) -> bool {
        let Some(key) = self.nonce_key.as_ref() else {
            return true;
        };
        let Some(nonce) = nonce else {
            return false;
        };
        let bucket = now_secs.div_euclid(NONCE_BUCKET_SECS);
        [bucket, bucket - 1].iter().any(|b| {
            let ours = Self::nonce_for(key, *b);
            ours.len() == nonce.len()
                && bool::from(subtle::ConstantTimeEq::ct_eq(
                    ours.as_bytes(),
                    nonce.as_bytes(),
                ))
        })
    }
}

impl Core {
    /// A DPoP proof sent to a token endpoint: checked, nonce and replay
    /// included. `None` when the request carries none.
    pub(super) async fn token_proof(&self, input: &DpopInput) -> Result<Option<Proof>, Error> {
        let refuse = |refusal| Error::Dpop {
            refusal,
            resource: false,
        };
        let proof = match &input.proof {
            None => return Ok(None),
            Some(Err(())) => return Err(refuse(DpopRefusal::Invalid(dpop::DpopError::Malformed))),
            Some(Ok(p)) => p,
        };
        let proof = self.checked_proof(proof, input, None, false)?;
        self.first_use(&proof, false).await?;
        Ok(Some(proof))
    }

    /// Checks a proof against the request and nonce rules, no replay yet.
    pub(super) fn checked_proof(
        &self,
        proof: &str,
        input: &DpopInput,
        access_token: Option<&str>,
        resource: bool,
    ) -> Result<Proof, Error> {
        let now = chrono::Utc::now().timestamp();
        let expect = Expect {
            htm: &input.htm,
            htu: &input.htu,
            access_token,
            now,
        };
        let proof = dpop::verify_proof(proof, &expect).map_err(|e| {
            self.metrics.token_rejected(e.reason());
            Error::Dpop {
                refusal: DpopRefusal::Invalid(e),
                resource,
            }
        })?;
        if !self.dpop.nonce_ok(proof.nonce.as_deref(), now) {
            let fresh = self.dpop.nonce(now).unwrap_or_default();
            return Err(Error::Dpop {
                refusal: DpopRefusal::UseNonce(fresh),
                resource,
            });
        }
        Ok(proof)
    }

    /// The fleet-wide replay check of a proof that passed every other.
    pub(super) async fn first_use(&self, proof: &Proof, resource: bool) -> Result<(), Error> {
        let replayed = Error::Dpop {
            refusal: DpopRefusal::Replayed,
            resource,
        };
        let now = chrono::Utc::now().timestamp();
        if !self
            .dpop
            .seen
            .first_use(&proof.jkt, &proof.jti, proof.iat, now)
        {
            inc(&self.metrics.dpop_replays);
            return Err(replayed);
        }
        // Digest of key and jti: nothing of the proof itself leaves.
        let key = URL_SAFE_NO_PAD.encode(
            Sha256::new()
                .chain_update(proof.jkt.as_bytes())
                .chain_update(b".")
                .chain_update(proof.jti.as_bytes())
                .finalize(),
        );
        // Long enough to outlive the proof's window on both sides of `iat`.
        let expires_at = Timestamp::from_unix_secs(proof.iat + PROOF_WINDOW_SECS + 1);
        let now = Timestamp::from_unix_secs(now);
        let ttl_ms = expires_at.since(now).as_millis().max(1000) as u64;
        let first = match self.bus.first_use(&key, ttl_ms).await {
            Ok(Some(first)) => first,
            Ok(None) if self.store.kind() == "postgres" => {
                let sweep = self
                    .dpop
                    .checks
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(1024);
                self.store
                    .first_proof_use(key, expires_at, now, sweep)
                    .await?
            }
            // The embedded store is one instance: its memory is the fleet's.
            Ok(None) => true,
            Err(e) => {
                tracing::warn!(error = %e, "DPoP replay check unavailable; failing closed");
                return Err(Error::Unavailable(Unavailable::ReplayCheck));
            }
        };
        if !first {
            inc(&self.metrics.dpop_replays);
            return Err(replayed);
        }
        Ok(())
    }

    /// A fresh server nonce to hand out, when nonces are on.
    pub fn dpop_nonce(&self) -> Option<String> {
        self.dpop.nonce(chrono::Utc::now().timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_of_this_minute_and_the_last_pass_and_others_do_not() {
        let master = crate::keys::MasterKey::generate();
        let guard = DpopGuard::new(&master, true);
        let now = 1_800_000_000;
        let nonce = guard.nonce(now).unwrap();
        assert!(guard.nonce_ok(Some(&nonce), now));
        assert!(guard.nonce_ok(Some(&nonce), now + NONCE_BUCKET_SECS));
        assert!(!guard.nonce_ok(Some(&nonce), now + 2 * NONCE_BUCKET_SECS));
        assert!(!guard.nonce_ok(None, now));
        assert!(!guard.nonce_ok(Some("forged"), now));
        // Another fleet's (another master key's) nonce is refused.
        let other = DpopGuard::new(&crate::keys::MasterKey::generate(), true);
        assert!(!guard.nonce_ok(other.nonce(now).as_deref(), now));
        // Off: anything goes, nothing is handed out.
        let off = DpopGuard::new(&master, false);
        assert!(off.nonce_ok(None, now));
        assert!(off.nonce(now).is_none());
    }
}
