//! The brute-force budget (G10): guesses are reserved before their hash is
//! checked, failures recorded, and a username locked once its budget of
//! consecutive failures is spent; a password change's wrong guesses count
//! the same way and revoke the session that sends too many.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use uuid::Uuid;

use super::rows::{append, commit_one, first, revoke_session_rows};
use super::sql::Tx;
use super::{Guess, GuessRules, Store, StoreError, Throttle};
use crate::clock::Timestamp;
use crate::domain::Reservation;
use crate::events::{Envelope, Event, RevokeCause, Stamp};

/// Wrong current passwords in a row that revoke the session sending them.
pub const PASSWORD_FAILURES_PER_SESSION: i64 = 5;

/// Locks a username for the `nth` time, until `until`.
async fn lock_throttle(
    tx: &mut dyn Tx,
    username: &str,
    nth: i64,
    until: Timestamp,
) -> Result<(), StoreError> {
    let sql = "UPDATE login_throttle SET failures = 0, lock_count = $2, locked_until = $3 WHERE username = $1";
    tx.exec(sql, &[username.into(), nth.into(), until.into()])
        .await?;
    Ok(())
}

/// The event of a reserved guess that failed; locks the username when the
/// reserved count has reached the budget and no lock is in force.
async fn guess_failed_in(
    tx: &mut dyn Tx,
    username: &str,
    rules: &GuessRules,
    now: Timestamp,
) -> Result<Event, StoreError> {
    // Row-locking read of the counts as they stand now.
    let rows = tx
        .query(
            "UPDATE login_throttle SET failures = failures WHERE username = $1 \
             RETURNING failures, lock_count, locked_until",
            &[username.into()],
        )
        .await?;
    let (failures, lock_count, current_lock) = match rows.first() {
        Some(r) => (r.int(0)?, r.int(1)?, r.opt_ts(2)?),
        // A success cleared the counts meanwhile; count this one afresh
        // (upserting: a concurrent failure may have counted afresh first).
        None => {
            let row = first(
                tx.query(
                    "INSERT INTO login_throttle (username, failures, lock_count) VALUES ($1, 1, 0) \
                     ON CONFLICT (username) DO UPDATE SET failures = login_throttle.failures + 1 \
                     RETURNING failures, lock_count, locked_until",
                    &[username.into()],
                )
                .await?,
            )?;
            (row.int(0)?, row.int(1)?, row.opt_ts(2)?)
        }
    };
    let mut locked_until = None;
    if let Some((nth, until)) =
        (rules.after_failure)(failures, lock_count, current_lock, &rules.policy, now)
    {
        lock_throttle(tx, username, nth, until).await?;
        locked_until = Some(until);
    }
    Ok(Event::LoginFailed {
        username: Some(username.to_owned()),
        user_id: None,
        failures,
        locked_until,
    })
}

impl Store {
    /// The brute-force counters of a username.
    pub async fn throttle(&self, username: &str) -> Result<Throttle, StoreError> {
        let username = username.to_owned();
        self.read(move |mut tx| async move {
            let sql =
                "SELECT failures, lock_count, locked_until FROM login_throttle WHERE username = $1";
            let rows = tx.query(sql, &[username.into()]).await?;
            match rows.first() {
                None => Ok(Throttle::default()),
                Some(r) => Ok(Throttle {
                    failures: r.int(0)?,
                    lock_count: r.int(1)?,
                    locked_until: r.opt_ts(2)?,
                }),
            }
        })
        .await
    }

