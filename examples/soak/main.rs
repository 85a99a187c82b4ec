//! Soak with chaos, run by `scripts/soak.sh [SECS]`: a loopback fleet of
//! three `recall serve` processes (the release binary) on a scratch
//! PostgreSQL database and a private Redis channel, each reaching both
//! through its own in-process proxies, plus `recall verifier` sidecars; a
//! mixed load for the run's duration; a chaos driver injecting one fault at
//! a time; then the invariants, checked from the clients' own records and
//! the event log, written as a Markdown report (bench/SOAK.md, or
//! SOAK_REPORT). Exits 1 if any invariant fails.
//!
//! - `fleet`: the database, the processes, restarts, RSS;
//! - `proxy`: the TCP proxies (cut, black hole, retarget);
//! - `client`: the client tasks and their users; `revoke`: revoking calls,
//!   key rotations and the probes after each acknowledgement;
//! - `chaos`: the faults; `check`: the invariants; `report`: the report;
//! - `model`: the records and the recording HTTP caller; `rng`: the PRNG;
//! - the PostgreSQL and Redis flags, `pg_exec`, the exit codes and the
//!   port a child announces are shared with other examples
//!   (`examples/common`).

#[path = "../common/args.rs"]
mod args;
mod chaos;
mod check;
mod client;
#[path = "../common/exit.rs"]
mod exit;
mod fleet;
mod model;
#[path = "../common/pg.rs"]
mod pg;
mod proxy;
mod report;
mod revoke;
mod rng;
#[path = "../common/spawn.rs"]
mod spawn;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::Value;

use crate::check::{Log, Rules};
use crate::fleet::{Db, Fleet, Options};
use crate::model::{Ctx, Rss, Targets};
use crate::rng::{os_bytes, Rng};

pub const ACCESS_TTL_SECS: u64 = 60;
pub const STALENESS_MS: u64 = 5000;
pub const POLL_MS: u64 = 1000;
/// How long after an acknowledgement the probes keep trying a target.
pub const PROBE_WINDOW_MS: u64 = STALENESS_MS + 3000;
const INSTANCES: usize = 3;
const MAX_IN_FLIGHT: usize = 32;

#[derive(Parser, Debug)]
struct Cli {
    /// Seconds of load.
    #[arg(long, env = "SOAK_SECS", default_value_t = 600)]
    secs: u64,
    /// Seed of every random choice (default: a fresh one, printed).
    #[arg(long, env = "SOAK_SEED")]
    seed: Option<u64>,
    /// Where the Markdown report goes.
    #[arg(long, env = "SOAK_REPORT", default_value = "bench/SOAK.md")]
    report: PathBuf,
    /// The `recall` binary to run.
    #[arg(long, default_value = "target/release/recall")]
    binary: PathBuf,
    /// Directory for the processes' logs.
    #[arg(long, default_value = "target/soak")]
    dir: PathBuf,
    #[command(flatten)]
    servers: args::Servers,
    /// Concurrent client tasks.
    #[arg(long, default_value_t = 12)]
    clients: usize,
    /// Client steps per second, all clients together (most are one
    /// authenticated request).
    #[arg(long, default_value_t = 800.0)]
    rate: f64,
    /// `recall verifier` sidecars (1 or 2).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=2))]
    sidecars: u64,
    /// Propagation bound on a healthy instance, ms.
    #[arg(long, default_value_t = 1000)]
    bound_ms: u64,
}

