//! Embedded SQLite adapter (one instance, nothing to set up). Every
//! connection lives on a thread of its own, so no blocking SQLite call, the
//! fsync at commit included, ever runs on an async worker. A store call is
//! one job on that thread, from `BEGIN` to `COMMIT`: one hop per call, not
//! one per statement, and a caller that vanishes mid-call cannot leave the
//! connection inside a transaction (G11), because the job runs to its end
//! whoever waits for it, and the thread rolls back whatever a job left open
//! before it runs the next. One writer connection, where `BEGIN IMMEDIATE`
//! takes the write lock up front so sequence order equals commit order
//! (G6), and where the write units waiting when it is free share one
//! transaction and one fsync (`batch`); a few reader connections that, in WAL mode, read beside the writer
//! without waiting; and one for snapshot reads that span several awaits.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use parking_lot::Mutex as SyncMutex;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use super::batch::{
    refuse, run_units, settle, Ahead, Answer, Batch, BatchStats, Last, Queued, Statements,
    MAX_UNITS,
};
use super::chain;
use super::sql::{Db, Links, Mode, Row, Tx, Val, Work, WriteBatches};
use super::StoreError;

mod embedded {
    refinery::embed_migrations!("sql/sqlite");
}

/// Reader connections beside the writer.
const READERS: usize = 2;

/// A connection shared by its thread and the `Tx` of the job it runs.
type Conn = Arc<SyncMutex<Connection>>;

/// What a connection's thread is sent: a job to run alone, or (the
/// writer's) a write unit to run in the next batch.
enum Job {
    Alone(Box<dyn FnOnce(&Conn) + Send>),
    Write(Queued),
}

/// A connection on its own thread, running the jobs it is sent in order;
/// the write units waiting when it is free run together, one batch.
pub struct ConnThread {
    jobs: mpsc::Sender<Job>,
    stats: Arc<BatchStats>,
}

impl ConnThread {
    fn spawn(conn: Connection, name: String) -> Result<Self, StoreError> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let conn: Conn = Arc::new(SyncMutex::new(conn));
        let stats = Arc::<BatchStats>::default();
        let counted = stats.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                // Ends when every sender (the `SqliteDb`) is gone.
                while let Ok(job) = inbox.recv() {
                    match job {
                        Job::Alone(f) => f(&conn),
                        Job::Write(first) => {
                            let mut units = vec![first];
                            let mut after = Vec::new();
                            while units.len() < MAX_UNITS {
                                match inbox.try_recv() {
                                    Ok(Job::Write(unit)) => units.push(unit),
                                    Ok(Job::Alone(f)) => after.push(f),
                                    Err(_) => break,
                                }
                            }
                            counted.record(units.len());
                            run_batch(&conn, units);
                            for f in after {
                                f(&conn);
                            }
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Config(format!("sqlite thread: {e}")))?;
        Ok(ConnThread { jobs, stats })
    }

    /// Runs `f` on the connection's thread and waits for its answer. Once
    /// sent, `f` runs whether or not anyone still waits.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(move |c| {
            let _ = tx.send(f(c));
        });
        rx.await
            .map_err(|_| StoreError::Unavailable("sqlite connection thread is gone".into()))?
    }

    /// Queues `f` without waiting (a rollback from `Drop`).
    fn send(&self, f: impl FnOnce(&Conn) + Send + 'static) {
        let _ = self.jobs.send(Job::Alone(Box::new(f)));
    }

    /// Queues a write unit for the next batch and waits until it has run.
    async fn write(&self, work: Work) -> Result<(), StoreError> {
        let (unit, ran) = Queued::new(work);
        self.jobs
            .send(Job::Write(unit))
            .map_err(|_| StoreError::Unavailable("sqlite connection thread is gone".into()))?;
        Queued::wait(ran).await
    }
}

/// Rolls back a transaction that something left open on `conn`, so the next
/// job starts clean whatever the last one did. Loud: it means a bug.
fn ensure_clean(conn: &Conn, when: &str) {
    let c = conn.lock();
    if !c.is_autocommit() {
        tracing::error!(
            when,
            "sqlite connection was left inside a transaction; rolling it back"
        );
        let _ = c.execute_batch("ROLLBACK");
    }
}

/// Runs one read or autocommit unit to its end on this thread; its only
/// awaits are its `Tx`'s statements, each run here and ready at once. A
/// work that panics, or awaits anything else, is dropped.
fn run_work(conn: &Conn, work: Work) -> Result<(), StoreError> {
    ensure_clean(conn, "before a unit of work");
    let tx: Box<dyn Tx> = Box::new(DirectTx { conn: conn.clone() });
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| poll_once(work(tx))));
    ensure_clean(conn, "after a unit of work");
    match outcome {
        Ok(Some(deliver)) => {
            deliver(Ok(()));
            Ok(())
        }
        Ok(None) => Err(awaited_elsewhere()),
        Err(_) => Err(StoreError::Query("a store call panicked".into())),
    }
}

