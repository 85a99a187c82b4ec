//! 5. Start-up with a long log, and memory per revoked session.

use super::*;
use recall::events::Stamp;

// --- 5. start-up and memory ----------------------------------------------------

pub(super) async fn startup(cli: &Cli, events: usize, in_window: usize) -> anyhow::Result<Value> {
    let dir = cli.dir.join(format!("startup-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let result = startup_in(&dir, events, in_window).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

pub(super) async fn startup_in(
    dir: &Path,
    events: usize,
    in_window: usize,
) -> anyhow::Result<Value> {
    let s = settings(dir, None, MasterKey::generate())?;
    let retention = s.retention_ms();
    let store = Store::open(None, &s.sqlite_path(), &s.master_key)?;
    store.migrate().await?;
    // History far outside the window: logins, refreshes and logouts of a
    // month ago, appended in large batches.
    let filling = Instant::now();
    let month_ago = Timestamp::now().ms() - 30 * 24 * 3_600_000;
    let batch = 20_000;
    let mut written = 0usize;
    while written < events {
        let n = batch.min(events - written);
        let mut evs = Vec::with_capacity(n);
        for i in 0..n {
            let (user_id, session_id) = (Uuid::now_v7(), Uuid::now_v7());
            evs.push(match (written + i) % 3 {
                0 => Event::LoginSucceeded {
                    user_id,
                    session_id,
                    client_type: "web".into(),
                    device_id: None,
                },
                1 => Event::SessionRefreshed {
                    user_id,
                    session_id,
                },
                _ => Event::LoggedOut {
                    user_id,
                    session_id,
                },
            });
        }
        store
            .append_raw(
                evs,
                &Stamp::new(
                    &Meta::system(),
                    Timestamp::from_ms(month_ago + written as i64),
                ),
            )
            .await?;
        written += n;
        if written.is_multiple_of(200_000) {
            progress("startup", &format!("{written} backdated events appended"));
        }
    }
    // The window: revocations of a minute ago that must still reject tokens.
    append_recent_logouts(&store, in_window).await?;
    let fill_s = filling.elapsed().as_secs_f64();
    drop(store);
    progress(
        "startup",
        &format!(
            "log filled in {fill_s:.1}s (SQLite, Store::append_raw in batches of {batch}); timing starts"
        ),
    );

    // Start as `recall serve` does: open, migrate (a no-op now), start.
    let mut ready_ms = Vec::new();
    let mut revoked = 0;
    for _ in 0..3 {
        let t0 = Instant::now();
        let store = Store::open(None, &s.sqlite_path(), &s.master_key)?;
        store.migrate().await?;
        let (recall, tasks) =
            recall::startup::start_with(s.clone(), store, Arc::new(LocalBus::default())).await?;
        ready_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        revoked = recall.sync().state().sizes().0;
        anyhow::ensure!(
            recall.sync().is_fresh(Timestamp::now()),
            "not ready right after start"
        );
        stop(&tasks);
    }
    // The part that depends on the log: the window snapshot and the fold.
    let store = Store::open(None, &s.sqlite_path(), &s.master_key)?;
    let t0 = Instant::now();
    let now = Timestamp::now();
    let window_start = Timestamp::from_ms(now.ms() - retention);
    let snapshot = store.snapshot(window_start, now).await?;
    let snapshot_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let state = recall::state::from_snapshot(&snapshot, retention, now);
    let fold_ms = t1.elapsed().as_secs_f64() * 1e3;
    let head = store.head().await?;
    progress(
        "startup",
        &format!(
            "ready in {:?} ms; snapshot {snapshot_ms:.1} ms ({} window events), fold {fold_ms:.2} ms",
            ready_ms.iter().map(|m| round(*m, 1)).collect::<Vec<_>>(),
            snapshot.events.len()
        ),
    );
    Ok(json!({
        "store": "sqlite",
        "log_events": head,
        "window_events": snapshot.events.len(),
        "revoked_sessions_after_start": revoked,
        "fold_revoked_sessions": state.sizes().0,
        "fill_s": round(fill_s, 1),
        "ready_ms_runs": ready_ms.iter().map(|m| round(*m, 1)).collect::<Vec<_>>(),
        "ready_ms": round(ready_ms.iter().cloned().fold(0.0, f64::max), 1),
        "snapshot_ms": round(snapshot_ms, 2),
        "fold_ms": round(fold_ms, 3),
    }))
}

/// Resident set size in bytes, from /proc/self/statm.
pub(super) fn rss_bytes() -> u64 {
    let page = std::fs::read_to_string("/proc/self/smaps")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("KernelPageSize:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(4096, |kb| kb * 1024);
    let resident = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    resident * page
}

pub(super) fn memory(sessions: usize) -> anyhow::Result<Value> {
    let retention = settings(Path::new("."), None, MasterKey::generate())?.retention_ms();
    let now = Timestamp::now().ms();
    let logout = |seq: i64| {
        let event = Event::LoggedOut {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
        };
        Envelope {
            seq,
            stream: event.stream(),
            version: 1,
            at: Timestamp::from_ms(now),
            actor: None,
            ip: None,
            event,
        }
    };
    // Warm the allocator with the same temporary shapes first.
    for i in 0..1000 {
        drop(logout(i));
    }
    let mut state = RevocationState::new(retention);
    let before = rss_bytes();
    for i in 0..sessions {
        // Each event is built, folded and dropped, as the sync path does.
        state.apply_event(&logout(i as i64 + 1));
    }
    let after = rss_bytes();
    anyhow::ensure!(state.sizes().0 == sessions, "fold lost sessions");
    let per = after.saturating_sub(before) as f64 / sessions as f64;
    progress(
        "memory",
        &format!(
            "{sessions} revoked sessions folded: RSS {:.1} -> {:.1} MiB, {per:.1} bytes each",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0
        ),
    );
    Ok(json!({
        "revoked_sessions": sessions,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_session": round(per, 1),
        "last_seq": state.last_seq(),
    }))
}
