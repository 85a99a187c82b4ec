//! PostgreSQL adapter (the fleet store): deadpool-postgres pool, refinery
//! migrations under an advisory lock, TLS through rustls when the URL's
//! `sslmode` asks for it. Write units are grouped into batches by one task
//! per pool (`batch`); a connection whose server answers read-only leaves
//! the pool, so after a failover the next one finds the new primary
//! (multi-host URLs with `target_session_attrs=read-write`).
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::NoTls;

use super::batch::{BatchStats, Queued};
use super::pg_url::{split_tls_options, SslMode};
use super::sql::{Db, Mode, Row, Tx, Val, Work, WriteBatches};
use super::StoreError;

mod batches;

mod embedded {
    refinery::embed_migrations!("sql/postgres");
}

/// Arbitrary constant naming the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x5245_4341_4c4c; // "RECALL"

/// A pooled PostgreSQL connection source.
pub struct PgDb {
    pool: Pool,
    /// Where write units wait for the next batch (`batch`).
    batcher: OnceLock<mpsc::UnboundedSender<Queued>>,
    stats: Arc<BatchStats>,
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
        Ok(Self {
            pool,
            batcher: OnceLock::new(),
            stats: Arc::default(),
        })
    }

    /// A transaction begun with `begin`. The guard exists before `BEGIN`
    /// is sent, so a caller dropped at that await still rolls back.
    async fn begin_with(pool: &Pool, begin: &str) -> Result<PgTx, StoreError> {
        let tx = PgTx::on(object(pool).await?);
        let begun = tx.client()?.batch_execute(begin).await;
        tx.seen(begun)?;
        Ok(tx)
    }

    /// The queue of this pool's write batcher, started on first use.
    fn batcher(&self) -> &mpsc::UnboundedSender<Queued> {
        self.batcher.get_or_init(|| {
            let (queue, waiting) = mpsc::unbounded_channel();
            tokio::spawn(batches::batch_loop(
                self.pool.clone(),
                waiting,
                self.stats.clone(),
            ));
            queue
        })
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
        if mode == Mode::Write {
            let (unit, ran) = Queued::new(work);
            self.batcher()
                .send(unit)
                .map_err(|_| StoreError::Unavailable("the write batcher is gone".into()))?;
            return Queued::wait(ran).await;
        }
        // A task of its own: whatever becomes of the caller, the work runs
        // to its end, and the connection goes back to the pool only after
        // (G11).
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let tx = PgReader {
                obj: Some(object(&pool).await?),
                discard: AtomicBool::new(false),
            };
            let deliver = work(Box::new(tx)).await;
            deliver(Ok(()));
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

    fn write_batches(&self) -> WriteBatches {
        self.stats.read()
    }
}

/// What both connection wrappers share: the pooled connection, and whether
/// it must leave the pool when dropped (its server turned out read-only,
/// a primary that is no more: the next connection finds the new one).
trait Pooled {
    fn obj(&self) -> Option<&Object>;
    fn discard(&self) -> &AtomicBool;

    fn client(&self) -> Result<&Object, StoreError> {
        self.obj()
            .ok_or_else(|| StoreError::Unavailable("transaction already finished".into()))
    }

    /// Maps a driver result, noting a server that can no longer write.
    fn seen<T>(&self, result: Result<T, tokio_postgres::Error>) -> Result<T, StoreError> {
        result.map_err(|e| {
            if read_only(&e) {
                tracing::warn!("postgres answered read-only: dropping the connection");
                self.discard().store(true, Ordering::Relaxed);
            }
            pg_err(e)
        })
    }

    async fn exec_on(&self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        let client = self.client()?;
        let result = pg_exec(client, sql, params).await;
        self.seen(result)
    }

    async fn query_on(&self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        let client = self.client()?;
        let result = pg_query(client, sql, params).await;
        self.seen(result)?.iter().map(read_row).collect()
    }
}

struct PgTx {
    obj: Option<Object>,
    done: bool,
    discard: AtomicBool,
}

impl PgTx {
    /// The guard of a transaction about to begin on `obj`: dropped before
    /// it is done, it rolls back (or closes the connection).
    fn on(obj: Object) -> Self {
        PgTx {
            obj: Some(obj),
            done: false,
            discard: AtomicBool::new(false),
        }
    }
}

impl Pooled for PgTx {
    fn obj(&self) -> Option<&Object> {
        self.obj.as_ref()
    }
    fn discard(&self) -> &AtomicBool {
        &self.discard
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        let Some(obj) = self.obj.take() else {
            return;
        };
        if *self.discard.get_mut() {
            drop(Object::take(obj));
            return;
        }
        if self.done {
            return; // back to the pool
        }
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
        self.exec_on(sql, params).await
    }

    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        self.query_on(sql, params).await
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let committed = self.client()?.batch_execute("COMMIT").await;
        // Whatever COMMIT answered, the transaction is over: a failed one
        // is on a connection that is gone or rolled back.
        self.done = true;
        self.seen(committed)
    }
}

/// Driver parameters for `params`.
fn params_of(params: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|v| v as _).collect()
}

/// Autocommit statements: no transaction is ever open, so the connection
/// goes straight back to the pool when dropped.
struct PgReader {
    obj: Option<Object>,
    discard: AtomicBool,
}

impl Pooled for PgReader {
    fn obj(&self) -> Option<&Object> {
        self.obj.as_ref()
    }
    fn discard(&self) -> &AtomicBool {
        &self.discard
    }
}

impl Drop for PgReader {
    fn drop(&mut self) {
        if let Some(obj) = self.obj.take() {
            if *self.discard.get_mut() {
                drop(Object::take(obj));
            }
        }
    }
}

#[async_trait]
impl Tx for PgReader {
    async fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        self.exec_on(sql, params).await
    }

    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        self.query_on(sql, params).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

async fn pg_exec(client: &Object, sql: &str, params: &[Val]) -> Result<u64, tokio_postgres::Error> {
    let stmt = client.prepare_cached(sql).await?;
    client.execute(&stmt, &params_of(params)).await
}

async fn pg_query(
    client: &Object,
    sql: &str,
    params: &[Val],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(sql).await?;
    client.query(&stmt, &params_of(params)).await
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

/// A server that can no longer write: a standby, or a primary that has
/// been demoted.
fn read_only(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
}

/// Maps a driver error: unique violations are conflicts; lost connections,
/// a server shutting down, starting, read-only or resolving a deadlock are
/// "unavailable" (503: try again, perhaps on the new primary); anything
/// else is a store failure.
fn pg_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if code == &SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict(db.message().to_owned());
        }
        let passing = [
            SqlState::READ_ONLY_SQL_TRANSACTION,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_SERIALIZATION_FAILURE,
        ];
        if passing.contains(code) {
            return StoreError::Unavailable(format!("postgres: {}", db.message()));
        }
        return StoreError::Query(db.message().to_owned());
    }
    StoreError::Unavailable(format!(
        "postgres: {}",
        crate::tls::explain(&e, "RECALL_DATABASE_CA_FILE")
    ))
}
