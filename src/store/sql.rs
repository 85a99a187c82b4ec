//! The small SQL surface both adapters share, so the domain queries in
//! `store::Store` are written once: values are integers, text, bytes or null,
//! and placeholders are `$1, $2, ...` (the SQLite adapter rewrites them).
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use async_trait::async_trait;
use futures_util::future::BoxFuture;

use super::StoreError;
use crate::clock::Timestamp;

/// One SQL value; the schema uses only these column kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// `From` for each Rust type a parameter can be, by the variant it makes.
macro_rules! val_from {
    ($($t:ty => |$v:ident| $make:expr;)*) => {
        $(impl From<$t> for Val {
            fn from($v: $t) -> Self {
                $make
            }
        })*
    };
}

val_from! {
    i64 => |v| Val::Int(v);
    &str => |v| Val::Text(v.to_owned());
    String => |v| Val::Text(v);
    &String => |v| Val::Text(v.clone());
    uuid::Uuid => |v| Val::Text(v.to_string());
    Vec<u8> => |v| Val::Blob(v);
    &[u8] => |v| Val::Blob(v.to_vec());
    Timestamp => |v| Val::Int(v.ms());
}

impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// One result row, read by column index.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Val>);

impl Row {
    fn at(&self, i: usize) -> Result<&Val, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("missing column {i}")))
    }

    /// An integer column.
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i} is null")))
    }

    /// A timestamp column (milliseconds since the epoch).
    pub fn ts(&self, i: usize) -> Result<Timestamp, StoreError> {
        self.int(i).map(Timestamp::from_ms)
    }

    /// A nullable timestamp column.
    pub fn opt_ts(&self, i: usize) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.opt_int(i)?.map(Timestamp::from_ms))
    }

    /// A nullable integer column.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.at(i)? {
            Val::Int(v) => Ok(Some(*v)),
            Val::Null => Ok(None),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: {other:?} is not an integer"
            ))),
        }
    }

    /// A text column.
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i} is null")))
    }

    /// A nullable text column.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.at(i)? {
            Val::Text(v) => Ok(Some(v.clone())),
            Val::Null => Ok(None),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: {other:?} is not text"
            ))),
        }
    }

    /// A byte column.
    pub fn blob(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.at(i)? {
            Val::Blob(v) => Ok(v.clone()),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: {other:?} is not bytes"
            ))),
        }
    }

    /// A UUID stored as text.
    pub fn uuid(&self, i: usize) -> Result<uuid::Uuid, StoreError> {
        let text = self.text(i)?;
        uuid::Uuid::parse_str(&text).map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
    }

    /// A nullable UUID stored as text.
    pub fn opt_uuid(&self, i: usize) -> Result<Option<uuid::Uuid>, StoreError> {
        match self.opt_text(i)? {
            None => Ok(None),
            Some(t) => uuid::Uuid::parse_str(&t)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}"))),
        }
    }
}

