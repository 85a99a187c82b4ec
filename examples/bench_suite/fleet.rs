//! 3. Propagation through a three-instance fleet.

use super::*;

// --- 3. propagation ----------------------------------------------------------

pub(super) async fn fleet(cli: &Cli, revocations: usize) -> anyhow::Result<Value> {
    let db = BenchDb::create(&cli.pg).await?;
    let result = fleet_on(cli, &db, revocations).await;
    db.drop_db().await;
    result
}

/// `n` instances on `db` sharing a fresh Redis channel, each with its tasks.
pub(super) async fn start_nodes(
    cli: &Cli,
    db: &BenchDb,
    n: usize,
) -> anyhow::Result<Vec<(Arc<Recall>, Vec<JoinHandle<()>>)>> {
    let master = MasterKey::generate();
    let channel = format!("recall:bench:{}", Uuid::new_v4().simple());
    let mut nodes = Vec::new();
    for _ in 0..n {
        let mut s = settings(&cli.dir, Some(db.url.clone()), master.clone())?;
        s.redis_url = Some(cli.redis.clone());
        s.redis_channel = channel.clone();
        let store = Store::open(Some(&db.url), &s.sqlite_path(), &s.master_key)?;
        store.migrate().await?;
        let bus: Arc<dyn Bus> =
            Arc::new(RedisBus::new(&cli.redis, &channel, s.notice_auth(), None)?);
        nodes.push(recall::startup::start_with(s, store, bus).await?);
    }
    Ok(nodes)
}

pub(super) async fn fleet_on(cli: &Cli, db: &BenchDb, revocations: usize) -> anyhow::Result<Value> {
    let mut nodes = Vec::new();
    let mut tasks = Vec::new();
    for (node, t) in start_nodes(cli, db, 3).await? {
        nodes.push(node);
        tasks.extend(t);
    }
    let result = fleet_measure(&nodes, revocations).await;
    stop(&tasks);
    result
}

pub(super) async fn fleet_measure(
    nodes: &[Arc<Recall>],
    revocations: usize,
) -> anyhow::Result<Value> {
    let (a, b, c) = (nodes[0].clone(), nodes[1].clone(), nodes[2].clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().all(|n| n.sync().bus_connected()) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the fleet never subscribed to Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The sessions to revoke, committed and published through A.
    let started = Instant::now();
    let sids = bench_sessions(&a, revocations).await?;
    let head = a.sync().state().last_seq();
    while b.sync().state().last_seq() < head || c.sync().state().last_seq() < head {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "B and C never caught up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    progress(
        "fleet",
        &format!(
            "3 instances on PostgreSQL + Redis; {revocations} sessions created in {:.1}s; revoking one at a time through A",
            started.elapsed().as_secs_f64()
        ),
    );

    // One revocation at a time: A answers (committed, applied on A, notice
    // handed to the publisher), then this thread polls B's and C's state
    // until both reject the session.
    let handle = tokio::runtime::Handle::current();
    let limit = Duration::from_secs(2);
    let measured = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut both = Vec::with_capacity(sids.len());
        let mut each = Vec::with_capacity(2 * sids.len());
        let mut answer = Vec::with_capacity(sids.len());
        let mut late = 0usize;
        for (i, sid) in sids.iter().enumerate() {
            let asked = Instant::now();
            handle
                .block_on(a.admin().admin_revoke_session(*sid, None, &Meta::system()))
                .map_err(|e| anyhow::anyhow!("revoke: {e}"))?;
            let t0 = Instant::now();
            answer.push((t0 - asked).as_secs_f64() * 1e3);
            let (mut tb, mut tc) = (None, None);
            loop {
                if tb.is_none() && b.sync().state().is_session_revoked(*sid) {
                    tb = Some(t0.elapsed());
                }
                if tc.is_none() && c.sync().state().is_session_revoked(*sid) {
                    tc = Some(t0.elapsed());
                }
                if tb.is_some() && tc.is_some() {
                    break;
                }
                if t0.elapsed() > limit {
                    late += 1;
                    break;
                }
                std::thread::yield_now();
            }
            let ms = |d: Option<Duration>| d.unwrap_or(limit).as_secs_f64() * 1e3;
            each.push(ms(tb));
            each.push(ms(tc));
            both.push(ms(tb).max(ms(tc)));
            if (i + 1) % 250 == 0 {
                progress("fleet", &format!("{} revocations propagated", i + 1));
            }
        }
        Ok((both, each, answer, late))
    })
    .await??;
    let (both, each, answer, late) = measured;
    let both = sorted(both);
    let each = sorted(each);
    let answer = sorted(answer);
    Ok(json!({
        "revocations": both.len(),
        "instances": 3,
        "store": "postgres",
        "bus": "redis",
        "notices": "HMAC-SHA256 authenticated (G9)",
        "p50_ms": round(pct(&both, 50.0), 3),
        "p99_ms": round(pct(&both, 99.0), 3),
        "max_ms": round(pct(&both, 100.0), 3),
        "per_instance_p50_ms": round(pct(&each, 50.0), 3),
        "per_instance_p99_ms": round(pct(&each, 99.0), 3),
        "not_within_2s": late,
        "a_answer_p50_ms": round(pct(&answer, 50.0), 3),
        "a_answer_p99_ms": round(pct(&answer, 99.0), 3),
        "measured_from": "A's answer (end_session returned: committed, applied on A, notice queued) until both B and C reject",
    }))
}
