//! In-process benchmarks of issue 5 that need no load generator, run by
//! `scripts/bench.sh`, one subcommand per measure; each prints progress on
//! stderr and its figures as one JSON line on stdout:
//!
//! - `fleet`: propagation of 1,000 revocations from instance A of a
//!   three-instance fleet (PostgreSQL + Redis bus) until B and C reject;
//! - `login`: raw argon2id verifies/s on all cores vs `Recall::login`
//!   throughput, then p99 login latency at twice the sustainable rate;
//! - `startup`: time to ready with 1,000,000 events in the log, 1,000 of
//!   them inside the revocation window;
//! - `memory`: RSS per revoked session with 100,000 folded in;
//! - `flood`: peak RSS of the `recall` binary under 400 concurrent logins
//!   and under 400 logins whose connections are reset;
//! - `scale`: how cost grows with the fleet, the window, the writers, and
//!   refresh throughput per core (`scripts/plot_scale.py` plots it);
//! - `writes`: appends against 1, 8 and 32 writers, refresh per core,
//!   refresh and login latency on PostgreSQL (group commit);
//! - `evidence`: verifying the log's hash chain of 1,000,000 events, and
//!   pruning them, on PostgreSQL and SQLite;
//! - `report`: reads every result, prints the table, writes
//!   `bench/results.json` and `bench/RESULTS.md`.
//!
//! `pg_exec`, the product's settings from flags and the users are shared
//! with other examples (`examples/common`).

mod bound;
mod evidence;
mod fleet;
mod flood;
mod login;
#[path = "../common/pg.rs"]
mod pg;
mod pii;
#[path = "../common/product.rs"]
mod product;
mod report;
mod scale;
mod ssf;
mod startup;
#[path = "../common/users.rs"]
mod users;
mod verifiers;
mod writes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use recall::bus::{redis::RedisBus, Bus, LocalBus};
use recall::clock::Timestamp;
use recall::config::Settings;
use recall::events::{Envelope, Event, Meta, Stamp};
use recall::keys::MasterKey;
use recall::passwords::{hash_blocking, verify_blocking};
use recall::service::{refresh_hash, Recall};
use recall::state::{EventFold, RevocationState};
use recall::store::{SessionRecord, Store};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::pg::pg_exec;
use crate::product::{clear_recall_env, product_settings};
use crate::users::{login_input, register_users, PASSWORD};

