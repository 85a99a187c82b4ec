//! Measure 11, propagation to verifiers: a three-instance fleet on PostgreSQL and
//! Redis, served over HTTP, and two verifiers (the `recall-verifier` crate,
//! as an API or the sidecar embeds it) following A's and B's revocation
//! feeds over SSE. Revocations go through C, one at a time; the time is
//! from C's answer until both verifiers reject the session.

use super::*;

pub(super) async fn verifiers(cli: &Cli, revocations: usize) -> anyhow::Result<Value> {
    let db = BenchDb::create(&cli.pg).await?;
    let result = verifiers_on(cli, &db, revocations).await;
    db.drop_db().await;
    result
}

async fn verifiers_on(cli: &Cli, db: &BenchDb, revocations: usize) -> anyhow::Result<Value> {
    let mut servers = Vec::new();
    for (node, tasks) in super::fleet::start_nodes(cli, db, 3).await? {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        servers
            .push(recall::server::Application::with_core(listener, node, tasks, 1, false)?.spawn());
    }
    let (_, token) = servers[0]
        .recall
        .feed()
        .create_service("bench", &Meta::system())
        .await
        .map_err(|e| anyhow::anyhow!("service: {e}"))?;
    let mut followers = Vec::new();
    for upstream in [servers[0].url(), servers[1].url()] {
        let v = recall_verifier::Verifier::new(recall_verifier::Config::new(
            vec![upstream],
            token.clone(),
        ))?;
        v.start();
        followers.push(v);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !followers.iter().all(|v| v.is_fresh())
        || !servers.iter().all(|s| s.recall.sync().bus_connected())
    {
        anyhow::ensure!(Instant::now() < deadline, "the verifiers never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = servers[2].recall.clone();
    let sids = bench_sessions(&c, revocations).await?;
    progress(
        "verifiers",
        &format!("{revocations} sessions; revoking through C"),
    );
    let handle = tokio::runtime::Handle::current();
    let limit = Duration::from_secs(2);
    let (v1, v2) = (followers[0].clone(), followers[1].clone());
    let (both, late) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut both = Vec::with_capacity(sids.len());
        let mut late = 0usize;
        for (i, sid) in sids.iter().enumerate() {
            handle
                .block_on(c.admin().admin_revoke_session(*sid, None, &Meta::system()))
                .map_err(|e| anyhow::anyhow!("revoke: {e}"))?;
            let t0 = Instant::now();
            while !(v1.is_session_revoked(*sid) && v2.is_session_revoked(*sid)) {
                if t0.elapsed() > limit {
                    late += 1;
                    break;
                }
                std::thread::yield_now();
            }
            both.push(t0.elapsed().min(limit).as_secs_f64() * 1e3);
            if (i + 1) % 250 == 0 {
                progress(
                    "verifiers",
                    &format!("{} revocations reached both verifiers", i + 1),
                );
            }
        }
        Ok((both, late))
    })
    .await??;
    for s in servers {
        s.stop().await;
    }
    let both = sorted(both);
    Ok(json!({
        "revocations": both.len(),
        "instances": 3,
        "verifiers": 2,
        "p50_ms": round(pct(&both, 50.0), 3),
        "p99_ms": round(pct(&both, 99.0), 3),
        "max_ms": round(pct(&both, 100.0), 3),
        "not_within_2s": late,
        "measured_from": "C's answer until both verifiers (following A's and B's SSE feeds) reject",
    }))
}
