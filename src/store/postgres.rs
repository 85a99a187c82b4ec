//! PostgreSQL adapter (the fleet store): deadpool-postgres pool, refinery
//! migrations under an advisory lock, TLS through rustls when the URL's
//! `sslmode` asks for it.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use async_trait::async_trait;
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::NoTls;

use super::sql::{Db, Mode, Row, Tx, Val, Work};
use super::StoreError;

mod embedded {
    refinery::embed_migrations!("sql/postgres");
}

/// Arbitrary constant naming the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x5245_4341_4c4c; // "RECALL"

/// A pooled PostgreSQL connection source.
pub struct PgDb {
    pool: Pool,
}

/// The libpq `sslmode` values Recall understands, and what each means here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    /// No TLS (`disable`; also `allow`, `prefer` and no `sslmode`: plaintext,
    /// as before, meant for loopback).
    Plain,
    /// TLS required; the chain is verified (`require`, `verify-ca`).
    Chain,
    /// TLS required; chain and hostname verified (`verify-full`).
    Full,
}

/// Takes `sslmode` and `sslrootcert` out of a URL or key=value connection
/// string (tokio-postgres parses neither `verify-*` nor `sslrootcert`).
fn split_tls_options(url: &str) -> Result<(String, SslMode, Option<String>), StoreError> {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: &str| -> bool {
        match key {
            "sslmode" => {
                mode = Some(value.to_owned());
                true
            }
            "sslrootcert" => {
                root = Some(value.to_owned());
                true
            }
            _ => false,
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        !take(k, v)
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_owned(),
        }
    } else {
        url.split_whitespace()
            .filter(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                !take(k.trim(), v.trim())
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mode = match mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => SslMode::Plain,
        Some("require" | "verify-ca") => SslMode::Chain,
        Some("verify-full") => SslMode::Full,
        Some(other) => {
            return Err(StoreError::Config(format!(
                "RECALL_DATABASE_URL: sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            )))
        }
    };
    Ok((rest, mode, root))
}

impl PgDb {
    /// Builds a pool for `url`; connections are opened lazily.
    pub fn connect(url: &str, max_size: usize) -> Result<Self, StoreError> {
        PgDb::connect_tls(url, max_size, None)
    }

    /// `connect`, trusting `ca_file` besides the system roots when the URL's
    /// `sslmode` asks for TLS (`sslrootcert` in the URL serves too).
    pub fn connect_tls(
        url: &str,
        max_size: usize,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, StoreError> {
        let (url, mode, root) = split_tls_options(url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Config(format!("bad RECALL_DATABASE_URL: {e}")))?;
        let manager_config = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match mode {
            SslMode::Plain => {
                if !crate::tls::url_host_is_loopback(&url) && !url.contains("host=/") {
                    tracing::warn!(
                        "RECALL_DATABASE_URL is plaintext to a non-loopback host; add ?sslmode=verify-full"
                    );
                }
                Manager::from_config(config, NoTls, manager_config())
            }
            SslMode::Chain | SslMode::Full => {
                let root = root.map(std::path::PathBuf::from);
                let ca = root.as_deref().or(ca_file);
                let roots =
                    crate::tls::roots(ca, "RECALL_DATABASE_CA_FILE").map_err(StoreError::Config)?;
                let verify = if mode == SslMode::Full {
                    crate::tls::Verify::Full
                } else {
                    crate::tls::Verify::Chain
                };
                let tls = crate::tls::client_config(roots, verify).map_err(StoreError::Config)?;
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Manager::from_config(
                    config,
                    tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                    manager_config(),
                )
            }
        };
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(5)))
            .create_timeout(Some(std::time::Duration::from_secs(3)))
            .build()
            .map_err(|e| StoreError::Config(format!("pool: {e}")))?;
        Ok(Self { pool })
    }

    /// A transaction begun with `begin`. The guard exists before `BEGIN`
    /// is sent, so a caller dropped at that await still rolls back.
    async fn begin_with(pool: &Pool, begin: &str) -> Result<PgTx, StoreError> {
        let obj = object(pool).await?;
        let tx = PgTx {
            obj: Some(obj),
            done: false,
        };
        tx.client()?.batch_execute(begin).await.map_err(pg_err)?;
        Ok(tx)
    }
}

async fn object(pool: &Pool) -> Result<Object, StoreError> {
    pool.get().await.map_err(|e| {
        StoreError::Unavailable(format!(
            "postgres: {}",
            crate::tls::explain(&e, "RECALL_DATABASE_CA_FILE")
        ))
    })
}

#[async_trait]
impl Db for PgDb {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut obj = object(&self.pool).await?;
        obj.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg_err)?;
        let client: &mut tokio_postgres::Client = &mut obj;
        let result = embedded::migrations::runner().run_async(client).await;
        let unlock = obj
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        result.map_err(|e| StoreError::Migration(e.to_string()))?;
        unlock.map_err(pg_err)?;
        Ok(())
    }

    async fn run(&self, mode: Mode, work: Work) -> Result<(), StoreError> {
        // A task of its own: whatever becomes of the caller, the work runs
        // from its first statement to its commit (or rollback), and the
        // connection goes back to the pool only after (G11).
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let tx: Box<dyn Tx> = match mode {
                Mode::Write => Box::new(PgDb::begin_with(&pool, "BEGIN").await?),
                Mode::Read | Mode::Autocommit => Box::new(PgReader(object(&pool).await?)),
            };
            work(tx).await;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }

    async fn begin_snapshot(&self) -> Result<Box<dyn Tx>, StoreError> {
        let tx = PgDb::begin_with(
            &self.pool,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        )
        .await?;
        Ok(Box::new(tx))
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}

struct PgTx {
    obj: Option<Object>,
    done: bool,
}

impl PgTx {
    fn client(&self) -> Result<&Object, StoreError> {
        self.obj
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("transaction already finished".into()))
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(obj) = self.obj.take() else {
            return;
        };
        // An unfinished transaction (a read, or a write that returned early)
        // must not go back to the pool open. Roll it back in the background
        // and return the connection; if that cannot finish, the guard
        // detaches the connection instead, and the server rolls back.
        let guard = Detach(Some(obj));
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let mut guard = guard;
                    let rolled_back = match guard.0.as_ref() {
                        Some(obj) => obj.batch_execute("ROLLBACK").await.is_ok(),
                        None => false,
                    };
                    if rolled_back {
                        drop(guard.0.take()); // back to the pool, clean
                    }
                });
            }
            Err(_) => drop(guard),
        }
    }
}

