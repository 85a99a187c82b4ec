//! The store under real concurrency: appends from many writers are never
//! skipped (G6), migrations race safely, and SQLite readers do not wait
//! behind a writer.

use std::sync::Arc;

use recall::events::{Event, Meta, Stamp};
use recall::store::sql::{Db, Deliver, Mode, Work};
use recall::store::sqlite::SqliteDb;
use recall::store::Store;
use uuid::Uuid;

use crate::fixtures::{
    appends_seen_by_a_poller, end_rule, new_session, now_plus, StoreFixture, NOW,
};
use crate::helpers::{Backend, Kind};

/// G6: 16 appenders x 500 events against a reader polling "after last
/// seen": the reader sees every seq exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_appends_are_never_skipped() {
    const WRITERS: usize = 16;
    const EACH: usize = 500;
    let fx = StoreFixture::new(Kind::Postgres).await;
    let seen = appends_seen_by_a_poller(
        std::slice::from_ref(&fx.store),
        fx.store.clone(),
        WRITERS,
        EACH,
    )
    .await;
    let expected: Vec<i64> = (1..=(WRITERS * EACH) as i64).collect();
    assert_eq!(seen.len(), expected.len(), "no event skipped or repeated");
    assert_eq!(seen, expected);
}

/// Instances starting together all migrate the same fresh database safely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_migrations_are_safe() {
    let b = Backend::new(Kind::Postgres).await;
    let url = b.db.as_ref().unwrap().url.clone();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let store = Store::open(
                Some(&url),
                std::path::Path::new("/nonexistent"),
                &recall::keys::MasterKey::generate(),
            )
            .unwrap();
            store.migrate().await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(b.store().await.head().await.unwrap(), 0);
}

/// SQLite: reads do not wait behind an open write transaction (WAL readers
/// on their own connections), and they see only what was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_readers_do_not_wait_for_the_writer() {
    let b = Backend::new(Kind::Sqlite).await;
    let db: Arc<dyn Db> = Arc::new(SqliteDb::open(&b.settings().sqlite_path()).unwrap());
    let store = Store::new(db.clone(), &recall::keys::MasterKey::generate());
    store.migrate().await.unwrap();
    let head = store.head().await.unwrap();
    // A writer holds its transaction (and SQLite's write lock) open: its
    // unit of work blocks the writer's thread until told to commit.
    let (hold, held) = std::sync::mpsc::channel::<()>();
    let (begun, started) = tokio::sync::oneshot::channel::<()>();
    let work: Work = Box::new(move |mut tx| {
        Box::pin(async move {
            tx.exec("UPDATE recall_seq SET last = last + 1 WHERE id = 1", &[])
                .await
                .unwrap();
            let _ = begun.send(());
            let _ = held.recv();
            tx.commit().await.unwrap();
            Box::new(|_| ()) as Deliver
        })
    });
    let writer = {
        let db = db.clone();
        tokio::spawn(async move { db.run(Mode::Write, work).await })
    };
    started.await.unwrap();
    let t = std::time::Instant::now();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(5), store.head())
        .await
        .expect("a read waited behind the writer")
        .unwrap();
    let snapshot = store.snapshot(now_plus(-1000), NOW).await.unwrap();
    assert!(
        t.elapsed() < std::time::Duration::from_millis(500),
        "reads took {:?} beside the writer",
        t.elapsed()
    );
    assert_eq!(seen, head, "an uncommitted write was visible");
    assert_eq!(snapshot.standing.head, head);
    hold.send(()).unwrap();
    writer.await.unwrap().unwrap();
    assert_eq!(store.head().await.unwrap(), head + 1, "the write committed");
}

/// Sixteen revocations of one session at once (a logout, an admin, a
/// binding mismatch seen by several instances): exactly one event, on
/// both stores; the others change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_revocations_of_one_session_append_once() {
    for kind in [Kind::Postgres, Kind::Sqlite] {
        let fx = StoreFixture::new(kind).await;
        let store = &fx.store;
        let user = Uuid::now_v7();
        let name = format!("race{}", &user.simple().to_string()[..8]);
        fx.user_with(user, &name, "$argon2id$x").await;
        for round in 0..10u8 {
            let session = {
                let mut s = new_session(user, round);
                s.client_type = "mobile".into();
                s.ip = None;
                s
            };
            fx.login_at(&session, NOW).await;
            let sid = session.id;
            let mut racers = Vec::new();
            for i in 0..16 {
                let store = store.clone();
                racers.push(tokio::spawn(async move {
                    let how = recall::domain::SessionEnd::Revoked {
                        cause: recall::events::RevokeCause::BindingMismatch,
                        reason: Some(format!("racer {i}")),
                    };
                    store
                        .revoke_session(
                            sid,
                            end_rule(sid, None, how),
                            &Stamp::new(&Meta::system(), now_plus(1)),
                        )
                        .await
                        .unwrap()
                }));
            }
            let mut appended = 0;
            for r in racers {
                appended += usize::from(r.await.unwrap().is_some());
            }
            assert_eq!(appended, 1, "{kind:?} round {round}");
        }
        let events = store.read_after(0, 1000).await.unwrap();
        let revoked = events
            .iter()
            .filter(|e| matches!(e.event, Event::SessionRevoked { .. }))
            .count();
        assert_eq!(revoked, 10, "{kind:?}");
    }
}