#[derive(Parser, Debug)]
struct Cli {
    /// PostgreSQL server to create scratch databases on.
    #[arg(
        long,
        global = true,
        env = "RECALL_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg: String,
    /// Redis server of the fleet bus.
    #[arg(
        long,
        global = true,
        env = "RECALL_TEST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis: String,
    /// Scratch directory (SQLite files).
    #[arg(long, global = true, default_value = "target/bench-tmp")]
    dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    Fleet {
        #[arg(long, default_value_t = 1000)]
        revocations: usize,
    },
    Login {
        /// Seconds of each raw / login phase; they alternate `rounds` times.
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds of the overload run.
        #[arg(long, default_value_t = 5.0)]
        overload_secs: f64,
        /// Concurrent callers at full load (default: 16 per hash worker,
        /// well under the queue bound of 32 per worker).
        #[arg(long)]
        callers: Option<usize>,
    },
    Startup {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 1000)]
        in_window: usize,
    },
    Memory {
        #[arg(long, default_value_t = 100_000)]
        sessions: usize,
    },
    /// Peak RSS of the `recall` binary under concurrent and reset logins.
    Flood {
        /// The release binary to run.
        #[arg(long, default_value = "target/release/recall")]
        binary: PathBuf,
        #[arg(long, default_value_t = 400)]
        requests: usize,
    },
    /// Time from a revoking call to its SET at a push receiver.
    Ssf {
        #[arg(long, default_value_t = 300)]
        revocations: usize,
    },
    /// Propagation from a fleet to two verifiers following its feed.
    Verifiers {
        #[arg(long, default_value_t = 500)]
        revocations: usize,
    },
    /// How cost grows: fleet size, window size, writers, refresh per core.
    Scale {
        #[arg(long, value_delimiter = ',', default_value = "3,10,30")]
        fleet_sizes: Vec<usize>,
        /// Revocations timed per fleet size.
        #[arg(long, default_value_t = 300)]
        revocations: usize,
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        windows: Vec<usize>,
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        writers: Vec<usize>,
        /// Seconds of each throughput run.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
    /// The write path on PostgreSQL: appends against writers, refresh per
    /// core, refresh and login latency (group commit).
    Writes {
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        writers: Vec<usize>,
        /// Seconds of each throughput run.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
    /// The log as evidence: verify and prune a million events, both stores.
    Evidence {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
    },
    /// Logins and refreshes per second with the sealing of personal data
    /// on and off, alternating (issue 25).
    Pii {
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// One point of the window curve, in a fresh process (`scale` runs it),
    /// so memory left behind by an earlier point does not hide this one's.
    #[command(hide = true)]
    Window {
        #[arg(long)]
        revoked: usize,
    },
    /// Tokens and request lines for scripts/bench_bound.sh (against a
    /// running Recall whose `mobile` policy binds to the network).
    BoundPrep {
        #[arg(long)]
        base: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 2000)]
        tokens: usize,
        #[arg(long, default_value_t = 200_000)]
        lines: usize,
    },
    /// DPoP request lines with fresh proofs (good for 60 s).
    BoundProofs {
        #[arg(long)]
        tokens: PathBuf,
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 100_000)]
        lines: usize,
        #[arg(long)]
        hit: bool,
        #[arg(long)]
        out: PathBuf,
    },
    Report {
        /// Directory holding the other subcommands' JSON and wrk's lines.
        #[arg(long)]
        results: PathBuf,
        /// Criterion's output directory.
        #[arg(long)]
        criterion: PathBuf,
        /// Where results.json and RESULTS.md go.
        #[arg(long, default_value = "bench")]
        out: PathBuf,
    },
}

