//! The cost of sealing personal data (crypto-shredding, issue 25): logins
//! and refreshes per second on PostgreSQL through `Recall`'s own paths,
//! every call with a client address (and each login with a user agent and
//! a device id, all sealed under the user's key), alternating rounds with
//! the sealing on and off (`Store::bench_sealing`, the same binary and
//! database), so drift hits both alike. Goal: on ≥ 0.95 x off.

use super::*;
use recall::service::{DeviceId, RefreshInput, UserAgent};

const IP: &str = "203.0.113.5";

fn meta() -> Meta {
    Meta {
        actor: None,
        ip: Some(IP.into()),
    }
}

/// Calls per second of `call` from `callers` tasks for `secs`.
async fn rate<F, Fut>(callers: usize, secs: f64, call: F) -> anyhow::Result<f64>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    Ok(super::writes::drive(callers, secs, call).await?.0)
}

fn login(name: &str) -> recall::service::LoginInput {
    let mut input = login_input(&[name.to_owned()], 0);
    input.ip = IP.parse().ok();
    input.user_agent = Some(UserAgent::new("Mozilla/5.0 (X11; Linux x86_64) bench/1"));
    input.device_id = DeviceId::parse("bench-device-0123456789".into()).ok();
    input
}

/// Logins and refreshes per second with the sealing on and off.
pub(super) async fn pii(cli: &Cli, secs: f64, rounds: usize) -> anyhow::Result<Value> {
    let db = BenchDb::create(&cli.pg).await?;
    let s = settings(&cli.dir, Some(db.url.clone()), MasterKey::generate())?;
    let hash_workers = s.hash_workers;
    let store = Store::open(Some(&db.url), &s.sqlite_path(), &s.master_key)?;
    store.migrate().await?;
    let (recall, tasks) =
        recall::startup::start_with(s, store, Arc::new(LocalBus::default())).await?;
    let name = format!("pii-{}", &Uuid::new_v4().simple().to_string()[..10]);
    recall
        .auth()
        .register(&name, PASSWORD.into(), &meta())
        .await
        .map_err(|e| anyhow::anyhow!("register: {e}"))?;
    let refreshers = 16;
    let mut tokens = Vec::new();
    for _ in 0..refreshers {
        let t = recall.auth().login(login(&name), &meta()).await;
        tokens.push(t.map_err(|e| anyhow::anyhow!("login: {e}"))?.refresh_token);
    }
    let tokens: Arc<Vec<parking_lot::Mutex<String>>> =
        Arc::new(tokens.into_iter().map(parking_lot::Mutex::new).collect());
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..rounds * 2 {
        let sealing = round % 2 == 0;
        recall.store().bench_sealing(sealing);
        let (r, t) = (recall.clone(), tokens.clone());
        let refreshes = rate(refreshers, secs, move |i| {
            let (recall, tokens) = (r.clone(), t.clone());
            async move {
                let input = RefreshInput {
                    refresh_token: tokens[i].lock().clone(),
                    ip: IP.parse().ok(),
                    dpop: Default::default(),
                };
                let out = recall.auth().refresh(input, &meta()).await;
                *tokens[i].lock() = out
                    .map_err(|e| anyhow::anyhow!("refresh: {e}"))?
                    .refresh_token;
                Ok(())
            }
        })
        .await?;
        let (r, n) = (recall.clone(), name.clone());
        let logins = rate(hash_workers * 2, secs, move |_| {
            let (recall, name) = (r.clone(), n.clone());
            async move {
                let out = recall.auth().login(login(&name), &meta()).await;
                out.map_err(|e| anyhow::anyhow!("login: {e}"))?;
                Ok(())
            }
        })
        .await?;
        progress(
            "pii",
            &format!("sealing {sealing}: {refreshes:.0} refreshes/s, {logins:.0} logins/s"),
        );
        if sealing { &mut on } else { &mut off }.push((refreshes, logins));
    }
    recall.store().bench_sealing(true);
    stop(&tasks);
    db.drop_db().await;
    let median = |v: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        let s = sorted(v.iter().map(pick).collect());
        s[s.len() / 2]
    };
    let (ref_on, ref_off) = (median(&on, |p| p.0), median(&off, |p| p.0));
    let (log_on, log_off) = (median(&on, |p| p.1), median(&off, |p| p.1));
    Ok(json!({
        "refreshes_per_s": { "sealed": round(ref_on, 0), "plain": round(ref_off, 0),
            "ratio": round(ref_on / ref_off, 3), "callers": refreshers },
        "logins_per_s": { "sealed": round(log_on, 0), "plain": round(log_off, 0),
            "ratio": round(log_on / log_off, 3), "callers": hash_workers * 2 },
        "rounds": rounds, "secs": secs, "cores": cores(), "goal_ratio": 0.95,
    }))
}
