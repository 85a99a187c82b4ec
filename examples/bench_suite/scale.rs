//! Measure 13, how cost grows: propagation and log reads against fleet
//! size, start-up time and memory against the revocation window, append
//! throughput against concurrent writers, and refresh throughput per core.

use super::*;
use crate::fleet::start_nodes;

/// What `scale` measures (each list is one curve's x values).
pub(super) struct Curves {
    pub fleet_sizes: Vec<usize>,
    pub revocations: usize,
    pub windows: Vec<usize>,
    pub writers: Vec<usize>,
    pub secs: f64,
}

pub(super) async fn scale(cli: &Cli, c: &Curves) -> anyhow::Result<Value> {
    let mut fleet = Vec::new();
    for &n in &c.fleet_sizes {
        let db = BenchDb::create(&cli.pg).await?;
        let r = fleet_of(cli, &db, n, c.revocations).await;
        db.drop_db().await;
        fleet.push(r?);
    }
    let mut startup = Vec::new();
    for &w in &c.windows {
        startup.push(window_in_child(cli, w).await?);
    }
    let db = BenchDb::create(&cli.pg).await?;
    let appends = crate::writes::appends(&db, &c.writers, c.secs).await;
    let refresh = crate::writes::refreshes(cli, &db, 64, c.secs).await;
    db.drop_db().await;
    Ok(json!({
        "fleet": fleet,
        "startup": startup,
        "append": appends?,
        "refresh": refresh?,
        "cores": cores(),
    }))
}

/// Propagation through `n` in-process instances on PostgreSQL + Redis:
/// each revocation through the first until every other rejects; and how
/// often the fleet read the log meanwhile.
async fn fleet_of(cli: &Cli, db: &BenchDb, n: usize, revocations: usize) -> anyhow::Result<Value> {
    let started = start_nodes(cli, db, n).await?;
    let nodes: Vec<Arc<Recall>> = started.iter().map(|(r, _)| r.clone()).collect();
    let tasks: Vec<JoinHandle<()>> = started.into_iter().flat_map(|(_, t)| t).collect();
    let result = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes.iter().all(|n| n.sync().bus_connected()) {
            anyhow::ensure!(Instant::now() < deadline, "the fleet never subscribed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let a = nodes[0].clone();
        let sids = bench_sessions(&a, revocations).await?;
        let head = a.sync().state().last_seq();
        while nodes.iter().any(|n| n.sync().state().last_seq() < head) {
            anyhow::ensure!(
                Instant::now() < deadline + Duration::from_secs(60),
                "catch-up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let reads = |nodes: &[Arc<Recall>]| -> u64 {
            nodes.iter().map(|n| n.metrics().catchup_reads.get()).sum()
        };
        let reads_before = reads(&nodes);
        let t_all = Instant::now();
        let others: Vec<Arc<Recall>> = nodes[1..].to_vec();
        let handle = tokio::runtime::Handle::current();
        let limit = Duration::from_secs(2);
        let (all, late) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut all = Vec::with_capacity(sids.len());
            let mut late = 0usize;
            for sid in &sids {
                handle
                    .block_on(a.admin().admin_revoke_session(*sid, None, &Meta::system()))
                    .map_err(|e| anyhow::anyhow!("revoke: {e}"))?;
                let t0 = Instant::now();
                let mut waiting: Vec<&Arc<Recall>> = others.iter().collect();
                while !waiting.is_empty() {
                    waiting.retain(|n| !n.sync().state().is_session_revoked(*sid));
                    if t0.elapsed() > limit {
                        late += 1;
                        break;
                    }
                    std::thread::yield_now();
                }
                all.push(t0.elapsed().min(limit).as_secs_f64() * 1e3);
            }
            Ok((all, late))
        })
        .await??;
        // Log reads are counted over at least 5 s: the polling backstop
        // reads once a second per instance.
        let window = Duration::from_secs(5);
        if t_all.elapsed() < window {
            tokio::time::sleep(window - t_all.elapsed()).await;
        }
        let secs = t_all.elapsed().as_secs_f64();
        let reads = reads(&nodes) - reads_before;
        let all = sorted(all);
        progress(
            "scale",
            &format!(
                "{n} instances: p50 {:.3} ms, p99 {:.3} ms; {reads} log reads in {secs:.1}s",
                pct(&all, 50.0),
                pct(&all, 99.0)
            ),
        );
        Ok(json!({
            "instances": n,
            "revocations": all.len(),
            "p50_ms": round(pct(&all, 50.0), 3),
            "p99_ms": round(pct(&all, 99.0), 3),
            "max_ms": round(pct(&all, 100.0), 3),
            "not_within_2s": late,
            "log_reads_per_s": round(reads as f64 / secs, 2),
            "log_reads_per_s_per_instance": round(reads as f64 / secs / n as f64, 3),
        }))
    }
    .await;
    stop(&tasks);
    result
}

/// Fills a SQLite log with `revoked` logouts inside the window, then times
/// `window` in a child process of this binary (`bench_suite window`), so the
/// fill's allocations (and an earlier point's) do not hide the start's.
async fn window_in_child(cli: &Cli, revoked: usize) -> anyhow::Result<Value> {
    let dir = cli.dir.join(format!("window-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let result = async {
        let s = settings(&dir, None, MasterKey::generate())?;
        let store = Store::open(None, &s.sqlite_path(), &s.master_key)?;
        store.migrate().await?;
        let mut written = 0;
        while written < revoked {
            let n = 20_000.min(revoked - written);
            append_recent_logouts(&store, n).await?;
            written += n;
        }
        drop(store);
        let out = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--dir")
            .arg(&dir)
            .args(["window", "--revoked", &revoked.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()?
            .wait_with_output()
            .await?;
        anyhow::ensure!(out.status.success(), "window {revoked}: {}", out.status);
        Ok(serde_json::from_slice(&out.stdout)?)
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Start-up time and memory with `revoked` sessions inside the window of
/// the SQLite log in `cli.dir` (as `startup`): from opening the store until
/// ready, and the RSS growth over the same span.
pub(super) async fn window(cli: &Cli, revoked: usize) -> anyhow::Result<Value> {
    let s = settings(&cli.dir, None, MasterKey::generate())?;
    let rss0 = startup::rss_bytes();
    let t0 = Instant::now();
    let store = Store::open(None, &s.sqlite_path(), &s.master_key)?;
    store.migrate().await?;
    let (recall, tasks) =
        recall::startup::start_with(s, store, Arc::new(LocalBus::default())).await?;
    let ready_ms = t0.elapsed().as_secs_f64() * 1e3;
    let rss = startup::rss_bytes().saturating_sub(rss0);
    let folded = recall.sync().state().sizes().0;
    stop(&tasks);
    drop(recall);
    anyhow::ensure!(folded == revoked, "folded {folded} of {revoked}");
    progress(
        "scale",
        &format!(
            "{revoked} revoked sessions in the window: ready in {ready_ms:.0} ms, +{:.1} MiB",
            rss as f64 / 1048576.0
        ),
    );
    Ok(json!({
        "revoked_sessions": revoked,
        "ready_ms": round(ready_ms, 1),
        "rss_growth_mib": round(rss as f64 / 1048576.0, 2),
    }))
}