fn main() {
    exit::exit_with("soak", run(Cli::parse()));
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let seed = cli
        .seed
        .unwrap_or_else(|| u64::from_le_bytes(os_bytes::<8>()) >> 12);
    eprintln!(
        "    [soak] seed {seed} ({} s of load; SOAK_SEED={seed} replays the choices)",
        cli.secs
    );
    std::fs::create_dir_all(&cli.dir)?;
    let logs = std::fs::canonicalize(&cli.dir)?;
    let db = Db::create(&cli.servers.pg)
        .await
        .context("creating the scratch database")?;
    eprintln!(
        "    [soak] database {} created; logs in {}",
        db.name,
        logs.display()
    );
    let epoch = Instant::now();
    let now = move || epoch.elapsed().as_micros() as u64;
    let opts = Options {
        binary: &cli.binary,
        logs: &logs,
        redis: &cli.servers.redis,
        instances: INSTANCES,
        sidecars: cli.sidecars as usize,
    };
    let fleet = match Fleet::start(&opts, db.clone(), now).await {
        Ok(f) => Arc::new(f),
        Err(e) => {
            db.drop_db().await;
            return Err(e.context("starting the fleet"));
        }
    };
    let result = soak(&cli, fleet.clone(), seed, epoch, &logs).await;
    fleet.shutdown().await;
    result
}

async fn soak(
    cli: &Cli,
    fleet: Arc<Fleet>,
    seed: u64,
    epoch: Instant,
    logs: &std::path::Path,
) -> anyhow::Result<bool> {
    let mut rng = Rng::new(seed);
    let mut instances = Vec::new();
    for p in &fleet.procs {
        let p = p.lock().await;
        instances.push((fleet.base(p.port), p.gen));
    }
    let mut sidecars = Vec::new();
    for p in &fleet.sidecars {
        sidecars.push(fleet.base(p.lock().await.port));
    }
    eprintln!("    [soak] instances {instances:?}, sidecars {sidecars:?}");
    let targets = Targets::new(instances, sidecars);
    let ctx = Arc::new(Ctx::new(
        epoch,
        targets,
        fleet.admin_token.clone(),
        ACCESS_TTL_SECS,
        MAX_IN_FLIGHT,
    )?);
    let load_start = Instant::now();
    let deadline = load_start + Duration::from_secs(cli.secs);
    let sampler = tokio::spawn(sample_rss(fleet.clone(), ctx.clone()));
    let progress = tokio::spawn(progress(ctx.clone(), load_start));
    let calm_from = deadline - Duration::from_secs((cli.secs / 20).max(5));
    let first = Duration::from_secs((cli.secs / 12).clamp(3, 15));
    let chaos = tokio::spawn(chaos::chaos(
        fleet.clone(),
        ctx.clone(),
        rng.fork(),
        first,
        calm_from,
    ));
    let every = Duration::from_secs((cli.secs / 8).clamp(8, 90));
    let rotations = tokio::spawn(revoke::rotations(ctx.clone(), rng.fork(), deadline, every));
    let pace = Duration::from_secs_f64(cli.clients as f64 / cli.rate.max(1.0));
    let clients: Vec<_> = (0..cli.clients)
        .map(|i| tokio::spawn(client::Client::new(i, rng.fork(), ctx.clone()).run(deadline, pace)))
        .collect();
    let interrupted = tokio::select! {
        _ = tokio::time::sleep_until(deadline.into()) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    ctx.stop.store(true, Ordering::SeqCst);
    eprintln!(
        "    [soak] {}; waiting for the last calls, probes and fault",
        if interrupted {
            "interrupted"
        } else {
            "load over"
        }
    );
    for c in clients {
        let _ = c.await;
    }
    let secs_load = load_start.elapsed().as_secs_f64();
    let _ = rotations.await;
    let chaos_result = chaos.await.map_err(anyhow::Error::from).and_then(|r| r);
    loop {
        let pending: Vec<_> = ctx.probes.lock().drain(..).collect();
        if pending.is_empty() {
            break;
        }
        for p in pending {
            let _ = p.await;
        }
    }
    sampler.abort();
    progress.abort();
    sample_once(&fleet, &ctx);
    if interrupted {
        anyhow::bail!("interrupted: no report written");
    }
    let base = fleet.base(fleet.procs[0].lock().await.port);
    let log = read_log(&ctx, &base).await;
    let rules = Rules {
        bound_us: cli.bound_ms * 1000,
        poll_us: POLL_MS * 1000,
        staleness_us: STALENESS_MS * 1000,
        run_us: (secs_load * 1e6) as u64,
    };
    let (reqs, revs, props, faults, rss) = (
        std::mem::take(&mut *ctx.reqs.lock()),
        std::mem::take(&mut *ctx.revs.lock()),
        std::mem::take(&mut *ctx.props.lock()),
        std::mem::take(&mut *ctx.faults.lock()),
        std::mem::take(&mut *ctx.rss.lock()),
    );
    let tokens = std::mem::take(&mut *ctx.tokens.lock());
    if let Err(e) = dump(logs, &reqs, &revs, &faults, &tokens, &rss) {
        eprintln!("    [soak] could not write the raw records: {e}");
    }
    let records = check::Records {
        reqs: &reqs,
        revs: &revs,
        props: &props,
        faults: &faults,
        rss: &rss,
        tokens: &tokens,
    };
    let mut checked = check::check(&rules, &records, &log);
    if let Err(e) = &chaos_result {
        checked.invariants.push(check::Invariant {
            name: "the chaos driver ran to the end",
            pass: false,
            detail: format!("{e:#}"),
            examples: Vec::new(),
        });
    }
    let facts = report::RunFacts {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        commit: std::env::var("SOAK_COMMIT").unwrap_or_else(|_| "unknown".into()),
        machine: machine(),
        secs_planned: cli.secs,
        secs_load,
        seed,
        clients: cli.clients,
        max_in_flight: MAX_IN_FLIGHT,
        rate: cli.rate,
        instances: INSTANCES,
        sidecars: cli.sidecars as usize,
        bound_ms: cli.bound_ms,
        users: reqs
            .iter()
            .filter(|q| q.kind == model::Kind::Register && q.status == 201)
            .count(),
        retired_users: ctx.n_retired_users.load(Ordering::Relaxed),
        logs: logs.display().to_string(),
    };
    let md = report::render(&facts, &checked, &reqs, &revs, &faults);
    if let Some(dir) = cli.report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&cli.report, md).with_context(|| format!("writing {}", cli.report.display()))?;
    let h = report::headline(&checked);
    println!(
        "soak: {:.0} s, seed {seed}, {} requests, {} revocations acknowledged, {} faults; propagation to healthy targets p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        secs_load, reqs.len(), revs.len(), faults.len(),
        report::pct(&h, 50.0), report::pct(&h, 99.0), h.last().copied().unwrap_or(f64::NAN)
    );
    for line in report::invariant_lines(&checked) {
        println!("{line}");
    }
    println!("report: {}", cli.report.display());
    Ok(checked.invariants.iter().all(|i| i.pass))
}

