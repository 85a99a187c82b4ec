//! The log as evidence, for `/v1/admin/log/*` and `recall admin`:
//! verifying the chain and signed checkpoints.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use super::admin::Admin;
use crate::error::Error;
use crate::events::Meta;
use crate::store::chain::Verdict;
use crate::store::evidence::Checkpoint;

impl Admin {
    /// Verifies the log's chain from `from` (0: the first event kept).
    pub async fn verify_log(&self, from: i64) -> Result<Verdict, Error> {
        let verdict = self.store.verify_log(from.max(0)).await?;
        if let Some(bad) = verdict.first_bad_seq {
            tracing::error!(first_bad_seq = bad, "the log's hash chain is broken");
        }
        Ok(verdict)
    }

    /// The latest signed checkpoint; with `fresh`, one is written first
    /// when anything was appended since the last.
    pub async fn checkpoint(&self, fresh: bool, meta: &Meta) -> Result<Option<Checkpoint>, Error> {
        if fresh {
            if let Some(cp) = self.sync.checkpoint(true, meta).await? {
                return Ok(Some(cp));
            }
        }
        Ok(self.store.latest_checkpoint().await?)
    }
}
