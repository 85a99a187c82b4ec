//! PostgreSQL's write batches (module `store::batch` says what a batch
//! is): one task per pool takes the write units waiting, begins a
//! transaction that locks and reads the counter row in the same round
//! trip, runs the units, and sends each unit's statements with everything
//! that must go ahead of them pipelined on the one connection.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use futures_util::future;
use tokio::sync::mpsc;
use tokio_postgres::SimpleQueryMessage;

use super::{object, params_of, read_row, PgTx, Pooled};
use crate::store::batch::{
    refuse, run_units, settle, Ahead, Answer, Batch, BatchStats, Last, Queued, Statements,
    MAX_UNITS,
};
use crate::store::chain;
use crate::store::sql::Links;
use crate::store::StoreError;

/// Opens every write batch: the counter row is locked and read before any
/// unit runs (one round trip with the `BEGIN`), so batches on different
/// instances queue on it instead of deadlocking on the rows their units
/// touch, and the batch counts its seqs from there.
const BATCH_BEGIN: &str = "BEGIN; SELECT last, head FROM recall_seq WHERE id = 1 FOR UPDATE";

/// Takes every write unit waiting (up to `MAX_UNITS`) into one batch, one
/// batch at a time: while one commits, the next fills up.
pub(super) async fn batch_loop(
    pool: Pool,
    mut waiting: mpsc::UnboundedReceiver<Queued>,
    stats: Arc<BatchStats>,
) {
    while let Some(first) = waiting.recv().await {
        let mut units = vec![first];
        while units.len() < MAX_UNITS {
            match waiting.try_recv() {
                Ok(unit) => units.push(unit),
                Err(_) => break,
            }
        }
        stats.record(units.len());
        // A task of its own, so a unit that panics loses only its batch
        // (its transaction rolls back; its callers hear "unavailable").
        if let Err(e) = tokio::spawn(run_batch(pool.clone(), units)).await {
            tracing::error!(error = %e, "a write batch failed");
        }
    }
}

/// Begins a batch's transaction; the counter's value, read under its lock.
async fn begin_batch(pool: &Pool) -> Result<(PgTx, Links), StoreError> {
    let tx = PgTx::on(object(pool).await?);
    let answered = tx.client()?.simple_query(BATCH_BEGIN).await;
    let row = tx.seen(answered)?.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => {
            let last = row.get(0).and_then(|v| v.parse::<i64>().ok())?;
            Some((last, row.get(1).map(str::to_owned)))
        }
        _ => None,
    });
    let (last, head) = row.ok_or_else(|| StoreError::Corrupt("no counter row".into()))?;
    let prev = chain::head_of(head)?;
    Ok((tx, Links { last, prev }))
}

/// Runs one batch to its end (module `batch`).
async fn run_batch(pool: Pool, units: Vec<Queued>) {
    let batch = match begin_batch(&pool).await {
        Ok((tx, last)) => Batch::new(tx, last),
        Err(e) => return refuse(units, &e),
    };
    let (finished, broken) = run_units(&batch, units).await;
    let committed = match (broken, Arc::try_unwrap(batch)) {
        (Some(e), _) => Err(e),
        (None, Ok(mut batch)) => {
            let committed = batch.commit().await;
            // Over either way; a failed one rolls back when dropped.
            batch.conn.done = committed.is_ok();
            committed
        }
        (None, Err(_)) => Err(StoreError::Query(
            "a unit of work kept its transaction past its end".into(),
        )),
    };
    settle(finished, committed);
}

/// A batch's statements, on its transaction: everything sent ahead of a
/// statement goes out with it, in one round trip.
#[async_trait]
impl Statements for PgTx {
    async fn send(
        &self,
        ahead: Vec<Ahead>,
        wanted: &[Last<'_>],
    ) -> Result<Vec<Answer>, StoreError> {
        let client = self.client()?;
        // Prepared first (from the cache, after the first time), so that
        // nothing below awaits before every request is on the wire.
        let mut prepared = Vec::with_capacity(ahead.len());
        for item in &ahead {
            if let Ahead::Later((sql, _)) = item {
                let statement = client.prepare_cached(sql).await;
                prepared.push(self.seen(statement)?);
            }
        }
        let mut wanted_prepared = Vec::with_capacity(wanted.len());
        for last in wanted {
            let statement = client.prepare_cached(last.sql).await;
            wanted_prepared.push(self.seen(statement)?);
        }
        enum Raw {
            Changed(u64),
            Rows(Vec<tokio_postgres::Row>),
        }
        type Sent<'a> = future::BoxFuture<'a, Result<Option<Raw>, tokio_postgres::Error>>;
        let mut sent: Vec<Sent<'_>> = Vec::with_capacity(ahead.len() + 1);
        let mut statements = prepared.iter();
        for item in &ahead {
            match item {
                Ahead::Simple(sql) => {
                    sent.push(Box::pin(async move {
                        client.batch_execute(sql).await.map(|()| None)
                    }));
                }
                Ahead::Later((_, params)) => {
                    let Some(statement) = statements.next() else {
                        return Err(StoreError::Corrupt("a statement was not prepared".into()));
                    };
                    sent.push(Box::pin(async move {
                        client
                            .execute(statement, &params_of(params))
                            .await
                            .map(|_| None)
                    }));
                }
            }
        }
        for (last, statement) in wanted.iter().zip(&wanted_prepared) {
            let rows = last.rows;
            let params = last.params;
            sent.push(Box::pin(async move {
                if rows {
                    let rows = client.query(statement, &params_of(params)).await?;
                    Ok(Some(Raw::Rows(rows)))
                } else {
                    let n = client.execute(statement, &params_of(params)).await?;
                    Ok(Some(Raw::Changed(n)))
                }
            }));
        }
        let mut answers = Vec::with_capacity(wanted.len());
        for done in in_order(sent).await {
            match self.seen(done)? {
                Some(Raw::Changed(n)) => answers.push(Answer::Changed(n)),
                Some(Raw::Rows(rows)) => answers.push(Answer::Rows(
                    rows.iter().map(read_row).collect::<Result<_, _>>()?,
                )),
                None => {}
            }
        }
        Ok(answers)
    }
}

/// Awaits every future, polling them in order on every pass: each sends
/// its request on its first poll, so the requests go out in this order.
/// (`join_all` does not promise an order past a few dozen futures.)
async fn in_order<T>(futures: Vec<future::BoxFuture<'_, T>>) -> Vec<T> {
    let mut waiting: Vec<_> = futures.into_iter().map(future::maybe_done).collect();
    future::poll_fn(|cx| {
        let mut all = true;
        for f in waiting.iter_mut() {
            all &= std::future::Future::poll(std::pin::Pin::new(&mut *f), cx).is_ready();
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    waiting
        .iter_mut()
        .filter_map(|f| std::pin::Pin::new(f).take_output())
        .collect()
}