/// Polls a unit once: its statements run on this thread, so it is done.
fn poll_once<F: std::future::Future>(work: F) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    let mut cx = Context::from_waker(Waker::noop());
    match work.as_mut().poll(&mut cx) {
        Poll::Ready(done) => Some(done),
        Poll::Pending => None,
    }
}

fn awaited_elsewhere() -> StoreError {
    StoreError::Query("a store call awaited something other than its connection".into())
}

/// Runs one batch of write units (module `batch`): `BEGIN IMMEDIATE`, each
/// unit in a savepoint of its own, one `COMMIT` (one fsync) for them all.
fn run_batch(conn: &Conn, units: Vec<Queued>) {
    ensure_clean(conn, "before a write batch");
    let begun = {
        let c = conn.lock();
        c.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
            let sql = "SELECT last, head FROM recall_seq WHERE id = 1";
            c.query_row(sql, [], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Option<String>>(1)?))
            })
        })
    };
    let batch = match begun.map_err(sqlite_err).and_then(|(last, head)| {
        Ok(Links {
            last,
            prev: chain::head_of(head)?,
        })
    }) {
        Ok(end) => Batch::new(SqliteStatements(conn.clone()), end),
        Err(e) => {
            ensure_clean(conn, "after a write batch that did not begin");
            return refuse(units, &e);
        }
    };
    // The units' statements run here, so the batch is done in one poll;
    // a unit that awaits anything else leaves it pending, and dropping it
    // rolls everything back (`ensure_clean`), its callers unanswered.
    let (finished, broken) = match poll_once(run_units(&batch, units)) {
        Some(done) => done,
        None => (Vec::new(), Some(awaited_elsewhere())),
    };
    let committed = match broken {
        Some(e) => Err(e),
        // Ready at once: its statements run here.
        None => poll_once(batch.commit()).unwrap_or_else(|| Err(awaited_elsewhere())),
    };
    ensure_clean(conn, "after a write batch");
    settle(finished, committed);
}

/// A batch's statements on the writer's connection, run at once, in order.
struct SqliteStatements(Conn);

#[async_trait]
impl Statements for SqliteStatements {
    async fn send(
        &self,
        ahead: Vec<Ahead>,
        wanted: &[Last<'_>],
    ) -> Result<Vec<Answer>, StoreError> {
        let conn = self.0.lock();
        for item in ahead {
            match item {
                Ahead::Simple(sql) => conn.execute_batch(&sql).map_err(sqlite_err)?,
                Ahead::Later((sql, params)) => {
                    sqlite_exec(&conn, sql, &params)?;
                }
            }
        }
        wanted
            .iter()
            .map(|last| match last.rows {
                true => sqlite_query(&conn, last.sql, last.params).map(Answer::Rows),
                false => sqlite_exec(&conn, last.sql, last.params).map(Answer::Changed),
            })
            .collect()
    }
}

/// The embedded store: one SQLite file.
pub struct SqliteDb {
    writer: ConnThread,
    readers: Vec<ConnThread>,
    next_reader: AtomicUsize,
    /// Snapshot reads hold their connection across the caller's awaits.
    snapshot: Arc<Mutex<ConnThread>>,
}

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite_err)?;
    // FULL sync so an acknowledged commit survives a crash (G1); deleted
    // and overwritten rows zeroed, so an erased user's name and the data
    // key destroyed with it leave no bytes behind in free pages.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA secure_delete = ON;",
    )
    .map_err(sqlite_err)?;
    Ok(conn)
}

impl SqliteDb {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::files::private_dir(dir)
                .map_err(|e| StoreError::Config(format!("data dir {}: {e}", dir.display())))?;
        }
        // The log holds password hashes and sealed keys: owner only, made
        // so before SQLite writes a byte (its WAL and shm follow the mode).
        crate::files::private_file(path)
            .map_err(|e| StoreError::Config(format!("database {}: {e}", path.display())))?;
        let writer = open_conn(path, OpenFlags::default())?;
        // WAL: readers read beside the writer.
        writer
            .execute_batch("PRAGMA journal_mode = WAL;")
            .map_err(sqlite_err)?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            let side = std::path::PathBuf::from(side);
            if side.exists() {
                crate::files::private_file(&side)
                    .map_err(|e| StoreError::Config(format!("database {}: {e}", side.display())))?;
            }
        }
        let read_only = || {
            open_conn(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
        };
        let mut readers = Vec::with_capacity(READERS);
        for n in 0..READERS {
            readers.push(ConnThread::spawn(
                read_only()?,
                format!("recall-sqlite-r{n}"),
            )?);
        }
        let snapshot = ConnThread::spawn(read_only()?, "recall-sqlite-snap".into())?;
        Ok(Self {
            writer: ConnThread::spawn(writer, "recall-sqlite-w".into())?,
            readers,
            next_reader: AtomicUsize::new(0),
            snapshot: Arc::new(Mutex::new(snapshot)),
        })
    }

    /// The next reader, round robin (each runs its queue in order).
    fn reader(&self) -> &ConnThread {
        let n = self.next_reader.fetch_add(1, Ordering::Relaxed);
        self.readers
            .get(n % self.readers.len().max(1))
            .unwrap_or(&self.writer)
    }
}

