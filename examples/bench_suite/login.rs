//! 4. Login throughput against raw argon2id, and overload.

use super::*;

// --- 4. login ----------------------------------------------------------------

/// argon2id verifies per second with one thread per core, no Recall at all.
pub(super) fn raw_argon2(secs: f64) -> f64 {
    let phc = hash_blocking(PASSWORD.as_bytes());
    let n = cores();
    let barrier = std::sync::Barrier::new(n);
    let started = Instant::now();
    let total: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (phc, barrier) = (&phc, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let until = Instant::now() + Duration::from_secs_f64(secs);
                    let mut done = 0usize;
                    while Instant::now() < until {
                        if verify_blocking(PASSWORD.as_bytes(), phc) {
                            done += 1;
                        }
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

/// Closed loop: `callers` tasks log in back to back; successes per second
/// over `secs`, after a half-second warm-up. Returns (rate, failures,
/// logins attempted including the warm-up).
pub(super) async fn closed_loop(
    recall: &Arc<Recall>,
    users: &Arc<Vec<String>>,
    callers: usize,
    secs: f64,
) -> anyhow::Result<(f64, usize, usize)> {
    let warm = Duration::from_millis(500);
    let window = Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let mut jobs = Vec::new();
    for k in 0..callers {
        let (recall, users) = (recall.clone(), users.clone());
        jobs.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut i, mut total) = (0usize, 0usize, k, 0usize);
            while t0.elapsed() < warm + window {
                let res = recall
                    .auth()
                    .login(login_input(&users, i), &Meta::default())
                    .await;
                total += 1;
                let at = t0.elapsed();
                if at > warm && at <= warm + window {
                    if res.is_ok() {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
                i += callers;
            }
            (ok, failed, total)
        }));
    }
    let (mut ok, mut failed, mut total) = (0, 0, 0);
    for j in jobs {
        let (o, f, t) = j.await?;
        ok += o;
        failed += f;
        total += t;
    }
    Ok((ok as f64 / window.as_secs_f64(), failed, total))
}

pub(super) async fn start_single(
    dir: &Path,
    url: Option<String>,
) -> anyhow::Result<(Arc<Recall>, Vec<JoinHandle<()>>)> {
    let s = settings(dir, url.clone(), MasterKey::generate())?;
    let store = Store::open(url.as_deref(), &s.sqlite_path(), &s.master_key)?;
    store.migrate().await?;
    recall::startup::start_with(s, store, Arc::new(LocalBus::default())).await
}

/// How the login measure runs.
pub(super) struct Phases {
    pub(super) secs: f64,
    pub(super) rounds: usize,
    pub(super) overload_secs: f64,
    pub(super) callers: usize,
}

/// Raw argon2 and login throughput measured in alternation, so a burst of
/// other work on the machine hits both sides of the ratio.
pub(super) struct Paired {
    raw: f64,
    login: f64,
    ratio: f64,
    raw_rounds: Vec<f64>,
    login_rounds: Vec<f64>,
    failed: usize,
    attempted: usize,
}

pub(super) async fn paired(
    recall: &Arc<Recall>,
    users: &Arc<Vec<String>>,
    p: &Phases,
    store: &str,
) -> anyhow::Result<Paired> {
    let (mut raw_rounds, mut login_rounds, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut failed, mut attempted) = (0, 0);
    for round in 1..=p.rounds {
        let secs = p.secs;
        let raw = tokio::task::spawn_blocking(move || raw_argon2(secs)).await?;
        let (rate, f, a) = closed_loop(recall, users, p.callers, secs).await?;
        progress(
            "login",
            &format!(
                "{store} round {round}: raw argon2id {raw:.1}/s, Recall::login {rate:.1}/s ({} callers) = {:.2}",
                p.callers,
                rate / raw
            ),
        );
        raw_rounds.push(raw);
        login_rounds.push(rate);
        ratios.push(rate / raw);
        failed += f;
        attempted += a;
    }
    let median = |v: &[f64]| pct(&sorted(v.to_vec()), 50.0);
    Ok(Paired {
        raw: median(&raw_rounds),
        login: median(&login_rounds),
        ratio: median(&ratios),
        raw_rounds,
        login_rounds,
        failed,
        attempted,
    })
}

pub(super) async fn login(cli: &Cli, p: &Phases) -> anyhow::Result<Value> {
    // The fleet store first: full load against raw argon2, then overload.
    let db = BenchDb::create(&cli.pg).await?;
    let pg = match start_single(&cli.dir, Some(db.url.clone())).await {
        Ok((recall, tasks)) => {
            let r = login_pg(&recall, &db.url, p).await;
            stop(&tasks);
            r
        }
        Err(e) => Err(e),
    };
    db.drop_db().await;
    let mut out = pg?;

    // The embedded store, full load only, for comparison.
    let dir = cli.dir.join(format!("login-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = async {
        let (recall, tasks) = start_single(&dir, None).await?;
        let r = match register_users(&recall, 16).await.map(Arc::new) {
            Ok(users) => paired(&recall, &users, p, "SQLite").await,
            Err(e) => Err(e),
        };
        stop(&tasks);
        r
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let sqlite = sqlite?;
    out["sqlite_login_per_s"] = json!(round(sqlite.login, 1));
    out["sqlite_raw_per_s"] = json!(round(sqlite.raw, 1));
    out["sqlite_ratio"] = json!(round(sqlite.ratio, 3));
    Ok(out)
}

/// Connections ever opened to the database (PostgreSQL's own statistics).
pub(super) async fn pg_sessions(url: &str) -> anyhow::Result<i64> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await?;
    drop(client);
    let _ = driver.await;
    Ok(row.get(0))
}

pub(super) async fn login_pg(recall: &Arc<Recall>, url: &str, p: &Phases) -> anyhow::Result<Value> {
    let (workers, queue) = (recall.settings().hash_workers, recall.settings().hash_queue);
    let users = Arc::new(register_users(recall, 16).await?);
    // Full load, closed loop: enough callers to keep every hash worker busy,
    // under the queue bound (so nothing is refused).
    let sessions_before = pg_sessions(url).await?;
    let m = paired(recall, &users, p, "PostgreSQL").await?;
    // The statistics are flushed about once a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let opened = (pg_sessions(url).await? - sessions_before - 2).max(0);
    let per_login = opened as f64 / m.attempted.max(1) as f64;
    progress(
        "login",
        &format!(
            "PostgreSQL: {opened} connections opened for {} logins ({per_login:.2} per login)",
            m.attempted
        ),
    );
    let (rate, raw, failed, callers, secs) = (m.login, m.raw, m.failed, p.callers, p.overload_secs);

    // Twice the sustainable rate, open loop: arrivals do not wait for answers.
    let offered = 2.0 * rate.max(1.0);
    let window = Duration::from_secs_f64(secs);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / offered));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let t0 = Instant::now();
    let mut jobs = Vec::new();
    let mut i = 0usize;
    while t0.elapsed() < window {
        tick.tick().await;
        let (recall, users) = (recall.clone(), users.clone());
        let input = login_input(&users, i);
        i += 1;
        jobs.push(tokio::spawn(async move {
            let asked = Instant::now();
            let res = recall.auth().login(input, &Meta::default()).await;
            let done = Instant::now();
            let code = match res {
                Ok(_) => 200u16,
                Err(e) => {
                    use actix_web::ResponseError;
                    recall::http::errors::ApiError::from(e)
                        .status_code()
                        .as_u16()
                }
            };
            (asked, done, code)
        }));
    }
    let sent = jobs.len();
    let (mut served, mut refused, mut all) = (Vec::new(), Vec::new(), Vec::new());
    let mut other = 0usize;
    let mut last_done = t0;
    for j in jobs {
        let (asked, done, code) = tokio::time::timeout(Duration::from_secs(120), j).await??;
        let ms = (done - asked).as_secs_f64() * 1e3;
        all.push(ms);
        match code {
            200 => {
                served.push(ms);
                last_done = last_done.max(done);
            }
            503 => refused.push(ms),
            _ => other += 1,
        }
    }
    let (served, refused, all) = (sorted(served), sorted(refused), sorted(all));
    // How fast admitted logins were answered while overloaded, and how long
    // the whole bounded hash queue takes to drain at that pace: nobody
    // should wait much longer than that.
    let service = served.len() as f64 / (last_done - t0).as_secs_f64().max(1e-3);
    let drain_ms = (workers + queue) as f64 / service.max(1.0) * 1e3;
    progress(
        "login",
        &format!(
            "offered {offered:.1}/s for {secs}s: {} served at {service:.1}/s (p99 {:.0} ms, queue drain {drain_ms:.0} ms), {} refused with 503 (p99 {:.1} ms)",
            served.len(),
            pct(&served, 99.0),
            refused.len(),
            pct(&refused, 99.0)
        ),
    );
    Ok(json!({
        "store": "postgres",
        "cores": cores(),
        "raw_verifies_per_s": round(raw, 1),
        "login_per_s": round(rate, 1),
        "ratio": round(m.ratio, 3),
        "raw_rounds": m.raw_rounds.iter().map(|v| round(*v, 1)).collect::<Vec<_>>(),
        "login_rounds": m.login_rounds.iter().map(|v| round(*v, 1)).collect::<Vec<_>>(),
        "callers": callers,
        "login_failed": failed,
        "pg_connections_opened_per_login": round(per_login, 2),
        "hash_workers": workers,
        "hash_queue": queue,
        "overload": {
            "offered_per_s": round(offered, 1),
            "seconds": secs,
            "sent": sent,
            "served": served.len(),
            "refused_503": refused.len(),
            "other_errors": other,
            "service_per_s": round(service, 1),
            "served_p50_ms": round(pct(&served, 50.0), 1),
            "served_p99_ms": round(pct(&served, 99.0), 1),
            "served_max_ms": round(pct(&served, 100.0), 1),
            "all_p99_ms": round(pct(&all, 99.0), 1),
            "refused_p99_ms": round(pct(&refused, 99.0), 2),
            "queue_drain_ms": round(drain_ms, 1),
        },
    }))
}
