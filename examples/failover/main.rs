//! PostgreSQL failover under load, run by `scripts/failover.sh`, which
//! makes the two clusters (a primary and its synchronous standby) and
//! hands over the commands that stop the one and promote the other.
//!
//! A database on the primary; three `recall serve` processes (the `recall`
//! binary) on one multi-host URL, `primary,standby` with
//! `target_session_attrs=read-write`, and a private Redis channel; client
//! tasks doing registrations, logins, refreshes, logouts, `/v1/me` and
//! logged-out tokens presented again, round robin over the instances.
//! After `--failover-at` seconds `--stop-cmd` runs (the primary stops with
//! `-m immediate`), then after `--gap-ms` `--promote-cmd`. The load goes on
//! for `--secs` in all, and until every instance has written again (or
//! `--bound-secs` have passed since the promotion). Then every logged-out
//! token is presented to every instance and to a fresh one started on the
//! new primary, the new primary's `events` table is read, and the checks
//! (`check`) decide. A JSON report goes to `--json`, a summary to stdout.
//! Exits 0 if every check holds, 1 if one fails, 2 if the run broke.
//!
//! - `fleet`: the processes; `load`: the clients and the records;
//! - `check`: the log and the checks;
//! - the PostgreSQL and Redis flags, `pg_exec`, the exit codes and the
//!   port a child announces are shared with other examples
//!   (`examples/common`), the PRNG with the soak.

#[path = "../common/args.rs"]
mod args;
mod check;
#[path = "../common/exit.rs"]
mod exit;
mod fleet;
mod load;
#[path = "../common/pg.rs"]
mod pg;
#[allow(dead_code)] // the soak uses more of it
#[path = "../soak/rng.rs"]
mod rng;
#[path = "../common/spawn.rs"]
mod spawn;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::json;

use crate::check::{secs, Rules, Timeline};
use crate::fleet::{hex, Fleet};
use crate::load::{Call, Client, Ctx, Kind};
use crate::rng::{os_bytes, Rng};

const INSTANCES: usize = 3;

#[derive(Parser, Debug)]
struct Cli {
    /// Seconds of load (at least; it goes on until every instance writes
    /// again, or `--bound-secs` after the promotion).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(10..=600))]
    secs: u64,
    /// Seconds of load before the primary is stopped (default: a third).
    #[arg(long)]
    failover_at: Option<u64>,
    /// Milliseconds between the primary's stop and the promotion.
    #[arg(long, default_value_t = 2000)]
    gap_ms: u64,
    /// The most seconds from the promotion until every instance has
    /// acknowledged a write again.
    #[arg(long, default_value_t = 15)]
    bound_secs: u64,
    /// How long an instance other than the one that logged a session out
    /// may still accept its token (the Redis notice's way), ms.
    #[arg(long, default_value_t = 1000)]
    propagation_ms: u64,
    /// Concurrent client tasks.
    #[arg(long, default_value_t = 12)]
    clients: usize,
    /// Client steps per second, all clients together.
    #[arg(long, default_value_t = 150.0)]
    rate: f64,
    /// Seed of the clients' choices (default: a fresh one, in the report).
    #[arg(long)]
    seed: Option<u64>,
    /// The `recall` binary to run.
    #[arg(long, default_value = "target/release/recall")]
    binary: PathBuf,
    /// Directory for the processes' logs.
    #[arg(long, default_value = "target/failover")]
    dir: PathBuf,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/failover/failover.json")]
    json: PathBuf,
    /// `--pg` is the primary (an admin URL: the run's database is created
    /// there), `--redis` the bus.
    #[command(flatten)]
    servers: args::Servers,
    /// The standby, as an admin URL (`postgres://postgres@127.0.0.1:5442/postgres`).
    #[arg(long)]
    standby: String,
    /// Shell command that stops the primary (`pg_ctl stop -m immediate`).
    #[arg(long)]
    stop_cmd: String,
    /// Shell command that promotes the standby and returns once it is
    /// primary (`pg_ctl promote -w`).
    #[arg(long)]
    promote_cmd: String,
}

/// A progress line with the wall-clock time.
pub fn say(msg: impl std::fmt::Display) {
    eprintln!(
        "    [failover {}] {msg}",
        chrono::Local::now().format("%H:%M:%S%.3f")
    );
}

fn main() {
    exit::exit_with("failover", run(Cli::parse()));
}

