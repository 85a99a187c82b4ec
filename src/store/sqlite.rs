//! Embedded SQLite adapter (one instance, nothing to set up). One connection
//! behind an async mutex: writes are serialised anyway, and `BEGIN IMMEDIATE`
//! takes the write lock up front so sequence order equals commit order (G6).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::Connection;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::sql::{Db, Row, Tx, Val};
use super::StoreError;

mod embedded {
    refinery::embed_migrations!("sql/sqlite");
}

/// The embedded store: one SQLite file.
pub struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteDb {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::keys::private_dir(dir)
                .map_err(|e| StoreError::Config(format!("data dir {}: {e}", dir.display())))?;
        }
        // The log holds password hashes and sealed keys: owner only, made
        // so before SQLite writes a byte (its WAL and shm follow the mode).
        crate::keys::private_file(path)
            .map_err(|e| StoreError::Config(format!("database {}: {e}", path.display())))?;
        let conn = Connection::open(path).map_err(sqlite_err)?;
        // WAL for concurrent readers; FULL sync so an acknowledged commit
        // survives a crash (G1).
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(sqlite_err)?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            let side = std::path::PathBuf::from(side);
            if side.exists() {
                crate::keys::private_file(&side)
                    .map_err(|e| StoreError::Config(format!("database {}: {e}", side.display())))?;
            }
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn begin_with(&self, begin: &str) -> Result<Box<dyn Tx>, StoreError> {
        let guard = self.conn.clone().lock_owned().await;
        guard.execute_batch(begin).map_err(sqlite_err)?;
        Ok(Box::new(SqliteTx {
            conn: guard,
            done: false,
        }))
    }
}

#[async_trait]
impl Db for SqliteDb {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().await;
        embedded::migrations::runner()
            .run(&mut *conn)
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(())
    }

    async fn begin(&self) -> Result<Box<dyn Tx>, StoreError> {
        self.begin_with("BEGIN IMMEDIATE").await
    }

    async fn reader(&self) -> Result<Box<dyn Tx>, StoreError> {
        Ok(Box::new(SqliteReader(self.conn.clone().lock_owned().await)))
    }

    async fn begin_snapshot(&self) -> Result<Box<dyn Tx>, StoreError> {
        self.begin_with("BEGIN").await
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

struct SqliteTx {
    conn: OwnedMutexGuard<Connection>,
    done: bool,
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.conn.execute_batch("ROLLBACK");
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
        sqlite_exec(&self.conn, sql, params)
    }

    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        sqlite_query(&self.conn, sql, params)
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT").map_err(sqlite_err)?;
        self.done = true;
        Ok(())
    }
}

/// Autocommit reads on the one connection.
struct SqliteReader(OwnedMutexGuard<Connection>);

#[async_trait]
impl Tx for SqliteReader {
    async fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        sqlite_exec(&self.0, sql, params)
    }

    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        sqlite_query(&self.0, sql, params)
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
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
