//! Client policies: the current policy of each client type, written with
//! the `policy_changed` event that sets it (one transaction), read at
//! login. No row: the settings' defaults.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use super::rows::append;
use super::work::first_of;
use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::domain::Policy;
use crate::events::{Envelope, Event, Stamp};

fn parse(client_type: &str, json: &str) -> Result<Policy, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("policy of {client_type}: {e}")))
}

impl Store {
    /// Every recorded policy, with the seq of the event that set it.
    pub async fn policies(&self) -> Result<Vec<(String, Policy, i64)>, StoreError> {
        let sql = "SELECT client_type, policy, seq FROM policies ORDER BY client_type";
        self.rows(sql.into(), vec![], |r| {
            let client_type = r.text(0)?;
            let policy = parse(&client_type, &r.text(1)?)?;
            Ok((client_type, policy, r.int(2)?))
        })
        .await
    }

    /// The recorded policy of one client type, if any.
    pub async fn policy(&self, client_type: &str) -> Result<Option<Policy>, StoreError> {
        let sql = "SELECT client_type, policy FROM policies WHERE client_type = $1";
        self.rows(sql.into(), vec![client_type.into()], |r| {
            parse(&r.text(0)?, &r.text(1)?)
        })
        .await
        .map(first_of)
    }

    /// Sets a client type's policy: the event and the row, in one transaction.
    pub async fn set_policy(
        &self,
        client_type: &str,
        policy: &Policy,
        stamp: &Stamp,
    ) -> Result<Envelope, StoreError> {
        let json =
            serde_json::to_string(policy).map_err(|e| StoreError::Query(format!("policy: {e}")))?;
        let event = Event::PolicyChanged {
            client_type: client_type.to_owned(),
            policy: policy.clone(),
        };
        let (client_type, stamp) = (client_type.to_owned(), stamp.clone());
        self.write(move |mut tx| async move {
            let env = first_env(append(&mut *tx, vec![event], &stamp).await?)?;
            tx.exec(
                "INSERT INTO policies (client_type, policy, seq, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (client_type) DO UPDATE SET policy = excluded.policy, \
                 seq = excluded.seq, updated_at = excluded.updated_at",
                &[
                    client_type.as_str().into(),
                    json.into(),
                    env.seq.into(),
                    stamp.at.into(),
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(env)
        })
        .await
    }
}

fn first_env(mut envs: Vec<Envelope>) -> Result<Envelope, StoreError> {
    envs.pop()
        .ok_or_else(|| StoreError::Corrupt("append returned nothing".into()))
}

impl Store {
    /// Records the first use of a DPoP proof (`key`: a digest of its key
    /// and `jti`) until `expires_at`; false when it was used before. For a
    /// fleet without Redis: the log's database is then what every instance
    /// shares. Expired entries are swept stamp.at and then by the same call.
    pub async fn first_proof_use(
        &self,
        key: String,
        expires_at: Timestamp,
        now: Timestamp,
        sweep: bool,
    ) -> Result<bool, StoreError> {
        self.autocommit(move |mut conn| async move {
            if sweep {
                let sql = "DELETE FROM dpop_proofs WHERE expires_at < $1";
                conn.exec(sql, &[now.into()]).await?;
            }
            let inserted = conn
                .exec(
                    "INSERT INTO dpop_proofs (key, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (key) DO NOTHING",
                    &[key.into(), expires_at.into()],
                )
                .await?;
            Ok(inserted == 1)
        })
        .await
    }
}