/// `postgres://CREDS@HOST:PORT/...` -> (`CREDS@`, `HOST:PORT`), loopback only.
fn server(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .with_context(|| format!("{url}: not a postgres:// URL"))?;
    let (creds, rest) = match rest.split_once('@') {
        Some((c, r)) => (format!("{c}@"), r),
        None => (String::new(), rest),
    };
    let hostport = rest.split(['/', '?']).next().unwrap_or_default().to_owned();
    anyhow::ensure!(
        hostport.starts_with("127.0.0.1:") || hostport.starts_with("localhost:"),
        "{hostport}: the failover test runs on loopback only, with explicit ports"
    );
    Ok((creds, hostport))
}

async fn in_recovery(url: &str) -> anyhow::Result<bool> {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, conn) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .with_context(|| format!("{url}: no answer"))??;
    let driver = tokio::spawn(conn);
    let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await?;
    drop(client);
    let _ = driver.await;
    Ok(row.get(0))
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let (creds, primary) = server(&cli.servers.pg)?;
    let (standby_creds, standby) = server(&cli.standby)?;
    anyhow::ensure!(primary != standby, "--pg and --standby are one server");
    anyhow::ensure!(
        !in_recovery(&cli.servers.pg).await.context("--pg")?,
        "--pg ({primary}) is in recovery: not a primary"
    );
    anyhow::ensure!(
        in_recovery(&cli.standby).await.context("--standby")?,
        "--standby ({standby}) is not in recovery: not a standby"
    );
    let at = cli.failover_at.unwrap_or(cli.secs / 3);
    anyhow::ensure!(
        at >= 2 && at < cli.secs,
        "--failover-at must be from 2 to below --secs"
    );
    std::fs::create_dir_all(&cli.dir)?;
    let logs = std::fs::canonicalize(&cli.dir)?;
    let db = format!("recall_failover_{}", hex(&os_bytes::<6>()));
    pg::pg_exec(&cli.servers.pg, &format!("CREATE DATABASE {db}"))
        .await
        .context("creating the database on the primary")?;
    let fleet_url =
        format!("postgres://{creds}{primary},{standby}/{db}?target_session_attrs=read-write");
    let new_primary_url = format!("postgres://{standby_creds}{standby}/{db}");
    say(format!(
        "database {db}; fleet URL {fleet_url}; logs in {}",
        logs.display()
    ));

    let mut fleet = Fleet::new(&cli.binary, &logs, fleet_url, &cli.servers.redis);
    let result = drive(&cli, at, &mut fleet, &new_primary_url).await;
    fleet.shutdown().await;
    result
}