/// An open transaction. Dropping it without `commit` rolls it back.
#[async_trait]
pub trait Tx: Send {
    /// Runs a statement and returns the number of rows it changed.
    async fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError>;
    /// Runs a query and returns its rows.
    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError>;
    /// Runs queries one after another (each sees what those before it
    /// changed) and returns each one's rows; in a PostgreSQL write batch
    /// they go out together, one round trip for all.
    async fn query_all(&mut self, queries: &[(&str, &[Val])]) -> Result<Vec<Vec<Row>>, StoreError> {
        let mut all = Vec::with_capacity(queries.len());
        for (sql, params) in queries {
            all.push(self.query(sql, params).await?);
        }
        Ok(all)
    }
    /// Runs statements whose results nobody reads (inserting an event,
    /// setting a column): in a write batch they are held back and sent with
    /// the unit's next statement, the next unit's first, or the `COMMIT`,
    /// all in one round trip; they can then fail only with the whole batch.
    /// Elsewhere, at once, one after another.
    async fn exec_later(&mut self, statements: Vec<Later>) -> Result<(), StoreError> {
        for (sql, params) in statements {
            self.exec(sql, &params).await?;
        }
        Ok(())
    }
    /// Reserves the next `n` seqs for this transaction's events: the last
    /// of them, and the chain's head before them (the hash of the event
    /// before the first, `chain`). In a write batch the counter row is
    /// locked at the batch's start and counted in memory (written once,
    /// before the commit); elsewhere, one `UPDATE` that holds the row until
    /// commit. `n = 0` reads the chain's end under the same lock.
    async fn take_seqs(&mut self, n: i64) -> Result<Links, StoreError> {
        let sql = "UPDATE recall_seq SET last = last + $1 WHERE id = 1 RETURNING last, head";
        let rows = self.query(sql, &[n.into()]).await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("no counter row".into()))?;
        Ok(Links {
            last: row.int(0)?,
            prev: super::head::head_of(row.opt_text(1)?)?,
        })
    }
    /// Sets the chain's head: the hash of the last event this transaction
    /// appended (after `take_seqs`).
    async fn set_head(&mut self, head: super::head::Hash) -> Result<(), StoreError> {
        let sql = "UPDATE recall_seq SET head = $1 WHERE id = 1";
        self.exec_later(vec![(sql, vec![super::head::hex(&head).into()])])
            .await
    }
    /// The keys that seal and open personal data (`pii::Vault`, which
    /// reads it back by its type): set on every transaction a `Store`
    /// hands its units. Untyped here so this surface need not know `pii`.
    fn vault(&self) -> Option<std::sync::Arc<dyn std::any::Any + Send + Sync>> {
        None
    }
    /// Commits. In a write batch this only marks the unit committed: its
    /// writes are durable when the batch's commit is, and the unit's caller
    /// is answered only then (G1, `batch`).
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// How a unit of work uses its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A read-write transaction (`BEGIN`; SQLite's `BEGIN IMMEDIATE`),
    /// committed by the work or rolled back when it drops its `Tx`.
    Write,
    /// Independent reads: each statement commits on its own (no
    /// BEGIN/ROLLBACK round trips); `commit` is a no-op.
    Read,
    /// Single-statement writes on the write connection that commit on their
    /// own (the guess reservation: one round trip, no BEGIN/COMMIT).
    Autocommit,
}

/// What a unit of work hands back when it has run: told how the
/// transaction holding its writes ended, it answers its caller.
pub type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// How many write batches committed (or tried to) and how many units they
/// carried: units per batch is what group commit buys.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteBatches {
    pub batches: u64,
    pub units: u64,
}

/// What `Tx::take_seqs` reserved: the last seq, and the hash before the
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Links {
    pub last: i64,
    pub prev: super::head::Hash,
}

/// A statement for `Tx::exec_later`.
pub type Later = (&'static str, Vec<Val>);

/// A unit of work: everything one store call does on one connection, from
/// its first statement to its commit. It may await only its `Tx`. It
/// returns how to answer its caller once the transaction holding its
/// writes has ended (`Deliver`, called with that transaction's outcome).
pub type Work = Box<dyn FnOnce(Box<dyn Tx>) -> BoxFuture<'static, Deliver> + Send>;

/// A database that runs units of work: the port both adapters implement.
#[async_trait]
pub trait Db: Send + Sync {
    /// Runs the embedded migrations; safe when several instances start at once.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Runs `work` on a connection in `mode`, to its end, whatever becomes
    /// of the caller (G11); `Mode::Write` units are grouped with the others
    /// waiting into one transaction and one commit (`batch`): a caller dropped at any `.await` of this call
    /// never leaves a transaction open, a statement half sent or a
    /// connection in a state that its next user inherits. The work either
    /// commits or rolls back; the caller only loses its answer.
    async fn run(&self, mode: Mode, work: Work) -> Result<(), StoreError>;
    /// Starts a read-only transaction that sees one consistent snapshot,
    /// on a connection of its own; for reads that page through the window
    /// between awaits of the caller's. Dropped anywhere, it rolls back
    /// before the connection serves anyone else.
    async fn begin_snapshot(&self) -> Result<Box<dyn Tx>, StoreError>;
    /// A short name for logs and readiness reasons ("postgres", "sqlite").
    fn kind(&self) -> &'static str;
    /// The write batches run so far (`batch`).
    fn write_batches(&self) -> WriteBatches;
}
