//! Request-path benchmark servers (issue 5, measure 1), driven by wrk from
//! `scripts/bench.sh`. One process serves the same handler behind four
//! guards, each on its own 127.0.0.1 port:
//!
//! - `none`: no auth (the upper bound);
//! - `recall`: Recall's `Authenticated` extractor (EdDSA verify through the
//!   verified-token cache, then the in-memory revocation state), on a Recall
//!   core over embedded SQLite and the in-process bus;
//! - `naive`: the guard a team writes by hand: `jsonwebtoken::decode`
//!   (EdDSA, iss, aud, exp, nbf; the key built once at start) then a Redis
//!   `EXISTS denylist:<jti>` per request;
//! - `stateful`: an opaque session id looked up in PostgreSQL per request.
//!
//! It writes into `--dir`: `tokens.txt` (real access tokens from
//! `Recall::login`), `miss_tokens.txt` (freshly signed tokens, for the
//! cache-miss run), `sessions.txt` (opaque ids for `stateful`), `ports.json`,
//! then `ready`. It stops when `--dir/stop` appears, on Ctrl-C, or after
//! `--max-secs`, and drops its PostgreSQL database and Redis keys.

use std::cell::RefCell;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Payload, Server};
use actix_web::{web, App, FromRequest, HttpRequest, HttpResponse, HttpServer};
use clap::Parser;
use futures_util::future::LocalBoxFuture;
use recall::bus::LocalBus;
use recall::config::Settings;
use recall::events::Meta;
use recall::http::errors::ApiError;
use recall::http::extract::{bearer, Authenticated};
use recall::keys::MasterKey;
use recall::service::{LoginInput, Recall};
use recall::store::Store;
use recall::tokens::{Claims, Keyring};
use serde_json::json;
use uuid::Uuid;

#[derive(Parser, Debug)]
struct Args {
    /// Work directory for token files, ports and the ready/stop markers.
    #[arg(long)]
    dir: PathBuf,
    /// PostgreSQL server to create the bench database on.
    #[arg(
        long,
        env = "RECALL_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg: String,
    /// Redis server of the naive denylist.
    #[arg(
        long,
        env = "RECALL_TEST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis: String,
    /// Real logins (access tokens) to rotate through.
    #[arg(long, default_value_t = 256)]
    logins: usize,
    /// Freshly signed tokens for the cache-miss run (0: none).
    #[arg(long, default_value_t = 200_000)]
    miss_tokens: usize,
    /// actix workers per server.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// PostgreSQL connections per actix worker (stateful guard).
    #[arg(long, default_value_t = 4)]
    pg_per_worker: usize,
    /// Exit after this long no matter what.
    #[arg(long, default_value_t = 600)]
    max_secs: u64,
}

const PASSWORD: &str = "correct horse battery";

fn progress(msg: &str) {
    eprintln!("    [guards] {msg}");
}

/// The handler every guard protects: 200 and the caller's user id.
fn ok(user: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain")
        .body(format!("ok {user}"))
}

async fn open() -> HttpResponse {
    ok(&Uuid::nil().to_string())
}

async fn recall_guarded(auth: Authenticated) -> HttpResponse {
    ok(&auth.0.user_id.to_string())
}

async fn naive_guarded(auth: Naive) -> HttpResponse {
    ok(&auth.0.to_string())
}

async fn stateful_guarded(auth: Stateful) -> HttpResponse {
    ok(&auth.0)
}

// --- naive: verify the JWT, then ask Redis --------------------------------

struct NaiveCtx {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
    redis: redis::Client,
}

/// A caller that passed `jsonwebtoken::decode` and the Redis denylist.
struct Naive(Uuid);

thread_local! {
    // One multiplexed connection per actix worker, made on first use on
    // that worker's runtime (no cross-thread hop per request).
    static REDIS: RefCell<Option<redis::aio::MultiplexedConnection>> = const { RefCell::new(None) };
    static PG: RefCell<Option<deadpool_postgres::Pool>> = const { RefCell::new(None) };
}

async fn redis_conn(
    client: &redis::Client,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    if let Some(conn) = REDIS.with(|r| r.borrow().clone()) {
        return Ok(conn);
    }
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    REDIS.with(|r| *r.borrow_mut() = Some(conn.clone()));
    Ok(conn)
}

