//! Measure 17, the write path on PostgreSQL (group commit, issue 24):
//! appends/s and append latency at 1, 8 and 32 concurrent writers (one
//! event per store call, as each revoking call appends), refresh-token
//! rotations per second per core through `Recall`'s own refresh path with
//! 64 callers, and refresh and login latency at 8 callers. The scale curves
//! (measure 13) use the same appends and refreshes.

use super::*;
use recall::events::Stamp;

/// Percentiles (µs) of a set of latencies.
fn latency(mut samples: Vec<Duration>) -> Value {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
        samples
            .get(i)
            .map_or(0.0, |d| round(d.as_secs_f64() * 1e6, 0))
    };
    json!({ "p50_us": at(0.50), "p99_us": at(0.99), "samples": samples.len() })
}

/// Runs `callers` tasks, each calling `call` until `secs` have passed; the
/// calls per second and their latencies.
pub(super) async fn drive<F, Fut>(
    callers: usize,
    secs: f64,
    call: F,
) -> anyhow::Result<(f64, Value)>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..callers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            while Instant::now() < until {
                let started = Instant::now();
                call(i).await?;
                took.push(started.elapsed());
            }
            anyhow::Ok(took)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let rate = all.len() as f64 / t0.elapsed().as_secs_f64();
    Ok((rate, latency(all)))
}

/// Events appended per second on PostgreSQL by each number of concurrent
/// writers, one event per store call, with the latency of each call.
pub(super) async fn appends(
    db: &BenchDb,
    writers: &[usize],
    secs: f64,
) -> anyhow::Result<Vec<Value>> {
    let store = Store::open(
        Some(&db.url),
        Path::new("unused.db"),
        &recall::keys::MasterKey::generate(),
    )?;
    store.migrate().await?;
    let mut out = Vec::new();
    for &w in writers {
        let store = store.clone();
        let (rate, latency) = drive(w, secs, move |_| {
            let store = store.clone();
            async move {
                let e = Event::LoggedOut {
                    user_id: Uuid::now_v7(),
                    session_id: Uuid::now_v7(),
                };
                store
                    .append_raw(vec![e], &Stamp::now(&Meta::system()))
                    .await?;
                Ok(())
            }
        })
        .await?;
        progress(
            "writes",
            &format!("{w} writers: {rate:.0} appends/s, latency {latency}"),
        );
        out.push(json!({ "writers": w, "appends_per_s": round(rate, 0), "latency": latency }));
    }
    Ok(out)
}

/// A running `Recall` on `db` (in-process bus), one user, and `n` of its
/// sessions' refresh tokens.
async fn recall_with_sessions(
    cli: &Cli,
    db: &BenchDb,
    n: usize,
) -> anyhow::Result<(Arc<Recall>, Vec<JoinHandle<()>>, String, Vec<String>)> {
    let s = settings(&cli.dir, Some(db.url.clone()), MasterKey::generate())?;
    let store = Store::open(Some(&db.url), &s.sqlite_path(), &s.master_key)?;
    store.migrate().await?;
    let (recall, tasks) =
        recall::startup::start_with(s, store, Arc::new(LocalBus::default())).await?;
    let name = format!("writes-{}", &Uuid::new_v4().simple().to_string()[..10]);
    recall
        .auth()
        .register(&name, PASSWORD.into(), &Meta::default())
        .await
        .map_err(|e| anyhow::anyhow!("register: {e}"))?;
    let mut tokens = Vec::new();
    for _ in 0..n {
        let input = login_input(std::slice::from_ref(&name), 0);
        let t = recall
            .auth()
            .login(input, &Meta::default())
            .await
            .map_err(|e| anyhow::anyhow!("login: {e}"))?;
        tokens.push(t.refresh_token);
    }
    Ok((recall, tasks, name, tokens))
}