/// A fresh user with `n` sessions, created through the store's login path
/// (no argon2 needed), each committed and published through `recall`.
async fn bench_sessions(recall: &Recall, n: usize) -> anyhow::Result<Vec<Uuid>> {
    let (user_id, _) = recall
        .auth()
        .register(
            &format!("bench-{}", &Uuid::new_v4().simple().to_string()[..10]),
            PASSWORD.into(),
            &Meta::default(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("register: {e}"))?;
    let mut sids = Vec::with_capacity(n);
    for _ in 0..n {
        let now = Timestamp::now();
        let s = SessionRecord {
            id: Uuid::now_v7(),
            user_id,
            client_type: "web".into(),
            device_id: None,
            ip: Some("127.0.0.1".into()),
            user_agent: None,
            created_at: now,
            refresh_expires_at: now.plus(std::time::Duration::from_secs(3600)),
            revoked_at: None,
            terms: Default::default(),
        };
        let hash = refresh_hash(&Uuid::new_v4().to_string());
        let admits = recall::domain::may_log_in;
        let recall::store::Login::Created(env) = recall
            .store()
            .login(
                &s,
                &hash,
                admits,
                &Stamp::new(&Meta::user(user_id, None), now),
            )
            .await?
        else {
            anyhow::bail!("a fresh user was locked");
        };
        recall.committed(&[env]).await;
        sids.push(s.id);
    }
    Ok(sids)
}

fn progress(what: &str, msg: &str) {
    eprintln!("    [{what}] {msg}");
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn settings(
    dir: &Path,
    database_url: Option<String>,
    master: MasterKey,
) -> anyhow::Result<Settings> {
    let mut flags = vec![
        "--data-dir".into(),
        dir.display().to_string(),
        "--master-key".into(),
        master.to_base64(),
        "--redis-channel".into(),
        format!("recall:bench:{}", Uuid::new_v4().simple()),
    ];
    if let Some(url) = database_url {
        flags.extend(["--database-url".into(), url]);
    }
    product_settings(&flags)
}

/// A scratch PostgreSQL database, dropped by `drop_db`.
struct BenchDb {
    admin: String,
    name: String,
    url: String,
}

impl BenchDb {
    async fn create(admin: &str) -> anyhow::Result<Self> {
        let name = format!("recall_bench_{}", Uuid::new_v4().simple());
        pg_exec(admin, &format!("CREATE DATABASE {name}")).await?;
        let root = admin.rsplit_once('/').map_or(admin, |(r, _)| r);
        Ok(BenchDb {
            admin: admin.to_owned(),
            url: format!("{root}/{name}"),
            name,
        })
    }

    async fn drop_db(self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = pg_exec(&self.admin, &sql).await {
            eprintln!("    could not drop {}: {e}", self.name);
        }
    }
}

/// Appends `n` logouts of a minute ago (inside the revocation window), in
/// one batch.
async fn append_recent_logouts(store: &Store, n: usize) -> anyhow::Result<()> {
    let evs = (0..n)
        .map(|_| Event::LoggedOut {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
        })
        .collect();
    store
        .append_raw(
            evs,
            &Stamp::new(
                &Meta::system(),
                Timestamp::now().minus(std::time::Duration::from_secs(60)),
            ),
        )
        .await?;
    Ok(())
}

fn stop(tasks: &[JoinHandle<()>]) {
    for t in tasks {
        t.abort();
    }
}

/// Percentile (0..=100) of sorted values, nearest rank.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn main() -> anyhow::Result<()> {
    clear_recall_env();
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = match &cli.cmd {
        Cmd::Fleet { revocations } => fleet::fleet(&cli, *revocations).await?,
        Cmd::Ssf { revocations } => ssf::ssf(&cli, *revocations).await?,
        Cmd::Verifiers { revocations } => verifiers::verifiers(&cli, *revocations).await?,
        Cmd::Login {
            secs,
            rounds,
            overload_secs,
            callers,
        } => {
            let phases = login::Phases {
                secs: *secs,
                rounds: *rounds,
                overload_secs: *overload_secs,
                callers: callers.unwrap_or(16 * cores()),
            };
            login::login(&cli, &phases).await?
        }
        Cmd::Scale {
            fleet_sizes,
            revocations,
            windows,
            writers,
            secs,
        } => {
            let curves = scale::Curves {
                fleet_sizes: fleet_sizes.clone(),
                revocations: *revocations,
                windows: windows.clone(),
                writers: writers.clone(),
                secs: *secs,
            };
            scale::scale(&cli, &curves).await?
        }
        Cmd::Writes { writers, secs } => writes::writes(&cli, writers, *secs).await?,
        Cmd::Evidence { events } => evidence::evidence(&cli, *events).await?,
        Cmd::Pii { secs, rounds } => pii::pii(&cli, *secs, *rounds).await?,
        Cmd::Window { revoked } => scale::window(&cli, *revoked).await?,
        Cmd::Startup { events, in_window } => startup::startup(&cli, *events, *in_window).await?,
        Cmd::Memory { sessions } => startup::memory(*sessions)?,
        Cmd::Flood { binary, requests } => flood::floods(binary, &cli.dir, *requests).await?,
        Cmd::BoundPrep {
            base,
            out,
            tokens,
            lines,
        } => {
            let prep = bound::Prep {
                base: base.clone(),
                out: out.clone(),
                tokens: *tokens,
                lines: *lines,
            };
            bound::prep(&prep).await?
        }
        Cmd::BoundProofs {
            tokens,
            url,
            lines,
            hit,
            out,
        } => bound::proofs(tokens, url, *lines, *hit, out)?,
        Cmd::Report {
            results,
            criterion,
            out,
        } => {
            report::report(results, criterion, out)?;
            return Ok(());
        }
    };
    println!("{out}");
    Ok(())
}
