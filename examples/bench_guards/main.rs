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

//!
//! `guards`: the four guards; `setup`: settings, servers, logins, tokens
//! and the files written; the PostgreSQL and Redis flags, `pg_exec`, the
//! settings from flags and the users are shared with other examples
//! (`examples/common`).

#[path = "../common/args.rs"]
mod args;
mod guards;
#[path = "../common/pg.rs"]
mod pg;
#[path = "../common/product.rs"]
mod product;
mod setup;
#[path = "../common/users.rs"]
mod users;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use clap::Parser;
use recall::bus::LocalBus;
use recall::events::Meta;
use recall::service::Recall;
use recall::store::Store;
use recall::tokens::Claims;
use serde_json::json;
use uuid::Uuid;

use crate::guards::{
    naive_ctx, naive_guarded, open, recall_guarded, stateful_guarded, NaiveCtx, PgCtx,
};
use crate::pg::pg_exec;
use crate::product::clear_recall_env;
use crate::setup::{
    db_url, hex_id, login_many, serve, settings, sign_many, status, write_lines, Login,
};
use crate::users::register_users;

#[derive(Parser, Debug)]
struct Args {
    /// Work directory for token files, ports and the ready/stop markers.
    #[arg(long)]
    dir: PathBuf,
    #[command(flatten)]
    servers: args::Servers,
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

fn progress(msg: &str) {
    eprintln!("    [guards] {msg}");
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
    let store = Store::open(None, &s.sqlite_path(), &s.master_key)?;
    store.migrate().await?;
    let (recall, tasks) =
        recall::startup::start_with(s, store, Arc::new(LocalBus::default())).await?;
    let users = register_users(&recall, 8).await?;
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
    pg_exec(&args.servers.pg, &format!("CREATE DATABASE {db_name}")).await?;
    let db = db_url(&args.servers.pg, &db_name);
    let expires = recall::clock::Timestamp::now().ms() + 3_600_000;
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
    let naive = naive_ctx(&keyring, &kid, &args.servers.redis)?;
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
        &args.servers.pg,
        &format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"),
    )
    .await;
    if let Ok(mut conn) = redis::Client::open(args.servers.redis.as_str())?
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
    let mut conn = redis::Client::open(args.servers.redis.as_str())?
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