/// The naive guard's key and rules, as a team would set up jsonwebtoken.
fn naive_ctx(keyring: &Keyring, kid: &str, redis: &str) -> anyhow::Result<NaiveCtx> {
    let public = keyring
        .public_key(kid)
        .ok_or_else(|| anyhow::anyhow!("no public key for {kid}"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&[keyring.issuer()]);
    validation.set_audience(&[keyring.audience()]);
    validation.leeway = recall::tokens::LEEWAY_SECS;
    validation.validate_nbf = true;
    Ok(NaiveCtx {
        key: jsonwebtoken::DecodingKey::from_ed_der(&public),
        validation,
        redis: redis::Client::open(redis)?,
    })
}

impl FromRequest for Naive {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let checked = req
            .app_data::<web::Data<NaiveCtx>>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("naive context missing".into()))
            .and_then(|ctx| {
                let token = bearer(req)?;
                let claims = jsonwebtoken::decode::<Claims>(token, &ctx.key, &ctx.validation)
                    .map_err(|e| ApiError::InvalidToken(e.to_string()))?
                    .claims;
                Ok((ctx, claims))
            });
        Box::pin(async move {
            let (ctx, claims) = checked?;
            let unavailable = |e: redis::RedisError| ApiError::Unavailable(e.to_string());
            let mut conn = redis_conn(&ctx.redis).await.map_err(unavailable)?;
            let revoked: i64 = redis::cmd("EXISTS")
                .arg(format!("denylist:{}", claims.jti))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if revoked != 0 {
                return Err(ApiError::InvalidToken("the token was revoked".into()));
            }
            Ok(Naive(claims.sub))
        })
    }
}

// --- stateful: a session row per request ------------------------------------

const SESSION_SQL: &str =
    "SELECT user_id FROM sessions WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2";

struct PgCtx {
    config: tokio_postgres::Config,
    per_worker: usize,
}

/// A caller whose opaque session id names a live row.
struct Stateful(String);

fn pg_pool(ctx: &PgCtx) -> Result<deadpool_postgres::Pool, ApiError> {
    if let Some(pool) = PG.with(|p| p.borrow().clone()) {
        return Ok(pool);
    }
    let manager = deadpool_postgres::Manager::from_config(
        ctx.config.clone(),
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(ctx.per_worker)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    PG.with(|p| *p.borrow_mut() = Some(pool.clone()));
    Ok(pool)
}

impl FromRequest for Stateful {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = req
            .app_data::<web::Data<PgCtx>>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("pg context missing".into()))
            .and_then(|ctx| Ok((pg_pool(&ctx)?, bearer(req)?.to_owned())));
        Box::pin(async move {
            let (pool, sid) = found?;
            let unavailable = |e: String| ApiError::Unavailable(e);
            let client = pool.get().await.map_err(|e| unavailable(e.to_string()))?;
            let stmt = client
                .prepare_cached(SESSION_SQL)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            let now = recall::sync::now_ms();
            let row = client
                .query_opt(&stmt, &[&sid, &now])
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            match row {
                Some(row) => Ok(Stateful(row.get(0))),
                None => Err(ApiError::InvalidToken("unknown or ended session".into())),
            }
        })
    }
}

// --- setup --------------------------------------------------------------------

async fn pg_exec(url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    client.batch_execute(sql).await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

fn db_url(admin: &str, name: &str) -> String {
    let root = admin.rsplit_once('/').map_or(admin, |(r, _)| r);
    format!("{root}/{name}")
}

fn product_settings(flags: &[String]) -> anyhow::Result<Settings> {
    Ok(Settings::from_flags(flags)?)
}

/// `RECALL_*` variables of the calling shell must not change what is measured.
fn clear_recall_env() {
    for (key, _) in std::env::vars() {
        if key.starts_with("RECALL_") && !key.starts_with("RECALL_TEST_") {
            std::env::remove_var(key);
        }
    }
}

fn settings(data_dir: &Path) -> anyhow::Result<Settings> {
    product_settings(&[
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--master-key".into(),
        MasterKey::generate().to_base64(),
        "--redis-channel".into(),
        format!("recall:bench:{}", Uuid::new_v4().simple()),
        // Long enough that no token expires during the run.
        "--access-ttl-secs".into(),
        "3600".into(),
    ])
}

fn serve(
    workers: usize,
    configure: impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
) -> anyhow::Result<(Server, u16)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || App::new().configure(configure.clone()))
        .workers(workers)
        .disable_signals()
        .listen(listener)?
        .run();
    Ok((server, port))
}

/// One logged-in session: its access token and the ids the guards need.
struct Login {
    token: String,
    claims: Claims,
}