fn sample_once(fleet: &Fleet, ctx: &Ctx) {
    let t = ctx.now();
    let live = fleet.live.lock().clone();
    let mut rss = ctx.rss.lock();
    for (process, pid, born) in live {
        if let Some(kib) = fleet::rss_kib(pid) {
            rss.push(Rss {
                process,
                born,
                t,
                kib,
            });
        }
    }
}

async fn sample_rss(fleet: Arc<Fleet>, ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        sample_once(&fleet, &ctx);
    }
}

async fn progress(ctx: Arc<Ctx>, start: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        tick.tick().await;
        eprintln!(
            "    [soak] +{:>4.0}s  requests {:>8}  revocations {:>6}  faults {:>3}  retired users {}",
            start.elapsed().as_secs_f64(),
            ctx.n_reqs.load(Ordering::Relaxed),
            ctx.n_revs.load(Ordering::Relaxed),
            ctx.n_faults.load(Ordering::Relaxed),
            ctx.n_retired_users.load(Ordering::Relaxed),
        );
    }
}

/// Every event of the log, read in pages of 1000, and the head after.
async fn read_log(ctx: &Ctx, base: &str) -> Log {
    let mut events: Vec<Value> = Vec::new();
    let mut after = 0i64;
    let mut head = 0i64;
    for _round in 0..3 {
        loop {
            let url = format!("{base}/v1/admin/events?after={after}&limit=1000");
            let page = match get_json(ctx, &url).await {
                Ok(p) => p,
                Err(e) => {
                    return Log {
                        events,
                        head,
                        error: Some(format!("{url}: {e:#}")),
                    }
                }
            };
            let batch = page["events"].as_array().cloned().unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            after = page["next_after"]
                .as_i64()
                .unwrap_or(after + batch.len() as i64);
            events.extend(batch);
        }
        let url = format!("{base}/v1/revocations?after={after}&limit=1");
        match get_json(ctx, &url).await {
            Ok(p) => head = p["head_seq"].as_i64().unwrap_or(0),
            Err(e) => {
                return Log {
                    events,
                    head,
                    error: Some(format!("{url}: {e:#}")),
                }
            }
        }
        if head <= after {
            break;
        }
    }
    Log {
        events,
        head,
        error: None,
    }
}

