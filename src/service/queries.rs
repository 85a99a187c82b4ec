//! What the HTTP side and the CLI ask of the core besides the write path:
//! readiness, metrics, public keys, token revocation by its holder, the
//! caller's sessions, admin rights, and the live event feed. They never
//! reach into the store or the sync machinery themselves.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use std::time::Duration;

use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{refresh_hash, Core};
use crate::clock::Timestamp;
use crate::domain::SessionEnd;
use crate::error::Error;
use crate::events::{Meta, RevokeCause};
use crate::metrics::Gauges;
use crate::state::KeyStatus;
use crate::store::SessionRecord;

/// What `/readyz` reports.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// Why this instance is not ready; `None` when it is.
    pub reason: Option<String>,
    pub caught_up_seq: i64,
    /// The log's head, when the store answered.
    pub head_seq: Option<i64>,
    pub staleness_ms: i64,
    pub max_staleness_ms: i64,
    pub store: &'static str,
    pub bus: &'static str,
    pub bus_connected: bool,
}

/// A live session as users and admins see it.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub session: SessionRecord,
    /// When it last logged in or refreshed.
    pub last_used_at: Timestamp,
    /// When it ends at the latest, refreshed or not.
    pub expires_at: Timestamp,
}

/// Who holds admin rights, and for how long.
#[derive(Debug, Clone)]
pub struct AdminIdentity {
    /// `admin-token` or `admin:<user id>`.
    pub actor: String,
    /// The user's access token, for an admin by role (rights can end).
    pub bearer: Option<String>,
    /// When that token expires (Unix seconds, no leeway).
    pub expires_at: Option<Timestamp>,
}

impl Core {
    /// Readiness: caught up within the staleness bound, the store answers,
    /// and the log is not behind this instance (G5, G9).
    pub async fn readiness(&self) -> Readiness {
        let now = Timestamp::now();
        let staleness_ms = self.sync.staleness_ms(now);
        let caught_up_seq = self.sync.state().last_seq();
        let head = tokio::time::timeout(Duration::from_secs(2), self.store.head()).await;
        let head_seq = match head {
            Ok(Ok(h)) => Some(h),
            _ => None,
        };
        if let Some(h) = head_seq.filter(|h| *h < caught_up_seq) {
            // Ahead of the log (G9): fail closed now; the poller rebuilds.
            self.sync.note_regression(h, caught_up_seq);
        }
        let reason = match (head_seq, self.sync.is_fresh(now), self.sync.regression()) {
            (_, _, Some(r)) => Some(r),
            (None, _, None) => Some("the store does not answer".to_owned()),
            (Some(_), false, None) => {
                Some("not caught up with the log within RECALL_MAX_STALENESS_MS".to_owned())
            }
            (Some(_), true, None) => None,
        };
        Readiness {
            reason,
            caught_up_seq,
            head_seq,
            staleness_ms,
            max_staleness_ms: self.settings.max_staleness_ms,
            store: self.store.kind(),
            bus: self.bus.kind(),
            bus_connected: self.sync.bus_connected(),
        }
    }

    /// The metrics exposition (OpenMetrics text).
    pub fn metrics_text(&self) -> String {
        let now = Timestamp::now();
        let (revoked, locks, _) = self.sync.state().sizes();
        let pool = self.hasher.stats();
        let batches = self.store.write_batches();
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.render(&Gauges {
            staleness_ms: self.sync.staleness_ms(now),
            last_seq: self.sync.state().last_seq(),
            revoked_sessions: revoked,
            locks,
            ready: self.sync.is_fresh(now),
            hash_running: pool.running.load(Relaxed),
            hash_running_max: pool.running_max.load(Relaxed),
            hash_admitted: pool.admitted.load(Relaxed),
            hash_workers: self.hasher.workers(),
            hash_rejected: pool.rejected.load(Relaxed),
            hash_abandoned: pool.abandoned.load(Relaxed),
            followers: self.sync.followers(),
            write_batches: batches.batches,
            write_units: batches.units,
        })
    }

    /// The public keys that verify tokens now (`active` and `verifying`):
    /// `(kid, raw Ed25519 public key)`.
    pub fn verifying_keys(&self) -> Vec<(String, Vec<u8>)> {
        let keys = self.sync.state().keys(Timestamp::now().ms());
        keys.into_iter()
            .filter(|(_, s)| matches!(s, KeyStatus::Active | KeyStatus::Verifying))
            .filter_map(|(kid, _)| {
                let public = self.sync.keyring().public_key(&kid)?;
                Some((kid, public))
            })
            .collect()
    }

    /// RFC 7009: the holder of a token ends its session. An access token's
    /// signature proves the holder may, if its key still counts (a revoked
    /// or retired key proves nothing); a refresh token by its hash.
    /// Anything else ends nothing, silently.
    pub(super) async fn revoke_token(&self, token: &str, meta: &Meta) -> Result<(), Error> {
        let session = if token.matches('.').count() == 2 {
            self.sync
                .keyring()
                .verify(token)
                .ok()
                .filter(|(_, kid)| {
                    matches!(
                        self.sync.state().key_status(kid, Timestamp::now().ms()),
                        Some(KeyStatus::Active | KeyStatus::Verifying)
                    )
                })
                .map(|(c, _)| c.sid)
        } else {
            self.store
                .session_by_refresh(&refresh_hash(token))
                .await?
                .map(|s| s.id)
        };
        let Some(sid) = session else {
            return Ok(());
        };
        let how = SessionEnd::Revoked {
            cause: RevokeCause::TokenRevocation,
            reason: None,
        };
        match self.end_session(sid, None, how, meta).await {
            Ok(()) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A user's live sessions: not revoked, and neither past their refresh
    /// lifetime nor their absolute lifetime (`RECALL_SESSION_MAX_SECS`).
    pub(super) async fn live_sessions(&self, user_id: Uuid) -> Result<Vec<SessionView>, Error> {
        let now = Timestamp::now();
        let list = self.store.live_sessions(user_id, now).await?;
        Ok(list
            .into_iter()
            .map(|(s, last_used_at)| SessionView {
                expires_at: s.refresh_expires_at.min(
                    s.created_at.plus(
                        s.terms
                            .session_max()
                            .unwrap_or(super::secs(self.settings.session_max_secs)),
                    ),
                ),
                last_used_at,
                session: s,
            })
            .filter(|v| v.expires_at > now)
            .collect())
    }

    /// Checks a bearer for admin rights: the bootstrap token (compared in
    /// constant time), or an access token of a user with role `admin`.
    pub(super) async fn authorize_admin(&self, token: &str) -> Result<AdminIdentity, Error> {
        if let Some(expected) = &self.settings.admin_token {
            if bool::from(expected.as_bytes().ct_eq(token.as_bytes())) {
                return Ok(AdminIdentity {
                    actor: "admin-token".into(),
                    bearer: None,
                    expires_at: None,
                });
            }
        }
        let principal = self.authenticate(token)?;
        match self.store.user_by_id(principal.user_id).await? {
            Some(u) if u.is_admin() => Ok(AdminIdentity {
                actor: format!("admin:{}", u.id),
                bearer: Some(token.to_owned()),
                expires_at: Some(Timestamp::from_unix_secs(principal.claims().exp)),
            }),
            _ => Err(Error::NotAdmin),
        }
    }
}
