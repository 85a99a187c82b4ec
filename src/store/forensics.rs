//! The log as evidence (G14): what a question about a past moment reads.
//! A token's validity at a time depends only on its user's events and the
//! signing keys' events, so that is all that is read, never the whole log.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use uuid::Uuid;

use super::rows::envelope;
use super::{Store, StoreError, EVENT_COLS};
use crate::clock::Timestamp;
use crate::events::Envelope;

impl Store {
    /// The oldest event the log still holds, (seq, at); None for an empty
    /// log. A seq above 1 means older events were pruned.
    pub async fn oldest_event(&self) -> Result<Option<(i64, Timestamp)>, StoreError> {
        self.read(|mut tx| async move {
            let sql = "SELECT seq, at FROM events ORDER BY seq LIMIT 1";
            let rows = tx.query(sql, &[]).await?;
            match rows.first() {
                None => Ok(None),
                Some(r) => Ok(Some((r.int(0)?, r.ts(1)?))),
            }
        })
        .await
    }

    /// The events that can decide whether a token of `user_id` was valid
    /// at `through`: the user's own stamped at or before it, and every
    /// signing-key event (few; those after `through` tell when a key
    /// whose creation the log no longer holds was demoted). In seq order,
    /// through the user index and the type index, both keyed on seq.
    pub async fn deciding_events(
        &self,
        user_id: Uuid,
        through: Timestamp,
    ) -> Result<Vec<Envelope>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLS} FROM events WHERE user_id = $1 AND at <= $2 \
             UNION ALL SELECT {EVENT_COLS} FROM events \
             WHERE type IN ('key_rotated', 'key_retired') ORDER BY seq"
        );
        self.rows(sql, vec![user_id.into(), through.into()], envelope)
            .await
    }
}
