//! Rebuilding the revocation state from the store: the window read page
//! by page (`Store::snapshot_paged`) and folded as it comes, at start-up
//! and when the log turns out to be behind what was applied (G9).
//!
//! May import: store, state, events.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::state::{items, standing_items, RevocationState, Standing};
use crate::store::{Store, StoreError};

/// Rebuilds the state from a window read page by page
/// (`Store::snapshot_paged`): the same fold as `state::from_snapshot`, holding one
/// page of events at a time. Returns the state and how many events it folded.
pub async fn from_window(
    store: &Store,
    retention_ms: i64,
    now: Timestamp,
) -> Result<(RevocationState, Standing, usize), StoreError> {
    let mut state: Option<RevocationState> = None;
    let mut events = 0;
    let standing = store
        .snapshot_paged(
            now.minus(Duration::from_millis(retention_ms.max(0) as u64)),
            now,
            &mut |standing, page| {
                let state = state.get_or_insert_with(|| {
                    let mut s = RevocationState::new(retention_ms);
                    for item in standing_items(standing, now) {
                        s.apply_item(&item);
                    }
                    s
                });
                for env in &page {
                    for item in items(env) {
                        state.apply_item(&item);
                    }
                }
                events += page.len();
            },
        )
        .await?;
    let mut state = state.unwrap_or_else(|| RevocationState::new(retention_ms));
    state.advance_to(standing.head);
    state.prune(now.ms());
    Ok((state, standing, events))
}
