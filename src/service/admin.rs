//! Emergency controls, shared by the admin HTTP routes and `recall admin`.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use uuid::Uuid;

use super::{AdminIdentity, Reason, SessionView};
use crate::clock::Timestamp;
use crate::domain::SessionEnd;
use crate::error::{Error, Missing};
use crate::events::{Envelope, Meta, RevokeCause, Stamp};
use crate::keys::generate_signing_key;
use crate::keys::KeyRecord;
use crate::store::{EventFilter, StoreError, UserRecord};
use tokio::sync::broadcast;

pub use crate::domain::DEFAULT_LOCK_SECS;

fn not_found_user(e: StoreError) -> Error {
    match e {
        StoreError::NotFound => Error::NotFound(Missing::User),
        e => e.into(),
    }
}

core_service!(
    /// The emergency controls and the audit log: what `/v1/admin/*` and
    /// `recall admin` do.
    Admin
);

impl Admin {
    /// Creates a user, an admin (role `admin`) or not.
    pub async fn create_user(
        &self,
        username: &str,
        password: String,
        admin: bool,
        meta: &Meta,
    ) -> Result<(Uuid, String), Error> {
        let roles = if admin {
            vec!["admin".to_owned()]
        } else {
            vec![]
        };
        self.core.register(username, password, &roles, meta).await
    }

    /// Checks a bearer for admin rights.
    pub async fn authorize(&self, token: &str) -> Result<AdminIdentity, Error> {
        self.core.authorize_admin(token).await
    }

    /// A user's live sessions.
    pub async fn user_sessions(&self, user_id: Uuid) -> Result<Vec<SessionView>, Error> {
        self.core.live_sessions(user_id).await
    }

    /// Events as this instance applies them, in order (the live audit feed).
    pub fn live_events(&self) -> broadcast::Receiver<Envelope> {
        self.sync.applied()
    }

    /// A user by id or username (`recall admin` accepts either).
    pub async fn find_user(&self, who: &str) -> Result<UserRecord, Error> {
        let found = match Uuid::parse_str(who) {
            Ok(id) => self.store.user_by_id(id).await?,
            Err(_) => self.store.user_by_name(&who.to_lowercase()).await?,
        };
        found.ok_or(Error::NotFound(Missing::User))
    }

    /// A user by (lowercased) username.
    pub async fn user_named(&self, username: &str) -> Result<Option<UserRecord>, Error> {
        Ok(self.store.user_by_name(&username.to_lowercase()).await?)
    }

    /// A user by id.
    pub async fn user(&self, id: Uuid) -> Result<Option<UserRecord>, Error> {
        Ok(self.store.user_by_id(id).await?)
    }

    /// Ends every session of a user; returns (how many, event).
    pub async fn admin_revoke_sessions(
        &self,
        user_id: Uuid,
        reason: Option<Reason>,
        meta: &Meta,
    ) -> Result<(usize, Envelope), Error> {
        let reason = reason.map(Reason::into_string);
        let env = self
            .end_all_sessions(user_id, RevokeCause::Admin, reason, meta)
            .await?;
        Ok((env.event.revoked_sessions().len(), env))
    }

    /// Locks a user for `duration_secs` (default 24 h) and ends every session.
    pub async fn lock_user(
        &self,
        user_id: Uuid,
        duration_secs: Option<i64>,
        reason: Option<Reason>,
        meta: &Meta,
    ) -> Result<Envelope, Error> {
        let now = Timestamp::now();
        let until = crate::domain::lock_until(duration_secs, now)
            .map_err(|(lo, hi)| Error::invalid("duration_secs", format!("{lo} to {hi}")))?;
        let env = self
            .store
            .lock(
                user_id,
                until,
                reason.map(Reason::into_string),
                &Stamp::new(meta, now),
            )
            .await
            .map_err(not_found_user)?;
        self.committed(std::slice::from_ref(&env)).await;
        Ok(env)
    }

    /// Lifts a lock.
    pub async fn unlock_user(&self, user_id: Uuid, meta: &Meta) -> Result<Envelope, Error> {
        let env = self
            .store
            .unlock(user_id, &Stamp::now(meta))
            .await
            .map_err(not_found_user)?;
        self.committed(std::slice::from_ref(&env)).await;
        Ok(env)
    }

    /// Ends any session.
    pub async fn admin_revoke_session(
        &self,
        session_id: Uuid,
        reason: Option<String>,
        meta: &Meta,
    ) -> Result<(), Error> {
        let how = SessionEnd::Revoked {
            cause: RevokeCause::Admin,
            reason,
        };
        self.end_session(session_id, None, how, meta).await
    }

    /// Rotates the signing key. Scheduled: the old key verifies until its
    /// last token expires. Compromised: its tokens die everywhere at once;
    /// sessions survive, so clients refresh onto the new key.
    pub async fn rotate_key(
        &self,
        compromised: bool,
        reason: Option<Reason>,
        meta: &Meta,
    ) -> Result<Envelope, Error> {
        let now = Timestamp::now();
        let key = generate_signing_key(&self.settings.master_key, now)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let previous = crate::domain::rotation(compromised, self.settings.key_retention(), now);
        let env = self
            .store
            .rotate_key(
                &key,
                previous,
                reason.map(Reason::into_string),
                &Stamp::new(meta, now),
            )
            .await?;
        self.sync.reload_keys().await?;
        self.committed(std::slice::from_ref(&env)).await;
        Ok(env)
    }

    /// Every signing key with its status.
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, Error> {
        Ok(self.store.keys().await?)
    }

    /// The audit log, filtered.
    pub async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Envelope>, Error> {
        Ok(self.store.events(filter).await?)
    }
}
