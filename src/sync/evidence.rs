//! The log's upkeep as evidence: signed checkpoints of the chain (at least
//! every `CHECKPOINT_EVERY_EVENTS` events and every hour) and retention
//! (`RECALL_RETENTION_DAYS`: old events deleted in bounded batches, never
//! inside the revocation window). Every instance tries; the store decides
//! inside the appending transaction, so a fleet writes each one once.
//!
//! May import: what `sync` may (its top comment).

use super::*;
use crate::events::Stamp;
use crate::store::evidence::{Checkpoint, CheckpointClaims, Signer};

/// Prune batches one housekeeping round runs at most (each `PAGE` events),
/// so a first prune of a long log spreads over rounds.
const PRUNE_BATCHES_PER_ROUND: usize = 20;

/// Compact JWS `typ` of a checkpoint.
pub const CHECKPOINT_TYP: &str = "recall-checkpoint+jwt";

impl StateSync {
    /// A signer for checkpoints: the active key, through the keyring.
    fn checkpoint_signer(&self) -> Result<Signer, StoreError> {
        let kid = self
            .state()
            .active_kid()
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Unavailable("no active signing key".into()))?;
        let keyring = self.keyring.clone();
        Ok(Box::new(move |claims: &CheckpointClaims| {
            keyring
                .sign_json(&kid, CHECKPOINT_TYP, claims)
                .map(|jws| (kid, jws))
                .map_err(|e| format!("checkpoint signing failed: {e}"))
        }))
    }

    /// Writes a signed checkpoint if one is due (`force`: if anything was
    /// appended since the last), and applies it.
    pub async fn checkpoint(
        &self,
        force: bool,
        meta: &Meta,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let signer = self.checkpoint_signer()?;
        let issuer = self.keyring.issuer().to_owned();
        let written = self
            .store
            .checkpoint(signer, issuer, force, &Stamp::now(meta))
            .await?;
        if let Some(cp) = &written {
            tracing::info!(
                seq = cp.seq,
                through = cp.through_seq,
                "signed a checkpoint of the log"
            );
            let _ = self.catch_up().await;
        }
        Ok(written)
    }

    /// Deletes events older than `keep` (and outside the revocation
    /// window), a bounded number of batches per call.
    pub async fn prune_log(&self, keep: Duration) -> Result<i64, StoreError> {
        let now = Timestamp::now();
        let window = Duration::from_millis(self.state().retention_ms().max(0) as u64);
        let cutoff = now.minus(keep.max(window));
        let mut deleted = 0;
        for _ in 0..PRUNE_BATCHES_PER_ROUND {
            let stamp = Stamp::new(&Meta::system(), Timestamp::now());
            match self.store.prune_log(cutoff, &stamp).await? {
                Some(env) => {
                    if let Event::LogPruned {
                        through_seq, count, ..
                    } = &env.event
                    {
                        deleted += count;
                        tracing::info!(through_seq, count, total = deleted, "pruned old events");
                    }
                }
                None => break,
            }
        }
        if deleted > 0 {
            let _ = self.catch_up().await;
        }
        Ok(deleted)
    }

    /// One round of the log's upkeep (from `maintenance`).
    pub(super) async fn log_upkeep(&self, retention: Option<Duration>) {
        if let Err(e) = self.checkpoint(false, &Meta::system()).await {
            tracing::warn!(error = %e, "writing a checkpoint failed");
        }
        if let Some(keep) = retention {
            if let Err(e) = self.prune_log(keep).await {
                tracing::warn!(error = %e, "pruning the log failed");
            }
        }
    }
}