/// Owns a connection whose transaction may still be open: dropped, it
/// takes the connection out of the pool (closing it) rather than return it.
struct Detach(Option<Object>);

impl Drop for Detach {
    fn drop(&mut self) {
        if let Some(obj) = self.0.take() {
            drop(Object::take(obj));
        }
    }
}

#[async_trait]
impl Tx for PgTx {
    async fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        pg_exec(self.client()?, sql, params).await
    }

    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        pg_query(self.client()?, sql, params).await
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let client = self.client()?;
        client.batch_execute("COMMIT").await.map_err(pg_err)?;
        self.done = true;
        Ok(())
    }
}

/// Autocommit reads: no transaction is ever open, so the connection goes
/// straight back to the pool when dropped.
struct PgReader(Object);

#[async_trait]
impl Tx for PgReader {
    async fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        pg_exec(&self.0, sql, params).await
    }

    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        pg_query(&self.0, sql, params).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

async fn pg_exec(client: &Object, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
    let stmt = client.prepare_cached(sql).await.map_err(pg_err)?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
    client.execute(&stmt, &refs).await.map_err(pg_err)
}

async fn pg_query(client: &Object, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
    let stmt = client.prepare_cached(sql).await.map_err(pg_err)?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
    let rows = client.query(&stmt, &refs).await.map_err(pg_err)?;
    rows.iter().map(read_row).collect()
}

fn read_row(row: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i).map(|v| v.map(Val::Int))
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|v| Val::Int(v.into())))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|v| Val::Int(v.into())))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)
                .map(|v| v.map(Val::Blob))
        } else {
            row.try_get::<_, Option<String>>(i)
                .map(|v| v.map(Val::Text))
        };
        out.push(v.map_err(pg_err)?.unwrap_or(Val::Null));
    }
    Ok(Row(out))
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Val::Int(v) => v.to_sql(ty, out),
            Val::Text(v) => v.to_sql(ty, out),
            Val::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Maps a driver error: unique violations are conflicts, lost connections
/// are "unavailable" (503), anything else is a store failure.
fn pg_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict(db.message().to_owned());
        }
        return StoreError::Query(db.message().to_owned());
    }
    StoreError::Unavailable(format!(
        "postgres: {}",
        crate::tls::explain(&e, "RECALL_DATABASE_CA_FILE")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_leave_the_url_and_pick_the_mode() {
        let (url, mode, root) = split_tls_options(
            "postgres://u:p@db:5432/recall?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(url, "postgres://u:p@db:5432/recall?application_name=x");
        assert_eq!(mode, SslMode::Full);
        assert_eq!(root.as_deref(), Some("/ca.pem"));
        let (url, mode, _) = split_tls_options("postgres://db/recall?sslmode=require").unwrap();
        assert_eq!(
            (url.as_str(), mode),
            ("postgres://db/recall", SslMode::Chain)
        );
        let (_, mode, _) = split_tls_options("postgres://127.0.0.1/recall").unwrap();
        assert_eq!(mode, SslMode::Plain);
        let (url, mode, _) =
            split_tls_options("host=db user=u sslmode=verify-ca dbname=recall").unwrap();
        assert_eq!(
            (url.as_str(), mode),
            ("host=db user=u dbname=recall", SslMode::Chain)
        );
        let err = split_tls_options("postgres://db/r?sslmode=sometimes").unwrap_err();
        assert!(err.to_string().contains("RECALL_DATABASE_URL"), "{err}");
    }
}
