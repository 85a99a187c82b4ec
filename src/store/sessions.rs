//! Sessions after login: finding one (by id or by a refresh token), a
//! user's live sessions, and ending one, all of a user's, or all but one.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use uuid::Uuid;

use super::pii;
use super::rows::{commit_one, require_user, revoke_all_rows, session, session_in};
use super::{EndRule, SessionRecord};
use super::{Store, StoreError, SESSION_COLS};
use crate::clock::Timestamp;
use crate::domain::EndDecision;
use crate::events::{Envelope, Event, RevokeCause, Stamp};

impl Store {
    /// The session a refresh token belongs to, if the token was ever issued.
    pub async fn session_by_refresh(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<SessionRecord>, StoreError> {
        let hash = *hash;
        self.read(move |mut tx| async move {
            let sql = "SELECT session_id FROM refresh_tokens WHERE hash = $1";
            let rows = tx.query(sql, &[hash.as_slice().into()]).await?;
            match rows.first() {
                None => Ok(None),
                Some(r) => session_in(&mut *tx, r.uuid(0)?).await,
            }
        })
        .await
    }

    /// One session by id, revoked or not.
    pub async fn session(&self, id: Uuid) -> Result<Option<SessionRecord>, StoreError> {
        self.read(move |mut tx| async move { session_in(&mut *tx, id).await })
            .await
    }

    /// The user's sessions that are neither revoked nor past their refresh
    /// lifetime, their personal fields opened. Each with when it was last used: its newest refresh token's issue time.
    pub async fn live_sessions(
        &self,
        user_id: Uuid,
        now: Timestamp,
    ) -> Result<Vec<(SessionRecord, Timestamp)>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLS}, \
             (SELECT MAX(r.issued_at) FROM refresh_tokens r WHERE r.session_id = sessions.id) \
             FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
             AND refresh_expires_at > $2 ORDER BY created_at, id"
        );
        self.read(move |mut tx| async move {
            let rows = tx.query(&sql, &[user_id.into(), now.into()]).await?;
            let mut live = rows
                .iter()
                .map(|r| {
                    let s = session(r)?;
                    let used = r.opt_ts(10)?.unwrap_or(s.created_at);
                    Ok((s, used))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let mut records: Vec<_> = live.iter_mut().map(|(s, _)| s).collect();
            pii::open_sessions(&mut *tx, &mut records).await?;
            Ok(live)
        })
        .await
    }

    /// Ends one session as `decide` (`domain::end_session`) says of the row
    /// as it stands: `NotFound`, `Ok(None)` when it had ended already
    /// (idempotent), or the event.
    pub async fn revoke_session(
        &self,
        session_id: Uuid,
        decide: EndRule,
        stamp: &Stamp,
    ) -> Result<Option<Envelope>, StoreError> {
        self.write_as(stamp, move |mut tx, stamp| async move {
            let found = session_in(&mut *tx, session_id).await?;
            match decide(found.as_ref()) {
                EndDecision::NotFound => Err(StoreError::NotFound),
                EndDecision::AlreadyEnded => Ok(None),
                EndDecision::End(event) => {
                    // The row decides: of two revocations racing (on
                    // PostgreSQL both may read it live), only the one whose
                    // update takes it appends; the other changes nothing.
                    let sql =
                        "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
                    let taken = tx.exec(sql, &[session_id.into(), stamp.at.into()]).await?;
                    if taken == 0 {
                        return Ok(None);
                    }
                    commit_one(tx, event, &stamp).await.map(Some)
                }
            }
        })
        .await
    }

    /// Ends every live session of a user at once (the per-user cut-off).
    pub async fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        cause: RevokeCause,
        reason: Option<String>,
        stamp: &Stamp,
    ) -> Result<Envelope, StoreError> {
        self.revoke_other_sessions(user_id, None, cause, reason, stamp)
            .await
    }

    /// Ends every live session of a user but `keep` (logout-others).
    pub async fn revoke_other_sessions(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        cause: RevokeCause,
        reason: Option<String>,
        stamp: &Stamp,
    ) -> Result<Envelope, StoreError> {
        self.write_as(stamp, move |mut tx, stamp| async move {
            require_user(&mut *tx, user_id).await?;
            let session_ids = revoke_all_rows(&mut *tx, user_id, keep, stamp.at).await?;
            let event = Event::UserSessionsRevoked {
                user_id,
                session_ids,
                cause,
                reason,
            };
            commit_one(tx, event, &stamp).await
        })
        .await
    }
}
