//! A password guess reserved from a username's brute-force budget (G10),
//! held until it is settled: its failure recorded, its success clearing the
//! counts, or given back unchecked. A client can vanish at any `.await` of
//! a login (G11); a guess whose answer nobody read told nobody anything, so
//! an unsettled guess goes back to the budget instead of counting as a
//! failure that never happened (which would lock the user out).
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use super::Core;
use crate::domain::{after_failure, after_reservation, LockoutPolicy};
use crate::error::Error;
use crate::events::{Meta, Stamp};
use crate::metrics::inc;
use crate::store::{Guess, GuessRules, Store};

/// The brute-force rules the store counts guesses by, under `policy`.
pub fn guess_rules(policy: LockoutPolicy) -> GuessRules {
    GuessRules {
        policy,
        after_reservation,
        after_failure,
    }
}

/// A reserved guess; dropped unsettled, it is given back.
pub(super) struct ReservedGuess {
    store: Store,
    /// Set until the guess is settled.
    username: Option<String>,
}

impl ReservedGuess {
    /// The guess's outcome is now the store's to record (a failure, or a
    /// login that clears the counts): nothing to give back. Called before
    /// the store call, whose work completes whatever becomes of the caller.
    pub(super) fn settle(mut self) {
        self.username = None;
    }

    /// Gives the guess back now (it was never checked).
    pub(super) async fn release(mut self) {
        if let Some(name) = self.username.take() {
            let _ = self.store.release_guess(&name).await;
        }
    }
}

impl Drop for ReservedGuess {
    fn drop(&mut self) {
        let Some(name) = self.username.take() else {
            return;
        };
        let store = self.store.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.release_guess(&name).await {
                    tracing::warn!(error = %e, "an abandoned guess was not given back");
                }
            });
        }
    }
}

impl Core {
    /// Counts a password guess against `username`'s budget before its hash
    /// is checked (G10); a lock in force, or one this guess sets, refuses.
    /// The reservation runs as a task of its own: if the caller vanishes
    /// while it runs, the finished task drops the guard it made, which
    /// gives the guess back.
    pub(super) async fn reserve_guess(
        &self,
        username: &str,
        meta: &Meta,
    ) -> Result<ReservedGuess, Error> {
        let (store, policy, name, meta) = (
            self.store.clone(),
            self.settings.lockout,
            username.to_owned(),
            meta.clone(),
        );
        let reserved = tokio::spawn(async move {
            let guess = store
                .reserve_guess(&name, &guess_rules(policy), &Stamp::now(&meta))
                .await?;
            Ok::<_, Error>(match guess {
                Guess::Reserved => Ok(ReservedGuess {
                    store,
                    username: Some(name),
                }),
                Guess::Locked { until, event } => Err((until, event)),
            })
        })
        .await
        .map_err(|e| Error::Internal(format!("guess reservation task: {e}")))??;
        match reserved {
            Ok(guess) => Ok(guess),
            Err((until, event)) => {
                inc(&self.metrics.guesses_refused);
                if let Some(env) = event {
                    self.committed(&[env]).await;
                }
                Err(Error::locked(until))
            }
        }
    }
}
