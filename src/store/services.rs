//! Service credentials: what verifiers and SSF receivers authenticate
//! with. The token is stored only as its SHA-256; creating and ending one
//! are events, so the audit log shows who did it, and an ended one stops
//! working on every instance at the next request (every check reads here).
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use uuid::Uuid;

use super::rows::{commit_one, first};
use super::sql::Row;
use super::work::first_of;
use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::events::{Envelope, Event, Stamp};

/// A service credential as stored (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    pub id: Uuid,
    pub name: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

const SERVICE_COLS: &str = "id, name, created_at, revoked_at";

fn service(r: &Row) -> Result<ServiceRecord, StoreError> {
    Ok(ServiceRecord {
        id: r.uuid(0)?,
        name: r.text(1)?,
        created_at: r.ts(2)?,
        revoked_at: r.opt_ts(3)?,
    })
}

impl Store {
    /// Creates a service credential whose token hashes to `token_hash`.
    pub async fn create_service(
        &self,
        id: Uuid,
        name: &str,
        token_hash: &[u8; 32],
        stamp: &Stamp,
    ) -> Result<Envelope, StoreError> {
        let params = vec![
            id.into(),
            name.into(),
            token_hash.as_slice().into(),
            stamp.at.into(),
        ];
        let event = Event::ServiceCreated {
            service_id: id,
            name: name.to_owned(),
        };
        self.exec_and_append(
            "INSERT INTO services (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)",
            params,
            event,
            stamp,
        )
        .await
    }

    /// Every service credential, oldest first.
    pub async fn services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        let sql = format!("SELECT {SERVICE_COLS} FROM services ORDER BY created_at, id");
        self.rows(sql, vec![], service).await
    }

    /// The live service whose token hashes to `token_hash`, if any.
    pub async fn service_by_token(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<ServiceRecord>, StoreError> {
        let sql = format!(
            "SELECT {SERVICE_COLS} FROM services WHERE token_hash = $1 AND revoked_at IS NULL"
        );
        self.rows(sql, vec![token_hash.as_slice().into()], service)
            .await
            .map(first_of)
    }

    /// Ends a service credential. `NotFound` if there is none; `None` if it
    /// was ended already (idempotent).
    pub async fn revoke_service(
        &self,
        id: Uuid,
        stamp: &Stamp,
    ) -> Result<Option<Envelope>, StoreError> {
        self.write_as(stamp, move |mut tx, stamp| async move {
            let sql = "UPDATE services SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
            let ended = tx.exec(sql, &[id.into(), stamp.at.into()]).await?;
            if ended == 0 {
                let rows = tx
                    .query("SELECT id FROM services WHERE id = $1", &[id.into()])
                    .await?;
                return match first(rows) {
                    Ok(_) => Ok(None),
                    Err(_) => Err(StoreError::NotFound),
                };
            }
            let event = Event::ServiceRevoked { service_id: id };
            commit_one(tx, event, &stamp).await.map(Some)
        })
        .await
    }
}