async fn drive(
    cli: &Cli,
    at: u64,
    fleet: &mut Fleet,
    new_primary_url: &str,
) -> anyhow::Result<bool> {
    let http = reqwest::Client::new();
    let mut bases = Vec::new();
    for i in 0..INSTANCES {
        bases.push(fleet.start(i, &http).await?);
    }
    say(format!("fleet ready: {bases:?}"));
    let epoch = Instant::now();
    let ctx = Arc::new(Ctx::new(epoch, bases)?);
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let load_start = Instant::now();
    timeline.lock().load_start = ctx.now();
    let seed = cli
        .seed
        .unwrap_or_else(|| u64::from_le_bytes(os_bytes::<8>()) >> 12);
    let mut rng = Rng::new(seed);
    let pace = Duration::from_secs_f64(cli.clients as f64 / cli.rate.max(1.0));
    let clients: Vec<_> = (0..cli.clients)
        .map(|i| tokio::spawn(Client::new(i, rng.fork(), ctx.clone()).run(pace)))
        .collect();
    let progress = tokio::spawn(progress(ctx.clone(), load_start));
    let mut failover = tokio::spawn(failover(
        ctx.clone(),
        timeline.clone(),
        load_start + Duration::from_secs(at),
        Duration::from_millis(cli.gap_ms),
        [cli.stop_cmd.clone(), cli.promote_cmd.clone()],
    ));
    say(format!(
        "load: {} clients, {} steps/s, seed {seed}; the primary stops at +{at}s",
        cli.clients, cli.rate
    ));

    // The load runs until --secs, the failover is done, and every
    // instance has written again (or the bound has passed).
    let min_end = load_start + Duration::from_secs(cli.secs);
    let hard_end = min_end + Duration::from_secs(180);
    let bound_us = (cli.bound_secs + 1) * 1_000_000;
    let mut failover_result = None;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if failover_result.is_none() && failover.is_finished() {
            failover_result = Some((&mut failover).await.map_err(anyhow::Error::from));
        }
        if let Some(Ok(Err(_)) | Err(_)) = &failover_result {
            break;
        }
        let promoted = timeline.lock().promoted;
        let settled = promoted > 0 && (ctx.all_back() || ctx.now() >= promoted + bound_us);
        if (Instant::now() >= min_end && settled) || Instant::now() >= hard_end {
            break;
        }
    }
    ctx.stop.store(true, Ordering::SeqCst);
    timeline.lock().load_end = ctx.now();
    say("load over; waiting for the last calls");
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(20), c).await;
    }
    progress.abort();
    match failover_result {
        Some(Ok(Ok(()))) => {}
        Some(Ok(Err(e))) => return Err(e.context("the failover")),
        Some(Err(e)) => return Err(e.context("the failover task")),
        None => {
            failover.abort();
            anyhow::bail!("the failover did not finish within the run")
        }
    }

    // After the failover: every instance ready, a fresh one started on the
    // new primary, and every logged-out token presented to all of them.
    let mut ready = Vec::new();
    let bases = ctx.bases.lock().clone();
    for (i, base) in bases.iter().enumerate() {
        let ok = fleet::wait_ready(&http, base, Duration::from_secs(20)).await;
        ready.push(format!(
            "instance {i}: {}",
            if ok { "ready" } else { "NOT ready" }
        ));
    }
    say(format!("after the failover: {}", ready.join(", ")));
    let fresh = fleet.start(INSTANCES, &http).await?;
    say(format!(
        "fresh instance {INSTANCES} ready on the new primary: {fresh}"
    ));
    ctx.bases.lock().push(fresh);
    sweep(&ctx).await;

    let log = check::read_log(new_primary_url)
        .await
        .context("reading the new primary's log")?;
    let bases = ctx.bases.lock().clone();
    let seen = fleet::caught_up(&http, &bases, log.counter, Duration::from_secs(10)).await;
    let t = *timeline.lock();
    let back_at = ctx.back_at.lock().clone();
    let recs = std::mem::take(&mut *ctx.recs.lock());
    let revoked = ctx.revoked.lock().clone();
    let rules = Rules {
        propagation_ms: cli.propagation_ms,
        bound_secs: cli.bound_secs as f64,
        instances: INSTANCES,
    };
    let mut checks = check::run_checks(&rules, &t, &recs, &revoked, &back_at, &log);
    checks.push(check::Check {
        name: "every instance is ready after the failover",
        pass: ready.iter().all(|r| r.ends_with(": ready")),
        detail: ready.join(", "),
    });
    let views: Vec<String> = seen
        .iter()
        .enumerate()
        .map(|(i, (last, regressions))| {
            let show = |v: &Option<i64>| v.map_or("?".to_owned(), |v| v.to_string());
            format!(
                "instance {i}: last_seq {}, log regressions {}",
                show(last),
                show(regressions)
            )
        })
        .collect();
    checks.push(check::Check {
        name: "every instance has applied the new primary's log to its head",
        pass: seen.iter().all(|(last, _)| *last == Some(log.counter)),
        detail: format!("head {}; {}", log.counter, views.join(", ")),
    });
    let pass = checks.iter().all(|c| c.pass);

    let recovery: Vec<Option<f64>> = back_at
        .iter()
        .map(|b| b.map(|b| secs(t.promote, b)))
        .collect();
    let worst = |from: u64| -> Option<f64> {
        back_at
            .iter()
            .map(|b| b.map(|b| secs(from, b)))
            .try_fold(f64::MIN, |m, s| s.map(|s| m.max(s)))
    };
    let failover_secs = worst(t.promote);
    let back_all = back_at
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or(t.load_end);
    let report = json!({
        "ok": pass,
        "failover_secs": failover_secs,
        "promote_secs": secs(t.promote, t.promoted),
        "failover_secs_from_primary_stop": worst(t.stop),
        "recovery_secs": recovery,
        "timeline_secs": {
            "primary_stop": secs(t.load_start, t.stop),
            "primary_stopped": secs(t.load_start, t.stopped),
            "promote": secs(t.load_start, t.promote),
            "promoted": secs(t.load_start, t.promoted),
            "load_end": secs(t.load_start, t.load_end),
        },
        "params": {
            "secs": cli.secs, "failover_at": at, "gap_ms": cli.gap_ms,
            "bound_secs": cli.bound_secs, "propagation_ms": cli.propagation_ms,
            "clients": cli.clients, "rate": cli.rate, "instances": INSTANCES, "seed": seed,
        },
        "requests": recs.len(),
        "logouts": revoked.len(),
        "log_events": log.events.len(),
        "requests_before": check::tally(&recs, 0, t.stop),
        "requests_outage": check::tally(&recs, t.stop, back_all),
        "requests_after": check::tally(&recs, back_all, u64::MAX),
        "checks": checks,
    });
    if let Some(dir) = cli.json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&cli.json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", cli.json.display()))?;

    println!(
        "failover: {}; primary stopped at +{:.1}s, promoted {:.2}s later; writes on every instance {} after the promotion; {} requests, {} logouts, {} events",
        if pass { "PASS" } else { "FAIL" },
        secs(t.load_start, t.stop),
        secs(t.stop, t.promoted),
        failover_secs.map_or("never".to_owned(), |s| format!("{s:.2}s")),
        recs.len(),
        revoked.len(),
        log.events.len(),
    );
    for c in &checks {
        println!(
            "  [{}] {}: {}",
            if c.pass { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    println!("report: {}", cli.json.display());
    Ok(pass)
}

/// Runs a hook command; its output goes to stderr.
async fn hook(cmd: &str) -> anyhow::Result<()> {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("sh")
            .args(["-c", cmd])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("{cmd}: still running after 60 s"))??;
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        say(format!("  | {line}"));
    }
    anyhow::ensure!(out.status.success(), "{cmd}: {}", out.status);
    Ok(())
}

