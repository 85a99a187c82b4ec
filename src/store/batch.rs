//! Group commit: concurrent write units share one transaction and one
//! commit. Each adapter has one batcher (PostgreSQL: a task per pool;
//! SQLite: the writer's thread) that takes every write unit waiting, up to
//! `MAX_UNITS`, opens one transaction, and runs the units one after another,
//! each inside a savepoint of its own. A unit that fails (or drops its `Tx`
//! without committing) is rolled back to its savepoint and its neighbours
//! are untouched; one commit then makes every committed unit durable at
//! once, and only then is each caller answered (G1). A failed commit, or a
//! transaction that could not be brought back after a failure, answers
//! every committed unit of the batch with an error, never a success.
//!
//! Units run one at a time, so each sees the writes of those before it, as
//! if they had committed one by one in that order: the refresh CAS, the
//! theft check and the counter row behave exactly as with a transaction
//! each. The counter row (`recall_seq`) is locked first thing in every
//! batch, so the whole batch takes the next seqs in one order and commit
//! order stays seq order (G6); and since every batch takes that lock before
//! any other, two instances' batches cannot deadlock on row locks.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::chain::{self, Hash};
use super::sql::{Deliver, Later, Links, Row, Tx, Val, Work, WriteBatches};
use super::StoreError;

/// The most units one transaction carries. PostgreSQL keeps up to 64
/// subtransactions of a transaction in shared memory before it spills
/// them to disk for every other backend's snapshots; a batch stays under.
pub(super) const MAX_UNITS: usize = 60;

/// A write unit waiting for a batch, and where to say whether it ran.
pub(super) struct Queued {
    pub work: Work,
    pub ran: oneshot::Sender<Result<(), StoreError>>,
}

impl Queued {
    /// A unit to queue, and the receiver its `Db::run` waits on.
    pub fn new(work: Work) -> (Self, oneshot::Receiver<Result<(), StoreError>>) {
        let (ran, ran_rx) = oneshot::channel();
        (Queued { work, ran }, ran_rx)
    }

    /// Turns `ran` into the answer `Db::run` gives: a batcher gone before
    /// it said anything is an unavailable store.
    pub async fn wait(ran: oneshot::Receiver<Result<(), StoreError>>) -> Result<(), StoreError> {
        ran.await.map_err(|_| {
            StoreError::Unavailable("the write batch ended without an answer".into())
        })?
    }
}

/// A statement sent ahead of the one whose answer is wanted.
pub(super) enum Ahead {
    /// A statement without parameters (`SAVEPOINT`, `ROLLBACK TO`, the
    /// counter's update and `COMMIT`).
    Simple(String),
    /// A statement held back (`Tx::exec_later`): nobody reads its result.
    Later(Later),
}

/// The statement whose answer is wanted, after those ahead of it.
pub(super) struct Last<'a> {
    pub sql: &'a str,
    pub params: &'a [Val],
    /// Its rows (a query) rather than how many rows it changed.
    pub rows: bool,
}

/// What the statement answered.
pub(super) enum Answer {
    Changed(u64),
    Rows(Vec<Row>),
}

