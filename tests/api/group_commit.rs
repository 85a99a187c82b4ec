//! Group commit (issue 24): concurrent writes share a transaction and a
//! commit, and that sharing is invisible. A unit that fails inside a batch
//! (a unique violation, which on PostgreSQL aborts the whole transaction
//! unless undone) fails alone; a commit that fails answers every unit of
//! its batch with an error; what callers were told matches the log exactly,
//! with no seq skipped.

use std::collections::BTreeMap;

use recall::events::{Envelope, Event, Meta, Stamp};
use recall::store::{Store, StoreError};
use uuid::Uuid;

use crate::fixtures::{appends_seen_by_a_poller, StoreFixture, NOW};
use crate::helpers::Kind;

/// Concurrent callers per round: enough that batches form.
const CALLERS: usize = 48;

fn stamp() -> Stamp {
    Stamp::new(&Meta::system(), NOW)
}

/// Every event in the log, by seq, checking the seqs run 1..=head.
async fn whole_log(store: &Store) -> BTreeMap<i64, Envelope> {
    let mut log = BTreeMap::new();
    let mut after = 0;
    loop {
        // Opened, as the audit reads it: personal fields included.
        let filter = recall::store::EventFilter {
            after,
            limit: 1000,
            ..Default::default()
        };
        let page = store.events(&filter).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in page {
            log.insert(e.seq, e);
        }
    }
    let head = store.head().await.unwrap();
    let seqs: Vec<i64> = log.keys().copied().collect();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "seqs run 1..=head");
    log
}

/// The units per batch so far must show that batches formed.
fn assert_grouped(store: &Store) {
    let b = store.write_batches();
    assert!(
        b.units > b.batches,
        "concurrent writes shared no transaction: {b:?}"
    );
}

/// Half the callers register the same username (one wins; on PostgreSQL
/// each loser's unique violation aborts the transaction unless its unit is
/// rolled back to its savepoint), half append events: every append and the
/// one registration commit, the losers get `Conflict`, and the log holds
/// exactly what was acknowledged.
async fn a_failing_unit_does_not_fail_its_neighbours(kind: Kind) {
    let fx = StoreFixture::new(kind).await;
    let store = &fx.store;
    let mut acknowledged = Vec::new();
    for round in 0..3 {
        let name = format!("taken-{round}-{}", Uuid::new_v4().simple());
        let mut calls = Vec::new();
        for i in 0..CALLERS {
            let (store, name) = (store.clone(), name.clone());
            calls.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    store
                        .register(Uuid::now_v7(), &name, "$argon2id$fake", &[], &stamp())
                        .await
                } else {
                    let event = Event::LoggedOut {
                        user_id: Uuid::now_v7(),
                        session_id: Uuid::now_v7(),
                    };
                    let mut done = store.append_raw(vec![event], &stamp()).await?;
                    done.pop().ok_or(StoreError::NotFound)
                }
            }));
        }
        let (mut registered, mut conflicts) = (0, 0);
        for (i, call) in calls.into_iter().enumerate() {
            match call.await.unwrap() {
                Ok(env) => {
                    registered += usize::from(i % 2 == 0);
                    acknowledged.push(env);
                }
                Err(StoreError::Conflict(_)) if i % 2 == 0 => conflicts += 1,
                Err(e) => panic!("caller {i} of round {round} failed: {e}"),
            }
        }
        assert_eq!(registered, 1, "round {round}: one registration wins");
        assert_eq!(conflicts, CALLERS / 2 - 1, "round {round}");
    }
    assert_grouped(store);
    let log = whole_log(store).await;
    assert_eq!(log.len(), acknowledged.len(), "only acknowledged events");
    for env in &acknowledged {
        let logged = &log[&env.seq];
        assert_eq!(
            logged.event, env.event,
            "seq {} is what was answered",
            env.seq
        );
    }
}

crate::both_stores!(a_failing_unit_does_not_fail_its_neighbours);

/// A batch whose COMMIT fails (a deferred constraint trigger refuses one
/// poisoned event at commit time) answers every unit in it with an error,
/// never a success: whatever a caller was told "ok" is in the log, and
/// whatever it was told failed is not, across many rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failed_commit_fails_the_whole_batch() {
    let fx = StoreFixture::new(Kind::Postgres).await;
    let store = &fx.store;
    let poison = Uuid::now_v7();
    let url = fx.b.db.as_ref().unwrap().url.clone();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.user_id = '{poison}' THEN RAISE EXCEPTION 'poisoned event'; END IF;
               RETURN NULL;
             END $$;
             CREATE CONSTRAINT TRIGGER refuse_poison AFTER INSERT ON events
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_poison();"
        ))
        .await
        .unwrap();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let mut calls = Vec::new();
        for i in 0..CALLERS {
            let store = store.clone();
            let user_id = if i == CALLERS / 2 {
                poison
            } else {
                Uuid::now_v7()
            };
            let session_id = Uuid::now_v7();
            let event = Event::LoggedOut {
                user_id,
                session_id,
            };
            calls.push(tokio::spawn(async move {
                (session_id, store.append_raw(vec![event], &stamp()).await)
            }));
        }
        for call in calls {
            match call.await.unwrap() {
                (id, Ok(_)) => ok.push(id),
                (id, Err(_)) => failed.push(id),
            }
        }
    }
    assert_grouped(store);
    assert!(
        failed.len() > 5,
        "the poisoned commits failed their neighbours too: {} failed",
        failed.len()
    );
    let logged: Vec<Option<Uuid>> = whole_log(store)
        .await
        .into_values()
        .map(|e| e.event.session_id())
        .collect();
    for id in &ok {
        assert!(
            logged.contains(&Some(*id)),
            "acknowledged {id} is in the log"
        );
    }
    for id in &failed {
        assert!(
            !logged.contains(&Some(*id)),
            "refused {id} is not in the log"
        );
    }
    assert_eq!(logged.len(), ok.len());
}

/// G6 across instances: three stores on one database, each with its own
/// pool and batcher (three instances' worth), 16 writers spread over them
/// appending 500 events each, and a reader polling "after last seen" on
/// another: it sees every seq exactly once, in order, and the batches of
/// different instances never interleave their seqs out of commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_instances_appending_never_skip() {
    const WRITERS: usize = 16;
    const EACH: usize = 500;
    let fx = StoreFixture::new(Kind::Postgres).await;
    let url = fx.b.db.as_ref().unwrap().url.clone();
    let open = || {
        Store::open(
            Some(&url),
            std::path::Path::new("/nonexistent"),
            &recall::keys::MasterKey::generate(),
        )
        .unwrap()
    };
    let instances = [open(), open(), open()];
    let seen = appends_seen_by_a_poller(&instances, open(), WRITERS, EACH).await;
    let expected: Vec<i64> = (1..=(WRITERS * EACH) as i64).collect();
    assert_eq!(seen.len(), expected.len(), "no event skipped or repeated");
    assert_eq!(seen, expected);
    for store in &instances {
        assert_grouped(store);
    }
}