async fn get_json(ctx: &Ctx, url: &str) -> anyhow::Result<Value> {
    let mut last = None;
    for _ in 0..5 {
        match ctx
            .http
            .get(url)
            .bearer_auth(&ctx.admin_token)
            .timeout(Duration::from_secs(30))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(r.json().await?),
            Ok(r) => last = Some(anyhow::anyhow!("{}", r.status())),
            Err(e) => last = Some(e.into()),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no answer")))
}

/// The raw records as TSV files next to the process logs, for digging into
/// a failure: requests, acknowledged revoking calls, faults, RSS samples,
/// tokens.
fn dump(
    dir: &std::path::Path,
    reqs: &[model::Req],
    revs: &[model::Revocation],
    faults: &[model::Fault],
    tokens: &[model::TokenMeta],
    rss: &[Rss],
) -> std::io::Result<()> {
    use std::io::Write;
    let open = |name: &str| std::fs::File::create(dir.join(name)).map(std::io::BufWriter::new);
    let mut f = open("requests.tsv")?;
    writeln!(f, "start_us\tend_us\tkind\tprobe\ttarget\tstatus\ttoken")?;
    for q in reqs {
        let token = if q.token == model::NO_TOKEN {
            String::new()
        } else {
            q.token.to_string()
        };
        writeln!(
            f,
            "{}\t{}\t{:?}\t{}\t{:?}\t{}\t{token}",
            q.start, q.end, q.kind, q.probe, q.target, q.status
        )?;
    }
    let mut f = open("revocations.tsv")?;
    writeln!(
        f,
        "start_us\tack_us\tkind\ttarget\tuser\tsession\tseq\tkid\ttokens"
    )?;
    for r in revs {
        let tokens: Vec<String> = r.tokens.iter().map(u32::to_string).collect();
        writeln!(
            f,
            "{}\t{}\t{:?}\t{:?}\t{}\t{}\t{}\t{}\t{}",
            r.start,
            r.ack,
            r.kind,
            r.target,
            r.user.map(|u| u.to_string()).unwrap_or_default(),
            r.session.map(|u| u.to_string()).unwrap_or_default(),
            r.seq.map(|u| u.to_string()).unwrap_or_default(),
            r.kid.clone().unwrap_or_default(),
            tokens.join(",")
        )?;
    }
    let mut f = open("faults.tsv")?;
    writeln!(f, "start_us\tend_us\tkind\tslot\tnote")?;
    for x in faults {
        writeln!(
            f,
            "{}\t{}\t{:?}\t{}\t{}",
            x.start, x.end, x.kind, x.slot, x.note
        )?;
    }
    let mut f = open("rss.tsv")?;
    writeln!(f, "t_us\tprocess\tborn_us\tvmrss_kib")?;
    for r in rss {
        writeln!(f, "{}\t{}\t{}\t{}", r.t, r.process, r.born, r.kib)?;
    }
    let mut f = open("tokens.tsv")?;
    writeln!(f, "token\tissued_us\tuser\tsession\tkid_index")?;
    for (i, t) in tokens.iter().enumerate() {
        writeln!(f, "{i}\t{}\t{}\t{}\t{}", t.issued, t.user, t.session, t.kid)?;
    }
    Ok(())
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            })
        })
        .map_or(String::new(), |k| format!(", {:.1} GiB", k / 1048576.0));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{cores} cores ({cpu}){mem}; load average at the end {}",
        load.join(" ")
    )
}
