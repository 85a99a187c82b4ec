//! SSF event streams as the store keeps them: the receiver's configuration
//! (`ssf::StreamConfig`, a JSON column), its status, and its delivery cursor.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use uuid::Uuid;

use super::sql::{Row, Val};
use super::work::first_of;
use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::ssf::StreamConfig;

/// One stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    pub id: Uuid,
    /// The service credential that registered it (and alone manages it).
    pub service_id: Uuid,
    /// The receiver-facing configuration (SSF 1.0 stream configuration).
    pub config: StreamConfig,
    /// `enabled`, `paused` or `disabled`.
    pub status: String,
    pub reason: Option<String>,
    /// The last (seq, index) delivered or acknowledged.
    pub cursor: (i64, i64),
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A configuration as its column holds it.
fn config_json(config: &StreamConfig) -> Result<String, StoreError> {
    serde_json::to_string(config).map_err(|e| StoreError::Corrupt(format!("stream config: {e}")))
}

const COLS: &str =
    "id, service_id, config, status, reason, cursor_seq, cursor_index, created_at, updated_at";

fn stream(r: &Row) -> Result<StreamRecord, StoreError> {
    let config = serde_json::from_str(&r.text(2)?)
        .map_err(|e| StoreError::Corrupt(format!("stream config: {e}")))?;
    Ok(StreamRecord {
        id: r.uuid(0)?,
        service_id: r.uuid(1)?,
        config,
        status: r.text(3)?,
        reason: r.opt_text(4)?,
        cursor: (r.int(5)?, r.int(6)?),
        created_at: r.ts(7)?,
        updated_at: r.ts(8)?,
    })
}

/// What a write of `s` sets: id, service_id, config, status, reason,
/// cursor_seq, cursor_index, updated_at, method (`$1` to `$9`).
fn written(s: &StreamRecord) -> Result<Vec<Val>, StoreError> {
    Ok(vec![
        s.id.into(),
        s.service_id.into(),
        config_json(&s.config)?.into(),
        s.status.as_str().into(),
        s.reason.clone().into(),
        s.cursor.0.into(),
        s.cursor.1.into(),
        s.updated_at.into(),
        s.config.delivery.method().into(),
    ])
}

/// `Ok` when a statement changed a row, else `NotFound`.
fn found(changed: u64) -> Result<(), StoreError> {
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

impl Store {
    /// Stores a new stream.
    pub async fn create_stream(&self, s: &StreamRecord) -> Result<(), StoreError> {
        let mut params = written(s)?;
        params.push(s.created_at.into());
        self.exec_alone(
            "INSERT INTO ssf_streams (id, service_id, config, status, reason, cursor_seq, \
             cursor_index, updated_at, method, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                .into(),
            params,
        )
        .await
        .map(drop)
    }

    /// The streams of one service (receiver), oldest first.
    pub async fn streams_of(&self, service_id: Uuid) -> Result<Vec<StreamRecord>, StoreError> {
        let sql =
            format!("SELECT {COLS} FROM ssf_streams WHERE service_id = $1 ORDER BY created_at, id");
        self.rows(sql, vec![service_id.into()], stream).await
    }

    /// Every stream (the admin view), oldest first.
    pub async fn all_streams(&self) -> Result<Vec<StreamRecord>, StoreError> {
        let sql = format!("SELECT {COLS} FROM ssf_streams ORDER BY created_at, id");
        self.rows(sql, vec![], stream).await
    }

    /// One stream, if `service_id` owns it.
    pub async fn stream_of(
        &self,
        service_id: Uuid,
        id: Uuid,
    ) -> Result<Option<StreamRecord>, StoreError> {
        let sql = format!("SELECT {COLS} FROM ssf_streams WHERE id = $1 AND service_id = $2");
        self.rows(sql, vec![id.into(), service_id.into()], stream)
            .await
            .map(first_of)
    }

    /// Replaces a stream's configuration, status and cursor (the service
    /// decides them; the row must exist and be the service's).
    pub async fn update_stream(&self, s: &StreamRecord) -> Result<(), StoreError> {
        let changed = self
            .exec_alone(
                "UPDATE ssf_streams SET config = $3, status = $4, reason = $5, cursor_seq = $6, \
                 cursor_index = $7, updated_at = $8, method = $9 WHERE id = $1 AND service_id = $2"
                    .into(),
                written(s)?,
            )
            .await?;
        found(changed)
    }

    /// Moves a stream's cursor forward (never back) to `to`.
    pub async fn advance_stream(
        &self,
        id: Uuid,
        to: (i64, i64),
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.exec_alone(
            "UPDATE ssf_streams SET cursor_seq = $2, cursor_index = $3, updated_at = $4 \
             WHERE id = $1 AND (cursor_seq < $2 OR (cursor_seq = $2 AND cursor_index < $3))"
                .into(),
            vec![id.into(), to.0.into(), to.1.into(), now.into()],
        )
        .await
        .map(drop)
    }

    /// Enabled streams delivered by `method` whose next attempt is due at `now`.
    pub async fn due_streams(
        &self,
        method: &str,
        now: Timestamp,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLS} FROM ssf_streams WHERE status = 'enabled' AND next_attempt_at <= $1 \
             AND method = $2 ORDER BY id"
        );
        self.rows(sql, vec![now.into(), method.into()], stream)
            .await
    }

    /// Takes (or renews) the delivery lease of a stream for `owner` until
    /// `until`, unless another owner holds an unexpired one.
    pub async fn take_lease(
        &self,
        id: Uuid,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let taken = self
            .exec_alone(
                "UPDATE ssf_streams SET lease_owner = $2, lease_until = $4 WHERE id = $1 \
                 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $3)"
                    .into(),
                vec![id.into(), owner.into(), now.into(), until.into()],
            )
            .await?;
        Ok(taken == 1)
    }

    /// Records a delivery attempt's outcome: failures in a row (0 after a
    /// success) and when to try next.
    pub async fn delivery_outcome(
        &self,
        id: Uuid,
        failures: i64,
        next_attempt_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.exec_alone(
            "UPDATE ssf_streams SET failures = $2, next_attempt_at = $3 WHERE id = $1".into(),
            vec![id.into(), failures.into(), next_attempt_at.into()],
        )
        .await
        .map(drop)
    }

    /// Failures in a row of a stream's push delivery.
    pub async fn delivery_failures(&self, id: Uuid) -> Result<i64, StoreError> {
        let sql = "SELECT failures FROM ssf_streams WHERE id = $1".to_owned();
        let failures = self
            .rows(sql, vec![id.into()], |r| r.int(0))
            .await
            .map(first_of)?;
        Ok(failures.unwrap_or(0))
    }

    /// Deletes a stream of `service_id`.
    pub async fn delete_stream(&self, service_id: Uuid, id: Uuid) -> Result<(), StoreError> {
        let deleted = self
            .exec_alone(
                "DELETE FROM ssf_streams WHERE id = $1 AND service_id = $2".into(),
                vec![id.into(), service_id.into()],
            )
            .await?;
        found(deleted)
    }
}
