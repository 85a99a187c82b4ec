//! Embedded SQLite adapter (one instance, nothing to set up). Every
//! connection lives on a thread of its own, so no blocking SQLite call, the
//! fsync at commit included, ever runs on an async worker: a transaction
//! holds its connection (an async mutex) and sends it one statement at a
//! time. One writer connection, where `BEGIN IMMEDIATE` takes the write lock
//! up front so sequence order equals commit order (G6); and a few reader
//! connections that, in WAL mode, read beside the writer without waiting.

use std::path::Path;
use std::sync::{mpsc, Arc};

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use super::sql::{Db, Row, Tx, Val};
use super::StoreError;

mod embedded {
    refinery::embed_migrations!("sql/sqlite");
}

/// Reader connections beside the writer.
const READERS: usize = 2;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A connection on its own thread, running the jobs it is sent in order.
pub struct ConnThread {
    jobs: mpsc::Sender<Job>,
}

impl ConnThread {
    fn spawn(mut conn: Connection, name: String) -> Result<Self, StoreError> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                // Ends when every sender (the `SqliteDb`) is gone.
                while let Ok(job) = inbox.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::Config(format!("sqlite thread: {e}")))?;
        Ok(ConnThread { jobs })
    }

    /// Runs `f` on the connection's thread and waits for its answer.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(move |c| {
            let _ = tx.send(f(c));
        });
        rx.await
            .map_err(|_| StoreError::Unavailable("sqlite connection thread is gone".into()))?
    }

    /// Queues `f` without waiting (a rollback from `Drop`).
    fn send(&self, f: impl FnOnce(&mut Connection) + Send + 'static) {
        let _ = self.jobs.send(Box::new(f));
    }
}

/// The embedded store: one SQLite file.
pub struct SqliteDb {
    writer: Arc<Mutex<ConnThread>>,
    readers: Vec<Arc<Mutex<ConnThread>>>,
}

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite_err)?;
    // FULL sync so an acknowledged commit survives a crash (G1).
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
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
        let mut readers = Vec::with_capacity(READERS);
        for n in 0..READERS {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = open_conn(path, flags)?;
            readers.push(Arc::new(Mutex::new(ConnThread::spawn(
                conn,
                format!("recall-sqlite-r{n}"),
            )?)));
        }
        Ok(Self {
            writer: Arc::new(Mutex::new(ConnThread::spawn(
                writer,
                "recall-sqlite-w".into(),
            )?)),
            readers,
        })
    }

    /// A free reader connection, or the first to become free.
    async fn reader_conn(&self) -> OwnedMutexGuard<ConnThread> {
        for r in &self.readers {
            if let Ok(guard) = r.clone().try_lock_owned() {
                return guard;
            }
        }
        let pick = crate::random::below(self.readers.len());
        match self.readers.get(pick) {
            Some(r) => r.clone().lock_owned().await,
            None => self.writer.clone().lock_owned().await,
        }
    }

    async fn begin_on(
        conn: OwnedMutexGuard<ConnThread>,
        begin: &'static str,
    ) -> Result<Box<dyn Tx>, StoreError> {
        conn.run(move |c| c.execute_batch(begin).map_err(sqlite_err))
            .await?;
        Ok(Box::new(SqliteTx { conn, done: false }))
    }
}

#[async_trait]
impl Db for SqliteDb {
    async fn migrate(&self) -> Result<(), StoreError> {
        let conn = self.writer.lock().await;
        conn.run(|c| {
            embedded::migrations::runner()
                .run(c)
                .map(|_| ())
                .map_err(|e| StoreError::Migration(e.to_string()))
        })
        .await
    }

    async fn begin(&self) -> Result<Box<dyn Tx>, StoreError> {
        let conn = self.writer.clone().lock_owned().await;
        SqliteDb::begin_on(conn, "BEGIN IMMEDIATE").await
    }

    async fn reader(&self) -> Result<Box<dyn Tx>, StoreError> {
        Ok(Box::new(SqliteReader(self.reader_conn().await)))
    }

    async fn autocommit(&self) -> Result<Box<dyn Tx>, StoreError> {
        Ok(Box::new(SqliteReader(
            self.writer.clone().lock_owned().await,
        )))
    }

    async fn begin_snapshot(&self) -> Result<Box<dyn Tx>, StoreError> {
        let conn = self.reader_conn().await;
        SqliteDb::begin_on(conn, "BEGIN").await
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

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
                let _ = c.execute_batch("ROLLBACK");
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
        run_exec(&self.conn, sql, params).await
    }

    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        run_query(&self.conn, sql, params).await
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.conn
            .run(|c| c.execute_batch("COMMIT").map_err(sqlite_err))
            .await?;
        self.done = true;
        Ok(())
    }
}

/// Autocommit statements on one connection.
struct SqliteReader(OwnedMutexGuard<ConnThread>);

#[async_trait]
impl Tx for SqliteReader {
    async fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        run_exec(&self.0, sql, params).await
    }

    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        run_query(&self.0, sql, params).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

async fn run_exec(conn: &ConnThread, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
    let (sql, params) = (sql.to_owned(), params.to_vec());
    conn.run(move |c| sqlite_exec(c, &sql, &params)).await
}

async fn run_query(conn: &ConnThread, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
    let (sql, params) = (sql.to_owned(), params.to_vec());
    conn.run(move |c| sqlite_query(c, &sql, &params)).await
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
