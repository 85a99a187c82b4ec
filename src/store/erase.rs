//! Erasing a user (crypto-shredding, `pii`): one write unit ends every
//! session, destroys the user's data key, frees the username and appends
//! `user_erased`. Ids stay, so revocation, the audit trail and the chain
//! over the stored events still work.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use uuid::Uuid;

use super::rows::{commit_one, revoke_all_rows};
use super::{Store, StoreError};
use crate::events::{Envelope, Event, Stamp};

impl Store {
    /// Erases a user: ends every live session (listed in the event, so
    /// every instance's fold rejects their tokens), deletes the data key
    /// (what was sealed under it reads as `None` everywhere from now on),
    /// replaces the username by a tombstone no login can name (the name is
    /// free again), makes the password unusable, forgets the name's
    /// brute-force counts, and appends `user_erased`. `NotFound` for an
    /// unknown user or one already erased.
    pub async fn erase_user(&self, user_id: Uuid, stamp: &Stamp) -> Result<Envelope, StoreError> {
        let vault = self.vault.clone();
        let env = self
            .write_as(stamp, move |mut tx, stamp| async move {
                let sql = "SELECT username FROM users WHERE id = $1 AND erased_at IS NULL";
                let rows = tx.query(sql, &[user_id.into()]).await?;
                let Some(row) = rows.first() else {
                    return Err(StoreError::NotFound);
                };
                let username = row.text(0)?;
                let revoked = revoke_all_rows(&mut *tx, user_id, None, stamp.at).await?;
                // A username has no ':' (`Username`): nobody can register
                // or log in as the tombstone, and it stays unique.
                let tombstone = format!("erased:{user_id}");
                tx.exec(
                    "UPDATE users SET username = $2, password_hash = '!', roles = '', \
                     erased_at = $3 WHERE id = $1",
                    &[user_id.into(), tombstone.into(), stamp.at.into()],
                )
                .await?;
                tx.exec_later(vec![
                    // Sealed already; cleared too (rows from before sealing).
                    (
                        "UPDATE sessions SET device_id = NULL, ip = NULL, user_agent = NULL \
                         WHERE user_id = $1",
                        vec![user_id.into()],
                    ),
                    (
                        "DELETE FROM login_throttle WHERE username = $1",
                        vec![username.into()],
                    ),
                    (
                        "DELETE FROM user_keys WHERE user_id = $1",
                        vec![user_id.into()],
                    ),
                ])
                .await?;
                vault.forget(user_id);
                let event = Event::UserErased {
                    user_id,
                    revoked_session_ids: revoked,
                };
                commit_one(tx, event, &stamp).await
            })
            .await?;
        if self.kind() == "sqlite" {
            self.wal_checkpoint().await;
        }
        Ok(env)
    }

    /// SQLite: copies the WAL into the database and truncates it, so the
    /// old pages of an erased user's rows do not linger in the WAL (their
    /// space in the database is zeroed: `secure_delete`). A reader in the
    /// way leaves it for the next checkpoint; that is logged, not an error.
    async fn wal_checkpoint(&self) {
        let done = self
            .autocommit(|mut tx| async move {
                let rows = tx.query("PRAGMA wal_checkpoint(TRUNCATE)", &[]).await?;
                Ok(rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(0) == 0)
            })
            .await;
        match done {
            Ok(true) => {}
            Ok(false) => tracing::info!("WAL checkpoint after an erasure was busy"),
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint after an erasure failed"),
        }
    }

    /// Turns the sealing of personal data off (`false`) or on: for the
    /// encryption benchmark's baseline only (`examples/bench_pii.rs`).
    #[doc(hidden)]
    pub fn bench_sealing(&self, on: bool) {
        self.vault.set_sealing(on);
    }
}