/// A statement runner a batch's units share: the batch's connection, inside
/// its transaction.
#[async_trait]
pub(super) trait Statements: Send + Sync {
    /// Sends `ahead` and then `wanted` in this order, in one round trip
    /// where the driver can (PostgreSQL pipelines them); what each of
    /// `wanted` answered, or the first error of any.
    async fn send(&self, ahead: Vec<Ahead>, wanted: &[Last<'_>])
        -> Result<Vec<Answer>, StoreError>;
}

/// What the batch sees of one unit once it has run.
#[derive(Default, Clone, Copy)]
pub(super) struct Outcome {
    /// It ran a statement (so its savepoint exists).
    pub began: bool,
    /// It committed, and none of its statements failed.
    pub committed: bool,
    /// How many held-back statements it handed to the batch on commit
    /// (the last ones of the batch's list, until the next unit runs).
    pub handed: usize,
}

/// A batch's connection (inside its transaction), its seq counter and the
/// chain's head: the counter row is locked when the batch begins, its
/// values read then, seqs and the head are kept here as units append, and
/// the row is written once before the commit.
pub(super) struct Batch<S> {
    pub conn: S,
    start: Links,
    end: Mutex<Links>,
    /// Committed units' held-back statements, not yet sent: they go out
    /// ahead of the next unit's `SAVEPOINT`, or with the `COMMIT`.
    pending: Mutex<Vec<Ahead>>,
}

impl<S: Statements> Batch<S> {
    pub fn new(conn: S, end: Links) -> Arc<Self> {
        Arc::new(Batch {
            conn,
            start: end,
            end: Mutex::new(end),
            pending: Mutex::new(Vec::new()),
        })
    }

    /// The last seq taken so far, and the chain's head.
    pub fn end(&self) -> Links {
        *self.end.lock()
    }

    /// Gives back the seqs (and the head) a rolled-back unit took.
    pub fn reset(&self, to: Links) {
        *self.end.lock() = to;
    }

    /// The counter row's new values, if the batch took any seq or moved
    /// the head.
    pub fn moved(&self) -> Option<Links> {
        let end = self.end();
        (end != self.start).then_some(end)
    }

    /// Ends the batch: the statements still held back, the counter's
    /// update and `COMMIT`, in one round trip. A simple query stops at its
    /// first error, so a failed `UPDATE` never reaches the `COMMIT`, and a
    /// failed held-back statement aborts the transaction before either.
    pub async fn commit(&self) -> Result<(), StoreError> {
        let mut ahead = std::mem::take(&mut *self.pending.lock());
        ahead.push(Ahead::Simple(match self.moved() {
            Some(end) => format!(
                "UPDATE recall_seq SET last = {}, head = '{}' WHERE id = 1; COMMIT",
                end.last,
                chain::hex(&end.prev)
            ),
            None => "COMMIT".to_owned(),
        }));
        self.conn.send(ahead, &[]).await.map(|_| ())
    }
}

/// The `Tx` a unit of a batch gets: its statements run on the batch's
/// connection after its savepoint; its commit only marks it committed (the
/// batch commits for everyone) and hands its held-back statements to the
/// batch.
pub(super) struct UnitTx<S: Statements> {
    batch: Arc<Batch<S>>,
    savepoint: String,
    state: Arc<Mutex<UnitState>>,
    /// Its own held-back statements: sent before its next statement, or
    /// handed to the batch when it commits, or never sent if it does not.
    later: Vec<Ahead>,
}

#[derive(Default)]
struct UnitState {
    outcome: Outcome,
    failed: Option<String>,
}

impl<S: Statements> UnitTx<S> {
    /// The `Tx` of unit `index`, and the handle the batch reads it by.
    pub fn new(batch: Arc<Batch<S>>, index: usize) -> (Self, UnitHandle) {
        let state = Arc::new(Mutex::new(UnitState::default()));
        let tx = UnitTx {
            batch,
            savepoint: savepoint_name(index),
            state: state.clone(),
            later: Vec::new(),
        };
        (tx, UnitHandle(state))
    }

    /// Sends `wanted` after what must go first: the committed units'
    /// held-back statements, this unit's `SAVEPOINT` if this is its first
    /// statement, and its own held-back ones.
    async fn send(&mut self, wanted: &[Last<'_>]) -> Result<Vec<Answer>, StoreError> {
        let mut ahead = std::mem::take(&mut *self.batch.pending.lock());
        {
            let mut state = self.state.lock();
            if !state.outcome.began {
                state.outcome.began = true;
                ahead.push(Ahead::Simple(format!("SAVEPOINT {}", self.savepoint)));
            }
        }
        ahead.append(&mut self.later);
        let result = self.batch.conn.send(ahead, wanted).await;
        if let Err(e) = &result {
            self.state
                .lock()
                .failed
                .get_or_insert_with(|| e.to_string());
        }
        result
    }
}

/// The batch's view of one unit's `Tx`.
pub(super) struct UnitHandle(Arc<Mutex<UnitState>>);

impl UnitHandle {
    pub fn outcome(&self) -> Outcome {
        self.0.lock().outcome
    }
}

fn savepoint_name(index: usize) -> String {
    format!("recall_unit_{index}")
}

/// The statement that undoes unit `index`.
fn rollback_to(index: usize) -> String {
    format!("ROLLBACK TO SAVEPOINT {}", savepoint_name(index))
}

fn unexpected() -> StoreError {
    StoreError::Corrupt("the driver answered the wrong kind of result".into())
}

#[async_trait]
impl<S: Statements> Tx for UnitTx<S> {
    async fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        let last = Last {
            sql,
            params,
            rows: false,
        };
        match self.send(&[last]).await?.pop() {
            Some(Answer::Changed(n)) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        let last = Last {
            sql,
            params,
            rows: true,
        };
        match self.send(&[last]).await?.pop() {
            Some(Answer::Rows(rows)) => Ok(rows),
            _ => Err(unexpected()),
        }
    }

    async fn query_all(&mut self, queries: &[(&str, &[Val])]) -> Result<Vec<Vec<Row>>, StoreError> {
        let wanted: Vec<Last<'_>> = queries
            .iter()
            .map(|(sql, params)| Last {
                sql,
                params,
                rows: true,
            })
            .collect();
        self.send(&wanted)
            .await?
            .into_iter()
            .map(|answer| match answer {
                Answer::Rows(rows) => Ok(rows),
                Answer::Changed(_) => Err(unexpected()),
            })
            .collect()
    }

    async fn exec_later(&mut self, statements: Vec<Later>) -> Result<(), StoreError> {
        self.later.extend(statements.into_iter().map(Ahead::Later));
        Ok(())
    }

    async fn take_seqs(&mut self, n: i64) -> Result<Links, StoreError> {
        let mut end = self.batch.end.lock();
        end.last += n;
        Ok(*end)
    }

    async fn set_head(&mut self, head: Hash) -> Result<(), StoreError> {
        self.batch.end.lock().prev = head;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        if let Some(failed) = &state.failed {
            // On PostgreSQL a failed statement aborts the transaction and
            // COMMIT would quietly roll it back: never call that committed.
            return Err(StoreError::Query(format!(
                "a statement of this unit failed: {failed}"
            )));
        }
        state.outcome.committed = true;
        state.outcome.handed = self.later.len();
        self.batch.pending.lock().append(&mut self.later);
        Ok(())
    }
}

/// A unit that has run, waiting for the batch's commit.
pub(super) struct Finished {
    pub deliver: Deliver,
    pub committed: bool,
    pub ran: oneshot::Sender<Result<(), StoreError>>,
}

/// Runs a batch's units one after another on `batch`: each that does not
/// commit (it returned early, failed, or panicked) is rolled back to its
/// savepoint and gives its seqs back. The units that ran, waiting for the
/// commit; and the error that lost the transaction, if one did (then the
/// units not yet run have been refused).
pub(super) async fn run_units<S: Statements + 'static>(
    batch: &Arc<Batch<S>>,
    units: Vec<Queued>,
) -> (Vec<Finished>, Option<StoreError>) {
    let mut finished = Vec::with_capacity(units.len());
    let mut units = units.into_iter().enumerate();
    while let Some((index, unit)) = units.next() {
        let before = batch.end();
        let (tx, handle) = UnitTx::new(batch.clone(), index);
        let answered = AssertUnwindSafe((unit.work)(Box::new(tx)))
            .catch_unwind()
            .await;
        let outcome = handle.outcome();
        if !outcome.committed || answered.is_err() {
            batch.reset(before);
            if outcome.committed {
                // It panicked after committing: take back what it handed.
                let mut pending = batch.pending.lock();
                let keep = pending.len().saturating_sub(outcome.handed);
                pending.truncate(keep);
            }
            if outcome.began {
                let undo = vec![Ahead::Simple(rollback_to(index))];
                if let Err(e) = batch.conn.send(undo, &[]).await {
                    // The transaction could not be brought back: nothing
                    // in it commits, and the units not yet run are refused.
                    refuse(units.map(|(_, unit)| unit), &e);
                    return (finished, Some(e));
                }
            }
        }
        match answered {
            Ok(deliver) => finished.push(Finished {
                deliver,
                committed: outcome.committed,
                ran: unit.ran,
            }),
            Err(_) => {
                tracing::error!("a store call panicked in a write batch; rolled back");
                let _ = unit
                    .ran
                    .send(Err(StoreError::Query("a store call panicked".into())));
            }
        }
    }
    (finished, None)
}

/// Answers every unit of a batch once its transaction has ended with
/// `commit`: a committed unit hears the commit's outcome, one that rolled
/// itself back its own answer.
pub(super) fn settle(finished: Vec<Finished>, commit: Result<(), StoreError>) {
    if let Err(e) = &commit {
        tracing::warn!(units = finished.len(), error = %e, "a write batch did not commit");
    }
    for unit in finished {
        let held = if unit.committed {
            commit.clone()
        } else {
            Ok(())
        };
        (unit.deliver)(held);
        let _ = unit.ran.send(Ok(()));
    }
}

/// Answers units a batch could not run at all.
pub(super) fn refuse(units: impl IntoIterator<Item = Queued>, error: &StoreError) {
    for unit in units {
        let _ = unit.ran.send(Err(error.clone()));
    }
}

/// An adapter's running count of its batches.
#[derive(Debug, Default)]
pub(super) struct BatchStats {
    batches: AtomicU64,
    units: AtomicU64,
}

impl BatchStats {
    pub fn record(&self, units: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.units.fetch_add(units as u64, Ordering::Relaxed);
    }

    pub fn read(&self) -> WriteBatches {
        WriteBatches {
            batches: self.batches.load(Ordering::Relaxed),
            units: self.units.load(Ordering::Relaxed),
        }
    }
}