#[async_trait]
impl Db for SqliteDb {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.writer
            .run(|c| {
                embedded::migrations::runner()
                    .run(&mut *c.lock())
                    .map(|_| ())
                    .map_err(|e| StoreError::Migration(e.to_string()))
            })
            .await
    }

    async fn run(&self, mode: Mode, work: Work) -> Result<(), StoreError> {
        let thread = match mode {
            Mode::Write => return self.writer.write(work).await,
            Mode::Autocommit => &self.writer,
            Mode::Read => self.reader(),
        };
        thread.run(move |c| run_work(c, work)).await
    }

    async fn begin_snapshot(&self) -> Result<Box<dyn Tx>, StoreError> {
        let conn = self.snapshot.clone().lock_owned().await;
        // The guard exists before `BEGIN` is sent: dropped at the await
        // below, it queues the rollback behind the `BEGIN`.
        let tx = SqliteTx { conn, done: false };
        tx.conn
            .run(|c| {
                ensure_clean(c, "before a snapshot");
                c.lock().execute_batch("BEGIN").map_err(sqlite_err)
            })
            .await?;
        Ok(Box::new(tx))
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn write_batches(&self) -> WriteBatches {
        self.writer.stats.read()
    }
}

/// The `Tx` of a read or autocommit unit, used on the connection's own
/// thread: every statement runs at once, so its futures are ready when
/// first polled. It opens no transaction.
struct DirectTx {
    conn: Conn,
}

#[async_trait]
impl Tx for DirectTx {
    async fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        sqlite_exec(&self.conn.lock(), sql, params)
    }

    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        sqlite_query(&self.conn.lock(), sql, params)
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A snapshot transaction spanning several jobs on its own connection.
struct SqliteTx {
    conn: OwnedMutexGuard<ConnThread>,
    done: bool,
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if !self.done {
            // Queued before the guard is released: the next holder's
            // statements run after the rollback.
            self.conn.send(|c| {
                let c = c.lock();
                if !c.is_autocommit() {
                    let _ = c.execute_batch("ROLLBACK");
                }
            });
        }
    }
}

/// Rewrites `$N` placeholders to SQLite's `?N`.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Null => ToSqlOutput::Owned(Value::Null),
            Val::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            Val::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Val::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

#[async_trait]
impl Tx for SqliteTx {
    async fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        let (sql, params) = (sql.to_owned(), params.to_vec());
        self.conn
            .run(move |c| sqlite_exec(&c.lock(), &sql, &params))
            .await
    }

    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        let (sql, params) = (sql.to_owned(), params.to_vec());
        self.conn
            .run(move |c| sqlite_query(&c.lock(), &sql, &params))
            .await
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.conn
            .run(|c| c.lock().execute_batch("COMMIT").map_err(sqlite_err))
            .await?;
        self.done = true;
        Ok(())
    }
}

fn sqlite_exec(conn: &Connection, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
    let mut stmt = conn
        .prepare_cached(&placeholders(sql))
        .map_err(sqlite_err)?;
    let n = stmt
        .execute(rusqlite::params_from_iter(params.iter()))
        .map_err(sqlite_err)?;
    Ok(n as u64)
}

fn sqlite_query(conn: &Connection, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&placeholders(sql))
        .map_err(sqlite_err)?;
    let width = stmt.column_count();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(sqlite_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_err)? {
        let mut vals = Vec::with_capacity(width);
        for i in 0..width {
            vals.push(match row.get_ref(i).map_err(sqlite_err)? {
                ValueRef::Null => Val::Null,
                ValueRef::Integer(v) => Val::Int(v),
                ValueRef::Real(v) => Val::Int(v as i64),
                ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Val::Blob(b.to_vec()),
            });
        }
        out.push(Row(vals));
    }
    Ok(out)
}

fn sqlite_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        if f.code == rusqlite::ErrorCode::ConstraintViolation {
            return StoreError::Conflict(msg.clone().unwrap_or_else(|| e.to_string()));
        }
        if matches!(
            f.code,
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
        ) {
            return StoreError::Unavailable(e.to_string());
        }
    }
    StoreError::Query(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_become_numbered_question_marks() {
        assert_eq!(
            placeholders("SELECT $1, $12 WHERE a = '$x'"),
            "SELECT ?1, ?12 WHERE a = '$x'"
        );
    }
}
