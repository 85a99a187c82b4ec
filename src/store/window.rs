//! Reading the revocation window (G8): the events since the window's start
//! and what outlives it, in one snapshot. The events come page by page, so
//! rebuilding the state holds one page of rows at a time, not the window.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use super::rows::{envelope, first, query_keys};
use super::{Store, StoreError, EVENT_COLS};
use crate::clock::Timestamp;
use crate::events::Envelope;
use crate::state::{Snapshot, Standing};

/// Events per page of the window.
const PAGE: i64 = 10_000;

impl Store {
    /// The whole window in memory (the feed's first page, tests). Start-up
    /// and rebuilds fold it page by page instead (`snapshot_paged`).
    pub async fn snapshot(
        &self,
        window_start: Timestamp,
        now: Timestamp,
    ) -> Result<Snapshot, StoreError> {
        let mut events = Vec::new();
        let standing = self
            .snapshot_paged(window_start, now, &mut |_, page| events.extend(page))
            .await?;
        Ok(Snapshot { standing, events })
    }

    /// Reads the head, the locks in force and the unretired keys, then hands
    /// the window's events (`at >= window_start`, in seq order) to `on_page`
    /// a page at a time, all in one snapshot. `on_page` is called at least
    /// once (with no events for an empty window), standing state first.
    pub async fn snapshot_paged(
        &self,
        window_start: Timestamp,
        now: Timestamp,
        on_page: &mut (dyn FnMut(&Standing, Vec<Envelope>) + Send),
    ) -> Result<Standing, StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        let head = first(
            tx.query("SELECT last FROM recall_seq WHERE id = 1", &[])
                .await?,
        )?
        .int(0)?;
        let sql = "SELECT id, locked_until FROM users WHERE locked_until > $1";
        let locks = tx
            .query(sql, &[now.into()])
            .await?
            .iter()
            .map(|r| Ok((r.uuid(0)?, r.ts(1)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let keys = query_keys(&mut *tx, "WHERE status <> 'retired'").await?;
        let standing = Standing { head, locks, keys };
        // The window's first seq through the `at` index (`+seq`: walking the
        // whole log in seq order to find it is what G8 rules out).
        let sql = "SELECT coalesce(min(+seq), 0) FROM events WHERE at >= $1";
        let lowest = first(tx.query(sql, &[window_start.into()]).await?)?.int(0)?;
        if lowest == 0 {
            on_page(&standing, Vec::new());
            return Ok(standing);
        }
        // Then by primary key from there (`+at`: not the `at` index, which
        // would sort the rest of the window for every page).
        let sql = format!(
            "SELECT {EVENT_COLS} FROM events WHERE seq > $1 AND +at >= $2 ORDER BY seq LIMIT $3"
        );
        let mut after = lowest - 1;
        loop {
            let page = tx
                .query(&sql, &[after.into(), window_start.into(), PAGE.into()])
                .await?
                .iter()
                .map(envelope)
                .collect::<Result<Vec<_>, _>>()?;
            let full = page.len() as i64 == PAGE;
            if let Some(last) = page.last() {
                after = last.seq;
            }
            on_page(&standing, page);
            if !full {
                return Ok(standing);
            }
        }
    }
}