async fn login_many(
    recall: &Arc<Recall>,
    users: &[String],
    n: usize,
) -> anyhow::Result<Vec<Login>> {
    let mut out = Vec::with_capacity(n);
    // A few at a time: the argon2 pool has one worker per core.
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let mut jobs = Vec::new();
        for &i in chunk {
            let recall = recall.clone();
            let input = LoginInput {
                username: users[i % users.len()].clone(),
                password: PASSWORD.into(),
                client_type: None,
                device_id: None,
                user_agent: None,
                ip: None,
                dpop: Default::default(),
            };
            jobs.push(tokio::spawn(async move {
                recall.auth().login(input, &Meta::default()).await
            }));
        }
        for job in jobs {
            let res = job.await?.map_err(|e| anyhow::anyhow!("login: {e}"))?;
            let (claims, _) = recall
                .sync()
                .keyring()
                .verify(&res.access_token)
                .map_err(|e| anyhow::anyhow!("verify: {e}"))?;
            out.push(Login {
                token: res.access_token,
                claims,
            });
        }
    }
    Ok(out)
}

/// Signs `n` distinct tokens (fresh jti) for the given sessions, on all cores.
fn sign_many(keyring: &Arc<Keyring>, kid: &str, base: &[Claims], n: usize) -> Vec<String> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let per = n.div_ceil(cores);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..cores)
            .map(|t| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(per);
                    for i in (t * per)..((t + 1) * per).min(n) {
                        let claims = Claims {
                            jti: Uuid::now_v7(),
                            ..base[i % base.len()].clone()
                        };
                        if let Ok(t) = keyring.issue(kid, &claims) {
                            out.push(t);
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn write_lines(path: &Path, lines: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let mut text = String::new();
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    std::fs::write(path, text)?;
    Ok(())
}

fn hex_id() -> String {
    let b: [u8; 32] = recall::random::bytes();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn status(http: &reqwest::Client, port: u16, bearer: &str) -> u16 {
    http.get(format!("http://127.0.0.1:{port}/"))
        .bearer_auth(bearer)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    clear_recall_env();
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(guards(args))
}

async fn guards(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let started = Instant::now();
    let data_dir = args.dir.join("recall-data");
    let _ = std::fs::remove_dir_all(&data_dir);

    // (b) Recall core: embedded SQLite, in-process bus.
    let s = settings(&data_dir)?;
    let store = Store::open(None, &s.sqlite_path())?;
    store.migrate().await?;
    let (recall, tasks) = Recall::start_with(s, store, Arc::new(LocalBus::default())).await?;
    let mut users = Vec::new();
    for i in 0..8 {
        let name = format!("bench-{i}-{}", &Uuid::new_v4().simple().to_string()[..8]);
        recall
            .auth()
            .register(&name, PASSWORD.into(), &Meta::default())
            .await
            .map_err(|e| anyhow::anyhow!("register: {e}"))?;
        users.push(name);
    }
    // Real logins, plus three spare sessions to prove each guard rejects.
    let logins = login_many(&recall, &users, args.logins + 3).await?;
    let (logins, spare) = logins.split_at(args.logins);
    progress(&format!(
        "{} real logins through Recall::login in {:.1}s",
        logins.len(),
        started.elapsed().as_secs_f64()
    ));
    let kid = recall
        .sync()
        .state()
        .active_kid()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no active key"))?;
    let keyring = recall.sync().keyring().clone();
    let signing = Instant::now();
    let base: Vec<Claims> = logins.iter().map(|l| l.claims.clone()).collect();
    let miss = sign_many(&keyring, &kid, &base, args.miss_tokens);
    progress(&format!(
        "{} fresh tokens for the miss run signed in {:.1}s",
        miss.len(),
        signing.elapsed().as_secs_f64()
    ));

    // (d) A bench database with a sessions table: the real sessions plus
    // 100,000 others so the index is not trivially small.
    let db_name = format!("recall_bench_{}", Uuid::new_v4().simple());
    pg_exec(&args.pg, &format!("CREATE DATABASE {db_name}")).await?;
    let db = db_url(&args.pg, &db_name);
    let expires = recall::sync::now_ms() + 3_600_000;
    let opaque: Vec<String> = logins.iter().map(|_| hex_id()).collect();
    let mut sql = format!(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, \
         expires_at BIGINT NOT NULL, revoked_at BIGINT); \
         INSERT INTO sessions SELECT md5(g::text) || md5((-g)::text), md5(g::text), {expires}, NULL \
         FROM generate_series(1, 100000) g;"
    );
    for (id, l) in opaque.iter().zip(logins) {
        sql.push_str(&format!(
            "INSERT INTO sessions VALUES ('{id}', '{}', {expires}, NULL);",
            l.claims.sub
        ));
    }
    let revoked_opaque = hex_id();
    sql.push_str(&format!(
        "INSERT INTO sessions VALUES ('{revoked_opaque}', '{}', {expires}, NULL); ANALYZE sessions;",
        spare[0].claims.sub
    ));
    let naive = naive_ctx(&keyring, &kid, &args.redis)?;
    let result = run(
        &args,
        &recall,
        naive,
        logins,
        spare,
        &miss,
        &opaque,
        &revoked_opaque,
        &db,
        &sql,
    )
    .await;

    // Clean up whatever happened.
    for t in &tasks {
        t.abort();
    }
    let _ = pg_exec(
        &args.pg,
        &format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"),
    )
    .await;
    if let Ok(mut conn) = redis::Client::open(args.redis.as_str())?
        .get_multiplexed_async_connection()
        .await
    {
        let _: redis::RedisResult<i64> = redis::cmd("DEL")
            .arg(format!("denylist:{}", spare[1].claims.jti))
            .query_async(&mut conn)
            .await;
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    progress("stopped; bench database dropped");
    result
}

#[allow(clippy::too_many_arguments)]
async fn run(
    args: &Args,
    recall: &Arc<Recall>,
    naive: NaiveCtx,
    logins: &[Login],
    spare: &[Login],
    miss: &[String],
    opaque: &[String],
    revoked_opaque: &str,
    db: &str,
    sql: &str,
) -> anyhow::Result<()> {
    pg_exec(db, sql).await?;

    let recall_data = web::Data::from(recall.clone());
    let naive_data = web::Data::new(naive);
    let pg_data = web::Data::new(PgCtx {
        config: db.parse()?,
        per_worker: args.pg_per_worker,
    });
    let w = args.workers;
    let (none_srv, none_port) = serve(w, |cfg| {
        cfg.route("/", web::get().to(open));
    })?;
    let (recall_srv, recall_port) = serve(w, move |cfg| {
        cfg.app_data(recall_data.clone())
            .route("/", web::get().to(recall_guarded));
    })?;
    let (naive_srv, naive_port) = serve(w, move |cfg| {
        cfg.app_data(naive_data.clone())
            .route("/", web::get().to(naive_guarded));
    })?;
    let (pg_srv, pg_port) = serve(w, move |cfg| {
        cfg.app_data(pg_data.clone())
            .route("/", web::get().to(stateful_guarded));
    })?;
    let handles = [
        none_srv.handle(),
        recall_srv.handle(),
        naive_srv.handle(),
        pg_srv.handle(),
    ];
    for srv in [none_srv, recall_srv, naive_srv, pg_srv] {
        tokio::spawn(srv);
    }

    // Every guard must accept a live credential and refuse a revoked one,
    // or the comparison means nothing.
    let http = reqwest::Client::new();
    let first = &logins[0].token;
    let live = [
        status(&http, none_port, first).await,
        status(&http, recall_port, first).await,
        status(&http, naive_port, first).await,
        status(&http, pg_port, &opaque[0]).await,
    ];
    let principal = recall
        .authenticate(&spare[0].token)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    recall
        .auth()
        .logout(&principal, &Meta::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut conn = redis::Client::open(args.redis.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let _: () = redis::cmd("SET")
        .arg(format!("denylist:{}", spare[1].claims.jti))
        .arg(1)
        .arg("EX")
        .arg(900)
        .query_async(&mut conn)
        .await?;
    pg_exec(
        db,
        &format!("UPDATE sessions SET revoked_at = 1 WHERE id = '{revoked_opaque}'"),
    )
    .await?;
    let revoked = [
        status(&http, recall_port, &spare[0].token).await,
        status(&http, naive_port, &spare[1].token).await,
        status(&http, pg_port, revoked_opaque).await,
    ];
    progress(&format!(
        "self-check: live credential -> {live:?} (none, recall, naive, stateful); \
         revoked -> {revoked:?} (recall, naive, stateful)"
    ));
    anyhow::ensure!(live == [200; 4], "a guard refused a live credential");
    anyhow::ensure!(revoked == [401; 3], "a guard admitted a revoked credential");

    write_lines(
        &args.dir.join("tokens.txt"),
        logins.iter().map(|l| l.token.clone()),
    )?;
    write_lines(&args.dir.join("miss_tokens.txt"), miss.iter().cloned())?;
    write_lines(&args.dir.join("sessions.txt"), opaque.iter().cloned())?;
    let ports = json!({
        "none": none_port, "recall": recall_port, "naive": naive_port, "stateful": pg_port,
        "workers": args.workers, "pg_per_worker": args.pg_per_worker,
        "logins": logins.len(), "miss_tokens": miss.len(),
    });
    std::fs::write(args.dir.join("ports.json"), ports.to_string())?;
    std::fs::write(args.dir.join("ready"), "")?;
    progress(&format!(
        "ready: none={none_port} recall={recall_port} naive={naive_port} stateful={pg_port}"
    ));

    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let stop = args.dir.join("stop");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if stop.exists() || Instant::now() > deadline {
                    break;
                }
            }
        }
    }
    for h in handles {
        h.stop(true).await;
    }
    Ok(())
}
