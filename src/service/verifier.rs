//! The read-only verification handle: resolves bearer tokens from the
//! in-memory state with no I/O (the request path, G2-G5). It can reject
//! tokens and nothing else: no store, no signing key, no write path.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use std::sync::Arc;

use super::Principal;
use crate::clock::Timestamp;
use crate::error::{Error, TokenRefusal, Unavailable};
use crate::metrics::{inc, Metrics};
use crate::state::Rejection;
use crate::sync::StateSync;

/// Verifies bearer tokens against the revocation state.
#[derive(Clone)]
pub struct Verifier {
    pub(super) sync: Arc<StateSync>,
    pub(super) metrics: Arc<Metrics>,
}

impl Verifier {
    /// Resolves a bearer token with no I/O: staleness, signature, claims, state.
    pub fn authenticate(&self, token: &str) -> Result<Principal, Error> {
        let now = Timestamp::now();
        if !self.sync.is_fresh(now) {
            inc(&self.metrics.stale_rejections);
            return Err(Error::Unavailable(Unavailable::Stale));
        }
        let verified = self
            .sync
            .keyring()
            .verify_cached(token, now.unix_secs())
            .map_err(|e| {
                self.metrics.token_rejected(e.reason());
                Error::Token(TokenRefusal::Invalid(e))
            })?;
        let (claims, kid) = (&verified.0, &verified.1);
        let checked = self
            .sync
            .state()
            .check(kid, claims.sub, claims.sid, claims.iat, now.ms());
        if let Err(rejection) = checked {
            self.metrics.token_rejected(match rejection {
                Rejection::UserLocked { .. } => "user_locked",
                Rejection::SessionRevoked => "session_revoked",
                Rejection::KeyRevoked => "key_revoked",
                Rejection::KeyRetired => "key_retired",
                Rejection::UnknownKey => "unknown_key",
            });
            return Err(match rejection {
                Rejection::UserLocked { until } => Error::locked(Timestamp::from_ms(until)),
                Rejection::SessionRevoked => Error::Token(TokenRefusal::SessionRevoked),
                Rejection::KeyRevoked => Error::Token(TokenRefusal::KeyRevoked),
                Rejection::KeyRetired => Error::Token(TokenRefusal::KeyRetired),
                Rejection::UnknownKey => Error::Token(TokenRefusal::UnknownKey),
            });
        }
        Ok(Principal {
            user_id: claims.sub,
            session_id: claims.sid,
            verified: verified.clone(),
        })
    }
}
