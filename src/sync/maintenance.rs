//! Maintenance: prunes the state, retires signing keys whose tokens have
//! all expired, and deletes spent refresh tokens of long-ended sessions.
//!
//! May import: what `sync` may (its top comment).

use super::*;
use crate::clock::Timestamp;
use crate::events::Stamp;

/// How often the log's upkeep (checkpoints, retention) runs.
const EVIDENCE_EVERY: Duration = Duration::from_secs(10);

/// Runs maintenance every `every` (retirement is checked that often).
/// and writes checkpoints and prunes the log (`evidence`) at most every
/// `EVIDENCE_EVERY`.
pub(super) fn run(
    sync: Arc<StateSync>,
    every: Duration,
    log_retention: Option<Duration>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune = std::time::Instant::now();
        let mut last_upkeep: Option<std::time::Instant> = None;
        loop {
            tick.tick().await;
            sync.housekeeping().await;
            if last_upkeep.is_none_or(|t| t.elapsed() >= EVIDENCE_EVERY) {
                last_upkeep = Some(std::time::Instant::now());
                sync.log_upkeep(log_retention).await;
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = std::time::Instant::now();
                match sync
                    .store
                    .prune_refresh_tokens(Timestamp::now().minus(PRUNE_AFTER))
                    .await
                {
                    Ok(n) if n > 0 => {
                        tracing::info!(deleted = n, "pruned refresh tokens of ended sessions")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "refresh-token pruning failed"),
                }
            }
        }
    })
}

impl StateSync {
    /// Prunes the state and retires keys whose tokens have all expired.
    pub async fn housekeeping(&self) {
        let now = Timestamp::now();
        self.state.write().prune(now.ms());
        self.keyring().sweep_expired(now.unix_secs());
        let due = self.state.read().retirement_due(now.ms());
        if due {
            match self
                .store
                .retire_keys(&Stamp::new(&Meta::system(), now))
                .await
            {
                Ok(envs) if !envs.is_empty() => {
                    tracing::info!(count = envs.len(), "retired signing keys");
                    let _ = self.catch_up().await;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "key retirement failed"),
            }
        }
    }
}
