//! Signing-key rows: the first key, rotations and retirement. Each change
//! takes the log lock first, so racing instances serialise.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use super::rows::{append, commit_one, insert_key, query_keys};
use super::{Store, StoreError};
use crate::domain::PreviousKey;
use crate::events::{Envelope, Event, Stamp};
use crate::keys::KeyRecord;

impl Store {
    /// Every signing key, newest first.
    pub async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.read(|mut tx| async move { query_keys(&mut *tx, "").await })
            .await
    }

    /// Installs `key` as the first active key unless one exists already
    /// (instances starting together race here; one wins).
    pub async fn ensure_active_key(
        &self,
        key: &KeyRecord,
        stamp: &Stamp,
    ) -> Result<Option<Envelope>, StoreError> {
        let (key, stamp) = (key.clone(), stamp.clone());
        self.write(move |mut tx| async move {
            // Two starting instances serialise here: every write batch
            // takes the log's counter row first (`batch`).
            let active = query_keys(&mut *tx, "WHERE status = 'active'").await?;
            if !active.is_empty() {
                return Ok(None);
            }
            insert_key(&mut *tx, &key).await?;
            let event = Event::KeyRotated {
                kid: key.kid.clone(),
                previous_kid: None,
                compromised: false,
                previous_retire_after: None,
                reason: Some("initial key".to_owned()),
            };
            commit_one(tx, event, &stamp).await.map(Some)
        })
        .await
    }

    /// Makes `key` the active key; the previous one becomes what the
    /// rotation decided (`domain::rotation`).
    pub async fn rotate_key(
        &self,
        key: &KeyRecord,
        previous: PreviousKey,
        reason: Option<String>,
        stamp: &Stamp,
    ) -> Result<Envelope, StoreError> {
        let (key, stamp) = (key.clone(), stamp.clone());
        self.write(move |mut tx| async move {
            let active = query_keys(&mut *tx, "WHERE status = 'active'").await?;
            let previous_kid = active.first().map(|k| k.kid.clone());
            tx.exec(
                "UPDATE signing_keys SET status = $1, retire_after = $2 WHERE status = 'active'",
                &[
                    previous.status().as_str().into(),
                    previous.retire_after().into(),
                ],
            )
            .await?;
            insert_key(&mut *tx, &key).await?;
            let event = Event::KeyRotated {
                kid: key.kid.clone(),
                previous_kid,
                compromised: previous == PreviousKey::Revoked,
                previous_retire_after: previous.retire_after(),
                reason,
            };
            commit_one(tx, event, &stamp).await
        })
        .await
    }

    /// Retires verifying keys whose tokens have all expired; one event each.
    pub async fn retire_keys(&self, stamp: &Stamp) -> Result<Vec<Envelope>, StoreError> {
        self.write_as(stamp, move |mut tx, stamp| async move {
            let due = tx
                .query(
                    "UPDATE signing_keys SET status = 'retired' WHERE status = 'verifying' \
                 AND retire_after <= $1 RETURNING kid",
                    &[stamp.at.into()],
                )
                .await?;
            if due.is_empty() {
                return Ok(Vec::new());
            }
            let mut events = Vec::new();
            for row in &due {
                events.push(Event::KeyRetired { kid: row.text(0)? });
            }
            let envs = append(&mut *tx, events, &stamp).await?;
            tx.commit().await?;
            Ok(envs)
        })
        .await
    }
}
