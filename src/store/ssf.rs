//! SSF event streams as the store keeps them: the receiver's configuration
//! (`ssf::StreamConfig`, a JSON column), its status, and its delivery cursor.

use uuid::Uuid;

use super::sql::Row;
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

impl Store {
    /// Stores a new stream.
    pub async fn create_stream(&self, s: &StreamRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO ssf_streams ({COLS}, method) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        let params = [
            s.id.into(),
            s.service_id.into(),
            config_json(&s.config)?.into(),
            s.status.as_str().into(),
            s.reason.clone().into(),
            s.cursor.0.into(),
            s.cursor.1.into(),
            s.created_at.into(),
            s.updated_at.into(),
            s.config.delivery.method().into(),
        ];
        self.write(move |mut tx| async move {
            tx.exec(&sql, &params).await?;
            tx.commit().await
        })
        .await
    }

    /// The streams of one service (receiver), oldest first.
    pub async fn streams_of(&self, service_id: Uuid) -> Result<Vec<StreamRecord>, StoreError> {
        let sql =
            format!("SELECT {COLS} FROM ssf_streams WHERE service_id = $1 ORDER BY created_at, id");
        self.read(move |mut tx| async move {
            let rows = tx.query(&sql, &[service_id.into()]).await?;
            rows.iter().map(stream).collect()
        })
        .await
    }

    /// Every stream (the admin view), oldest first.
    pub async fn all_streams(&self) -> Result<Vec<StreamRecord>, StoreError> {
        let sql = format!("SELECT {COLS} FROM ssf_streams ORDER BY created_at, id");
        self.read(move |mut tx| async move {
            let rows = tx.query(&sql, &[]).await?;
            rows.iter().map(stream).collect()
        })
        .await
    }

    /// One stream, if `service_id` owns it.
    pub async fn stream_of(
        &self,
        service_id: Uuid,
        id: Uuid,
    ) -> Result<Option<StreamRecord>, StoreError> {
        let sql = format!("SELECT {COLS} FROM ssf_streams WHERE id = $1 AND service_id = $2");
        self.read(move |mut tx| async move {
            let rows = tx.query(&sql, &[id.into(), service_id.into()]).await?;
            rows.first().map(stream).transpose()
        })
        .await
    }

    /// Replaces a stream's configuration, status and cursor (the service
    /// decides them; the row must exist and be the service's).
    pub async fn update_stream(&self, s: &StreamRecord) -> Result<(), StoreError> {
        let params = [
            s.id.into(),
            s.service_id.into(),
            config_json(&s.config)?.into(),
            s.status.as_str().into(),
            s.reason.clone().into(),
            s.cursor.0.into(),
            s.cursor.1.into(),
            s.updated_at.into(),
            s.config.delivery.method().into(),
        ];
        self.write(move |mut tx| async move {
            let n = tx
                .exec(
                    "UPDATE ssf_streams SET config = $3, status = $4, reason = $5, cursor_seq = $6, \
                     cursor_index = $7, updated_at = $8, method = $9 WHERE id = $1 AND service_id = $2",
                    &params,
                )
                .await?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            tx.commit().await
        })
        .await
    }

    /// Moves a stream's cursor forward (never back) to `to`.
    pub async fn advance_stream(
        &self,
        id: Uuid,
        to: (i64, i64),
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(move |mut tx| async move {
            tx.exec(
                "UPDATE ssf_streams SET cursor_seq = $2, cursor_index = $3, updated_at = $4 \
                 WHERE id = $1 AND (cursor_seq < $2 OR (cursor_seq = $2 AND cursor_index < $3))",
                &[id.into(), to.0.into(), to.1.into(), now.into()],
            )
            .await?;
            tx.commit().await
        })
        .await
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
        let method = method.to_owned();
        self.read(move |mut tx| async move {
            let rows = tx.query(&sql, &[now.into(), method.into()]).await?;
            rows.iter().map(stream).collect()
        })
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
        let owner = owner.to_owned();
        self.write(move |mut tx| async move {
            let n = tx
                .exec(
                    "UPDATE ssf_streams SET lease_owner = $2, lease_until = $4 WHERE id = $1 \
                     AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $3)",
                    &[id.into(), owner.into(), now.into(), until.into()],
                )
                .await?;
            tx.commit().await?;
            Ok(n == 1)
        })
        .await
    }

    /// Records a delivery attempt's outcome: failures in a row (0 after a
    /// success) and when to try next.
    pub async fn delivery_outcome(
        &self,
        id: Uuid,
        failures: i64,
        next_attempt_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(move |mut tx| async move {
            tx.exec(
                "UPDATE ssf_streams SET failures = $2, next_attempt_at = $3 WHERE id = $1",
                &[id.into(), failures.into(), next_attempt_at.into()],
            )
            .await?;
            tx.commit().await
        })
        .await
    }

    /// Failures in a row of a stream's push delivery.
    pub async fn delivery_failures(&self, id: Uuid) -> Result<i64, StoreError> {
        self.read(move |mut tx| async move {
            let rows = tx
                .query(
                    "SELECT failures FROM ssf_streams WHERE id = $1",
                    &[id.into()],
                )
                .await?;
            rows.first().map_or(Ok(0), |r| r.int(0))
        })
        .await
    }

    /// Deletes a stream of `service_id`.
    pub async fn delete_stream(&self, service_id: Uuid, id: Uuid) -> Result<(), StoreError> {
        self.write(move |mut tx| async move {
            let n = tx
                .exec(
                    "DELETE FROM ssf_streams WHERE id = $1 AND service_id = $2",
                    &[id.into(), service_id.into()],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            tx.commit().await
        })
        .await
    }
}
