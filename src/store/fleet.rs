//! The fleet's recorded configuration (G13): one row, written by the first
//! instance and read by every later one; `recall admin set-issuer` changes
//! its issuer together with the event that says so.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use super::rows::{commit_one, first};
use super::sql::Row;
use super::work::first_of;
use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::domain::FleetRecord;
use crate::events::{Envelope, Event, Stamp};

const FLEET_COLS: &str = "issuer, audience, key_fingerprint, previous_issuers";

fn fleet(r: &Row) -> Result<FleetRecord, StoreError> {
    let previous = r.text(3)?;
    Ok(FleetRecord {
        issuer: r.text(0)?,
        audience: r.text(1)?,
        key_fingerprint: r.text(2)?,
        previous_issuers: serde_json::from_str(&previous)
            .map_err(|e| StoreError::Corrupt(format!("fleet.previous_issuers: {e}")))?,
    })
}

fn previous_json(record: &FleetRecord) -> Result<String, StoreError> {
    serde_json::to_string(&record.previous_issuers).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The fleet record after an issuer change, decided from the one in
/// force (None: no change).
pub type IssuerChange = Box<dyn FnOnce(&FleetRecord) -> Option<FleetRecord> + Send>;

impl Store {
    /// Records `ours` as the fleet's configuration unless one is recorded
    /// already, and returns the fleet's (ours when we were first) and
    /// whether we were. Race-safe: of instances starting at once exactly
    /// one insert wins, and every one reads the winner's row back.
    pub async fn record_fleet(
        &self,
        ours: &FleetRecord,
        now: Timestamp,
    ) -> Result<(FleetRecord, bool), StoreError> {
        let params = vec![
            ours.issuer.as_str().into(),
            ours.audience.as_str().into(),
            ours.key_fingerprint.as_str().into(),
            previous_json(ours)?.into(),
            now.into(),
        ];
        let inserted = self
            .exec_alone(
                "INSERT INTO fleet (id, issuer, audience, key_fingerprint, previous_issuers, \
                 recorded_at, updated_at) VALUES (1, $1, $2, $3, $4, $5, $5) \
                 ON CONFLICT (id) DO NOTHING"
                    .into(),
                params,
            )
            .await?;
        let recorded = self.fleet().await?.ok_or_else(|| {
            StoreError::Corrupt("the fleet row is missing right after it was recorded".into())
        })?;
        Ok((recorded, inserted == 1))
    }

    /// The fleet's recorded configuration, if an instance recorded one.
    pub async fn fleet(&self) -> Result<Option<FleetRecord>, StoreError> {
        let sql = format!("SELECT {FLEET_COLS} FROM fleet WHERE id = 1");
        self.rows(sql, vec![], fleet).await.map(first_of)
    }

    /// Changes the fleet's record as `change` (`domain::change_issuer`)
    /// decides from the record as it stands, with its `IssuerChanged` event
    /// in the same transaction. `None` when it decides no change;
    /// `NotFound` when no fleet is recorded.
    pub async fn set_issuer(
        &self,
        change: IssuerChange,
        stamp: &Stamp,
    ) -> Result<Option<Envelope>, StoreError> {
        self.write_as(stamp, move |mut tx, stamp| async move {
            // Takes the row's lock first, so two changes at once apply one
            // after the other and neither loses the other's previous issuer.
            let sql = "UPDATE fleet SET updated_at = $1 WHERE id = 1";
            let locked = tx.exec(sql, &[stamp.at.into()]).await?;
            if locked == 0 {
                return Err(StoreError::NotFound);
            }
            let sql = format!("SELECT {FLEET_COLS} FROM fleet WHERE id = 1");
            let current = fleet(&first(tx.query(&sql, &[]).await?)?)?;
            let Some(changed) = change(&current) else {
                return Ok(None);
            };
            tx.exec(
                "UPDATE fleet SET issuer = $1, previous_issuers = $2 WHERE id = 1",
                &[
                    changed.issuer.as_str().into(),
                    previous_json(&changed)?.into(),
                ],
            )
            .await?;
            let event = Event::IssuerChanged {
                issuer: changed.issuer,
                previous: current.issuer,
            };
            commit_one(tx, event, &stamp).await.map(Some)
        })
        .await
    }
}
