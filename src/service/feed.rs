//! The revocation feed (API.md "Revocation feed"): what verifiers fold.
//! It is read from the log by cursor, so any instance serves it, before
//! and after a restart, and a verifier resumes anywhere by seq. A new
//! verifier gets the revocation window (what can still reject a token),
//! never the whole log. Items carry ids only.
//!
//! Service credentials live here too: a service may read the feed and
//! introspect tokens, and nothing else.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use uuid::Uuid;

use super::{refresh_hash, AdminIdentity};
use crate::clock::Timestamp;
use crate::error::{Error, Missing, TokenRefusal};
use crate::events::{Meta, Stamp};
use crate::state::{items, window_items, Revocation};
use crate::store::ServiceRecord;
use crate::tokens::b64url;

/// Prefix of service tokens, so a leaked one is recognisable in logs and
/// by secret scanners.
pub const SERVICE_TOKEN_PREFIX: &str = "rcs_";

/// Most items of one page.
pub const MAX_PAGE: i64 = 1000;

/// One page of the feed.
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub items: Vec<Revocation>,
    /// The log's head when the page was read.
    pub head_seq: i64,
    /// Pass as `after` for the next page.
    pub next_after: i64,
    /// How long a revocation matters (the longest token life plus leeway).
    pub retention_ms: i64,
}

/// Who may read the feed: a service credential, or an admin.
#[derive(Debug, Clone)]
pub enum FeedCaller {
    Service(ServiceRecord),
    Admin(AdminIdentity),
}

core_service!(
    /// The feed and the service credentials.
    Feed
);

impl Feed {
    /// Checks a bearer for feed rights: a live service credential, or admin.
    pub async fn authorize(&self, token: &str) -> Result<FeedCaller, Error> {
        if token.starts_with(SERVICE_TOKEN_PREFIX) {
            return match self.store.service_by_token(&refresh_hash(token)).await? {
                Some(s) => Ok(FeedCaller::Service(s)),
                None => Err(Error::Token(TokenRefusal::UnknownService)),
            };
        }
        self.core
            .authorize_admin(token)
            .await
            .map(FeedCaller::Admin)
    }

    /// A client authenticated as RFC 6749 section 2.3.1 says: `id` (HTTP
    /// Basic's user or the form's `client_id`) must name the service whose
    /// token `secret` is; with no id, `secret` is a bearer credential (a
    /// service token, or an admin's).
    pub async fn authorize_client(
        &self,
        id: Option<&str>,
        secret: &str,
    ) -> Result<FeedCaller, Error> {
        let Some(id) = id else {
            return self.authorize(secret).await;
        };
        match self.authorize(secret).await {
            Ok(FeedCaller::Service(s)) if s.id.to_string().eq_ignore_ascii_case(id.trim()) => {
                Ok(FeedCaller::Service(s))
            }
            Ok(_) | Err(Error::Token(_)) | Err(Error::NotAdmin) => {
                Err(Error::Token(TokenRefusal::UnknownService))
            }
            Err(e) => Err(e),
        }
    }

    /// The page after `after`: the revocation window when `after` is 0,
    /// else the items of up to `limit` log events after it.
    pub async fn page(&self, after: i64, limit: i64) -> Result<FeedPage, Error> {
        let retention_ms = self.settings.retention_ms();
        if after <= 0 {
            let now = Timestamp::now();
            let window_start =
                now.minus(std::time::Duration::from_millis(retention_ms.max(0) as u64));
            let snapshot = self.store.snapshot(window_start, now).await?;
            return Ok(FeedPage {
                items: window_items(&snapshot, now),
                head_seq: snapshot.standing.head,
                next_after: snapshot.standing.head,
                retention_ms,
            });
        }
        let head_seq = self.store.head().await?;
        let events = self
            .store
            .read_after(after, limit.clamp(1, MAX_PAGE))
            .await?;
        let next_after = events.last().map_or(after.min(head_seq), |e| e.seq);
        Ok(FeedPage {
            items: events.iter().flat_map(items).collect(),
            head_seq: head_seq.max(next_after),
            next_after,
            retention_ms,
        })
    }

    /// Log events after `after` (up to `limit`), each with its items (the
    /// stream sends one message per event that has any).
    pub async fn events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Vec<Revocation>)>, Error> {
        let events = self.store.read_after(after, limit).await?;
        Ok(events.iter().map(|e| (e.seq, items(e))).collect())
    }

    /// The log's head.
    pub async fn head(&self) -> Result<i64, Error> {
        Ok(self.store.head().await?)
    }

    /// Wakes when this instance applies an event (from here or the fleet).
    pub fn wake(&self) -> tokio::sync::broadcast::Receiver<crate::events::Envelope> {
        self.sync.applied()
    }

    /// Creates a service credential; the token is returned once, here.
    pub async fn create_service(
        &self,
        name: &str,
        meta: &Meta,
    ) -> Result<(ServiceRecord, String), Error> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::invalid("name", "1 to 100 characters"));
        }
        let secret: [u8; 32] = crate::random::bytes();
        let token = format!("{SERVICE_TOKEN_PREFIX}{}", b64url(&secret));
        let id = Uuid::now_v7();
        let now = Timestamp::now();
        let env = self
            .store
            .create_service(id, name, &refresh_hash(&token), &Stamp::new(meta, now))
            .await?;
        self.committed(&[env]).await;
        let record = ServiceRecord {
            id,
            name: name.to_owned(),
            created_at: now,
            revoked_at: None,
        };
        Ok((record, token))
    }

    /// Every service credential (never a token).
    pub async fn services(&self) -> Result<Vec<ServiceRecord>, Error> {
        Ok(self.store.services().await?)
    }

    /// Ends a service credential everywhere (idempotent).
    pub async fn revoke_service(&self, id: Uuid, meta: &Meta) -> Result<(), Error> {
        let ended = self.store.revoke_service(id, &Stamp::now(meta)).await;
        self.committed_if_any(ended, Missing::Service).await
    }
}