/// At `at`, stops the primary, waits `gap`, promotes the standby; records
/// each moment.
async fn failover(
    ctx: Arc<Ctx>,
    timeline: Arc<Mutex<Timeline>>,
    at: Instant,
    gap: Duration,
    [stop, promote]: [String; 2],
) -> anyhow::Result<()> {
    tokio::time::sleep_until(at.into()).await;
    say(format!("stopping the primary: {stop}"));
    timeline.lock().stop = ctx.now();
    hook(&stop).await?;
    timeline.lock().stopped = ctx.now();
    say("primary stopped");
    tokio::time::sleep(gap).await;
    say(format!("promoting the standby: {promote}"));
    let t = ctx.now();
    timeline.lock().promote = t;
    ctx.promote_at.store(t, Ordering::SeqCst);
    hook(&promote).await?;
    timeline.lock().promoted = ctx.now();
    say("standby promoted: it is the primary now");
    Ok(())
}

/// Every logged-out token presented to every instance (and the fresh one)
/// until it answers something other than a 503 (up to 10 tries each).
async fn sweep(ctx: &Arc<Ctx>) {
    let revoked = ctx.revoked.lock().clone();
    let instances = ctx.bases.lock().len();
    say(format!(
        "presenting {} logged-out tokens to {instances} instances",
        revoked.len()
    ));
    let per_instance = (0..instances).map(|inst| {
        let revoked = revoked.clone();
        async move {
            for (tok, r) in revoked.iter().enumerate() {
                for _ in 0..10 {
                    let mut call = Call::new(Kind::Sweep, inst, Method::GET, "/v1/me");
                    call.bearer = Some(&r.access);
                    call.sid = Some(r.sid);
                    call.tok = Some(tok);
                    let (status, _, _) = ctx.call(call).await;
                    if status != 503 && status != 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    });
    futures_util::future::join_all(per_instance).await;
}

/// Every 2 s: requests by outcome since the last line.
async fn progress(ctx: Arc<Ctx>, start: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    let mut seen = 0;
    loop {
        tick.tick().await;
        let (mut ok, mut refused, mut unavailable, mut other) = (0, 0, 0, 0);
        {
            let recs = ctx.recs.lock();
            for q in &recs[seen.min(recs.len())..] {
                match q.status {
                    200..=299 => ok += 1,
                    503 => unavailable += 1,
                    400..=499 => refused += 1,
                    _ => other += 1,
                }
            }
            seen = recs.len();
        }
        say(format!(
            "+{:>5.1}s  2xx {ok:>5}  4xx {refused:>4}  503 {unavailable:>4}  other {other:>3}  (logouts so far {})",
            start.elapsed().as_secs_f64(),
            ctx.revoked.lock().len()
        ));
    }
}
