//! Measure 19, the log as evidence: verifying the hash chain of a million events,
//! and pruning them (retention), on PostgreSQL and SQLite.

use super::*;

/// Appends `events` backdated events (40 days old) in large batches.
async fn fill(store: &Store, events: usize, what: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let long_ago = Timestamp::now().ms() - 40 * 24 * 3_600_000;
    let batch = 20_000;
    let mut written = 0usize;
    while written < events {
        let n = batch.min(events - written);
        let evs = (0..n)
            .map(|_| Event::LoggedOut {
                user_id: Uuid::now_v7(),
                session_id: Uuid::now_v7(),
            })
            .collect();
        let at = Timestamp::from_ms(long_ago + written as i64);
        store
            .append_raw(evs, &Stamp::new(&Meta::system(), at))
            .await?;
        written += n;
        if written.is_multiple_of(200_000) {
            progress(what, &format!("{written} events appended"));
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Fills, verifies and prunes one store.
async fn one(store: &Store, events: usize, what: &str) -> anyhow::Result<Value> {
    store.migrate().await?;
    let fill_s = fill(store, events, what).await?;
    let started = Instant::now();
    let verdict = store.verify_log(0).await?;
    let verify_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(verdict.ok, "the chain did not verify: {verdict:?}");
    progress(
        what,
        &format!(
            "verified {} events in {verify_s:.2}s",
            verdict.verified_through
        ),
    );
    let started = Instant::now();
    let cutoff = Timestamp::now().minus(Duration::from_secs(30 * 86_400));
    let (mut pruned, mut batches) = (0i64, 0u64);
    while let Some(env) = store
        .prune_log(cutoff, &Stamp::now(&Meta::system()))
        .await?
    {
        if let Event::LogPruned { count, .. } = env.event {
            pruned += count;
            batches += 1;
        }
        if batches.is_multiple_of(20) {
            progress(what, &format!("{pruned} events pruned"));
        }
    }
    let prune_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(pruned as usize == events, "pruned {pruned} of {events}");
    let after = store.verify_log(0).await?;
    anyhow::ensure!(after.ok, "the pruned chain did not verify: {after:?}");
    progress(
        what,
        &format!("pruned {pruned} in {prune_s:.2}s; still verifies"),
    );
    Ok(json!({
        "events": events,
        "fill_s": round(fill_s, 2),
        "verify_s": round(verify_s, 2),
        "verify_per_s": round(events as f64 / verify_s, 0),
        "prune_s": round(prune_s, 2),
        "prune_per_s": round(events as f64 / prune_s, 0),
        "prune_batches": batches,
    }))
}

pub(super) async fn evidence(cli: &Cli, events: usize) -> anyhow::Result<Value> {
    let db = BenchDb::create(&cli.pg).await?;
    let pg = match Store::open(Some(&db.url), Path::new("unused"), &MasterKey::generate()) {
        Ok(store) => one(&store, events, "evidence/postgres").await,
        Err(e) => Err(e.into()),
    };
    db.drop_db().await;
    let dir = cli
        .dir
        .join(format!("evidence-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = match Store::open(None, &dir.join("recall.db"), &MasterKey::generate()) {
        Ok(store) => one(&store, events, "evidence/sqlite").await,
        Err(e) => Err(e.into()),
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({ "postgres": pg?, "sqlite": sqlite? }))
}