    /// Reserves one guess of `username`'s brute-force budget before its
    /// hash is checked (G10): the count goes up first, atomically, so
    /// parallel guesses on any number of instances cannot all slip in. A
    /// lock in force refuses; a guess past the budget locks the username
    /// now and refuses too. Known and unknown usernames alike.
    pub async fn reserve_guess(
        &self,
        username: &str,
        rules: &GuessRules,
        stamp: &Stamp,
    ) -> Result<Guess, StoreError> {
        // The common case is one autocommit statement: count the guess
        // unless a lock is in force (the upsert locks the row, so parallel
        // guesses each get their own count).
        let (name, now) = (username.to_owned(), stamp.at);
        let row = self
            .autocommit(move |mut conn| async move {
                first(
                    conn.query(
                        "INSERT INTO login_throttle (username, failures, lock_count) VALUES ($1, 1, 0) \
                         ON CONFLICT (username) DO UPDATE SET failures = CASE \
                         WHEN login_throttle.locked_until > $2 THEN login_throttle.failures \
                         ELSE login_throttle.failures + 1 END \
                         RETURNING failures, locked_until",
                        &[name.into(), now.into()],
                    )
                    .await?,
                )
            })
            .await?;
        let failures = row.int(0)?;
        // Past the budget, lock (once: of several guesses past it at once,
        // the first to lock the row decides, the others see its lock).
        match (rules.after_reservation)(failures, 0, row.opt_ts(1)?, &rules.policy, stamp.at) {
            Reservation::Reserved => return Ok(Guess::Reserved),
            Reservation::Locked { until } => return Ok(Guess::Locked { until, event: None }),
            Reservation::LockNow { .. } => {}
        };
        let (username, rules, stamp) = (username.to_owned(), *rules, stamp.clone());
        self.write(move |mut tx| async move {
            let username = username.as_str();
            let row = first(
                tx.query(
                    "UPDATE login_throttle SET failures = failures WHERE username = $1 \
                 RETURNING failures, lock_count, locked_until",
                    &[username.into()],
                )
                .await?,
            )?;
            let (nth, until) = match (rules.after_reservation)(
                failures,
                row.int(1)?,
                row.opt_ts(2)?,
                &rules.policy,
                stamp.at,
            ) {
                Reservation::LockNow { nth, until } => (nth, until),
                Reservation::Locked { until } => return Ok(Guess::Locked { until, event: None }),
                Reservation::Reserved => return Ok(Guess::Reserved),
            };
            lock_throttle(&mut *tx, username, nth, until).await?;
            let event = Event::LoginFailed {
                username: Some(username.to_owned()),
                user_id: None,
                failures,
                locked_until: Some(until),
            };
            let event = commit_one(tx, event, &stamp).await?;
            Ok(Guess::Locked {
                until,
                event: Some(event),
            })
        })
        .await
    }

    /// Gives back a reserved guess that was never checked (the hash pool
    /// was saturated).
    pub async fn release_guess(&self, username: &str) -> Result<(), StoreError> {
        let username = username.to_owned();
        self.write(move |mut tx| async move {
            let sql = "UPDATE login_throttle SET failures = failures - 1 WHERE username = $1 AND failures > 0";
            tx.exec(sql, &[username.into()]).await?;
            tx.commit().await
        })
        .await
    }

    /// Records a reserved guess that failed. The guess was counted when it
    /// was reserved; the one that fills the budget locks the username,
    /// unless a lock is already in force.
    pub async fn guess_failed(
        &self,
        username: &str,
        rules: &GuessRules,
        stamp: &Stamp,
    ) -> Result<Envelope, StoreError> {
        let (username, rules, stamp) = (username.to_owned(), *rules, stamp.clone());
        self.write(move |mut tx| async move {
            let event = guess_failed_in(&mut *tx, &username, &rules, stamp.at).await?;
            commit_one(tx, event, &stamp).await
        })
        .await
    }

    /// A wrong `current_password` on a password change: a failed guess of
    /// the username's budget, and the fifth in a row from one session
    /// revokes that session.
    pub async fn password_guess_failed(
        &self,
        username: &str,
        user_id: Uuid,
        session_id: Uuid,
        rules: &GuessRules,
        stamp: &Stamp,
    ) -> Result<Vec<Envelope>, StoreError> {
        let (username, rules, stamp) = (username.to_owned(), *rules, stamp.clone());
        self.write(move |mut tx| async move {
            let mut events = vec![guess_failed_in(&mut *tx, &username, &rules, stamp.at).await?];
            let rows = tx
                .query(
                    "UPDATE sessions SET password_failures = password_failures + 1 \
                 WHERE id = $1 AND revoked_at IS NULL RETURNING password_failures",
                    &[session_id.into()],
                )
                .await?;
            if let Some(row) = rows.first() {
                if row.int(0)? >= PASSWORD_FAILURES_PER_SESSION {
                    revoke_session_rows(&mut *tx, &[session_id], stamp.at).await?;
                    events.push(Event::SessionRevoked {
                        user_id,
                        session_id,
                        cause: RevokeCause::PasswordGuesses,
                        reason: Some(format!(
                            "{PASSWORD_FAILURES_PER_SESSION} wrong current passwords in a row"
                        )),
                    });
                }
            }
            let envs = append(&mut *tx, events, &stamp).await?;
            tx.commit().await?;
            Ok(envs)
        })
        .await
    }
}