/// Refresh-token rotations per second on PostgreSQL through `Recall`'s own
/// refresh path (theft detection, the cutoff checks and the event append
/// included), from `callers` sessions refreshed concurrently.
pub(super) async fn refreshes(
    cli: &Cli,
    db: &BenchDb,
    callers: usize,
    secs: f64,
) -> anyhow::Result<Value> {
    let (recall, tasks, _, tokens) = recall_with_sessions(cli, db, callers).await?;
    let tokens: Arc<Vec<parking_lot::Mutex<String>>> =
        Arc::new(tokens.into_iter().map(parking_lot::Mutex::new).collect());
    let result = drive(callers, secs, move |i| {
        let (recall, tokens) = (recall.clone(), tokens.clone());
        async move {
            let token = tokens[i].lock().clone();
            let input = recall::service::RefreshInput {
                refresh_token: token,
                ip: None,
                dpop: Default::default(),
            };
            let t = recall
                .auth()
                .refresh(input, &Meta::default())
                .await
                .map_err(|e| anyhow::anyhow!("refresh: {e}"))?;
            *tokens[i].lock() = t.refresh_token;
            Ok(())
        }
    })
    .await;
    stop(&tasks);
    let (rate, latency) = result?;
    let per_core = rate / cores() as f64;
    progress(
        "writes",
        &format!(
            "refresh, {callers} callers: {rate:.0}/s on {} cores = {per_core:.0}/s per core, latency {latency}",
            cores()
        ),
    );
    Ok(json!({
        "refreshes_per_s": round(rate, 0),
        "per_core": round(per_core, 0),
        "callers": callers,
        "cores": cores(),
        "latency": latency,
        "goal_per_core": 1400,
        "keycloak_sizing_per_vcpu": 120,
    }))
}

/// Logins per second and their latency with `callers` at once (argon2id
/// dominates; the store call is one write among the hash).
async fn logins(cli: &Cli, db: &BenchDb, callers: usize, secs: f64) -> anyhow::Result<Value> {
    let (recall, tasks, name, _) = recall_with_sessions(cli, db, 0).await?;
    let result = drive(callers, secs, move |_| {
        let (recall, name) = (recall.clone(), name.clone());
        async move {
            let input = login_input(std::slice::from_ref(&name), 0);
            recall
                .auth()
                .login(input, &Meta::default())
                .await
                .map_err(|e| anyhow::anyhow!("login: {e}"))?;
            Ok(())
        }
    })
    .await;
    stop(&tasks);
    let (rate, latency) = result?;
    progress(
        "writes",
        &format!("login, {callers} callers: {rate:.0}/s, latency {latency}"),
    );
    Ok(json!({ "logins_per_s": round(rate, 0), "callers": callers, "latency": latency }))
}

/// Measure 17: every figure above on a fresh database each.
pub(super) async fn writes(cli: &Cli, writers: &[usize], secs: f64) -> anyhow::Result<Value> {
    let db = BenchDb::create(&cli.pg).await?;
    let appends = appends(&db, writers, secs).await;
    db.drop_db().await;
    let appends = appends?;
    let rate_at = |w: usize| {
        appends
            .iter()
            .find(|a| a["writers"] == w)
            .and_then(|a| a["appends_per_s"].as_f64())
    };
    let ratio = match (rate_at(32), rate_at(1)) {
        (Some(a), Some(b)) if b > 0.0 => round(a / b, 2),
        _ => 0.0,
    };
    let mut runs = Vec::new();
    for callers in [64, 8] {
        let db = BenchDb::create(&cli.pg).await?;
        let r = refreshes(cli, &db, callers, secs).await;
        db.drop_db().await;
        runs.push(r?);
    }
    let db = BenchDb::create(&cli.pg).await?;
    let login = logins(cli, &db, 8, secs).await;
    db.drop_db().await;
    Ok(json!({
        "append": appends,
        "append_ratio_32_to_1": ratio,
        "refresh": runs[0],
        "refresh_per_core_pg": runs[0]["per_core"],
        "refresh_8": runs[1],
        "login_8": login?,
        "cores": cores(),
    }))
}
