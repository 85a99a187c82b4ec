//! The store contract: every adapter passes the same tests.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use recall::clock::Timestamp;
use recall::domain::{decide_refresh, LockoutPolicy, RefreshLimits, RefreshRefusal, SessionEnd};
use recall::events::{Envelope, Event, Meta, RevokeCause, Stamp};
use recall::keys::generate_signing_key;
use recall::service::guess_rules;
use recall::store::{
    EventFilter, Guess, GuessRules, Login, RefreshRefused, RefreshRules, Refreshed, Store,
    StoreError,
};
use uuid::Uuid;

use crate::both_stores;
use crate::fixtures::{end_rule, new_session, now_plus, StoreFixture, NOW};
use crate::helpers::Kind;

both_stores!(
    guesses_are_reserved_before_hashing,
    register_then_conflict,
    refresh_rotates_once_and_reuse_revokes,
    concurrent_refreshes_have_one_winner,
    revocations_and_locks_update_read_models,
    first_key_race_has_one_winner,
    snapshot_reads_only_the_window,
    brute_force_counter_locks_and_doubles,
);

/// Absolute session lifetime in the store tests (30 days, ms).
const SESSION_MAX: i64 = 2_592_000_000;

/// The limits of a refresh whose successor expires at `expires_at`.
fn terms(expires_at: Timestamp, grace_ms: u64) -> RefreshLimits {
    RefreshLimits {
        refresh_ttl: expires_at.since(NOW),
        grace: Duration::from_millis(grace_ms),
        session_max: Duration::from_millis(SESSION_MAX as u64),
    }
}

/// The brute-force rules under a policy of these numbers.
fn policy(max_failures: i64, base_ms: u64, max_ms: u64) -> GuessRules {
    let (base, max) = (
        Duration::from_millis(base_ms),
        Duration::from_millis(max_ms),
    );
    guess_rules(LockoutPolicy {
        max_failures,
        base,
        max,
    })
}

/// What a refresh came to in the store.
type Outcome = Result<Refreshed, RefreshRefused>;

/// Refreshes the token hashed `[old; 32]` into one hashed `[new; 32]` at
/// `now`, decided by the domain under `limits`.
async fn refresh(
    store: &Store,
    old: u8,
    new: u8,
    limits: RefreshLimits,
    now: Timestamp,
) -> Outcome {
    let rules = RefreshRules {
        decide: Box::new(move |facts| decide_refresh(facts, &limits, now)),
        check: Box::new(|_| None),
    };
    store
        .refresh(
            &[old; 32],
            &[new; 32],
            rules,
            &Stamp::new(&Meta::system(), now),
        )
        .await
        .unwrap()
}

/// Why a refresh was refused (None: it rotated).
fn refusal(outcome: &Outcome) -> Option<RefreshRefusal> {
    outcome.as_ref().err().map(|r| r.refusal)
}

/// The audit log after `after`, at most `limit`, of one user and type if given.
async fn audit(
    store: &Store,
    after: i64,
    limit: i64,
    user_id: Option<Uuid>,
    kind: Option<&str>,
) -> Vec<Envelope> {
    let kind = kind.map(str::to_owned);
    let filter = EventFilter {
        after,
        limit,
        user_id,
        kind,
    };
    store.events(&filter).await.unwrap()
}

/// Whether the session `id` has ended.
async fn is_revoked(store: &Store, id: Uuid) -> bool {
    let session = store.session(id).await.unwrap().unwrap();
    session.revoked_at.is_some()
}

async fn register_then_conflict(kind: Kind) {
    let fx = StoreFixture::new(kind).await;
    let store = &fx.store;
    let id = fx.user("alice").await;
    let again = store
        .register(
            Uuid::now_v7(),
            "alice",
            "h",
            &[],
            &Stamp::new(&Meta::system(), NOW),
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let found = store.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(found.id, id);
    assert_eq!(
        store.user_by_id(id).await.unwrap().unwrap().username,
        "alice"
    );
    // The failed registration appended nothing.
    let events = store.read_after(0, 100).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].seq, 1);
    assert_eq!(store.head().await.unwrap(), 1);
}

async fn refresh_rotates_once_and_reuse_revokes(kind: Kind) {
    let fx = StoreFixture::new(kind).await;
    let store = &fx.store;
    let u = fx.user("bob").await;
    let s = fx.session(u, 1).await;
    let grace = 10_000;
    let first = refresh(store, 1, 2, terms(now_plus(7_200_000), grace), now_plus(1)).await;
    assert!(first.is_ok(), "{first:?}");
    // Spent a moment ago: refused, but the session lives (honest race).
    let racing = refresh(store, 1, 3, terms(NOW, grace), now_plus(2)).await;
    assert_eq!(
        refusal(&racing),
        Some(RefreshRefusal::JustUsed),
        "{racing:?}"
    );
    assert!(!is_revoked(store, s.id).await);
    // Spent long ago: theft. The session dies, and so does the new token.
    let stolen = refresh(store, 1, 4, terms(NOW, grace), now_plus(grace as i64 + 10)).await;
    let Err(RefreshRefused {
        refusal: RefreshRefusal::Reused,
        event: Some(event),
        ..
    }) = stolen
    else {
        panic!("expected reuse, got {stolen:?}");
    };
    assert_eq!(
        event.event,
        Event::RefreshTokenReused {
            user_id: u,
            session_id: s.id
        }
    );
    assert!(is_revoked(store, s.id).await);
    let after = refresh(store, 2, 5, terms(NOW, grace), now_plus(grace as i64 + 20)).await;
    assert_eq!(refusal(&after), Some(RefreshRefusal::Ended), "{after:?}");
    let unknown = refresh(store, 9, 6, terms(NOW, grace), NOW).await;
    assert_eq!(refusal(&unknown), Some(RefreshRefusal::Unknown));
    // Pruning forgets the ended session's tokens: still refused, now unknown.
    assert_eq!(
        store.prune_refresh_tokens(NOW).await.unwrap(),
        0,
        "too recent"
    );
    assert_eq!(
        store
            .prune_refresh_tokens(now_plus(86_400_000))
            .await
            .unwrap(),
        2
    );
    let pruned = refresh(store, 2, 7, terms(NOW, grace), now_plus(86_400_000)).await;
    assert_eq!(refusal(&pruned), Some(RefreshRefusal::Unknown));
}

async fn concurrent_refreshes_have_one_winner(kind: Kind) {
    let fx = StoreFixture::new(kind).await;
    let u = fx.user("carol").await;
    fx.session(u, 7).await;
    let store = Arc::new(fx.store.clone());
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            refresh(&store, 7, 100 + i, terms(now_plus(1), 10_000), now_plus(1)).await
        }));
    }
    let mut rotated = 0;
    for t in tasks {
        let outcome = t.await.unwrap();
        match refusal(&outcome) {
            None => rotated += 1,
            Some(RefreshRefusal::JustUsed) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(rotated, 1, "exactly one concurrent refresh may win");
}

async fn revocations_and_locks_update_read_models(kind: Kind) {
    let fx = StoreFixture::new(kind).await;
    let store = &fx.store;
    let (u, other) = (fx.user("dave").await, fx.user("erin").await);
    let (s1, s2, s3) = (
        fx.session(u, 1).await,
        fx.session(u, 2).await,
        fx.session(u, 3).await,
    );
    assert_eq!(store.live_sessions(u, NOW).await.unwrap().len(), 3);
    // Someone else's session is not found, and nothing is appended.
    let head = store.head().await.unwrap();
    let foreign = store
        .revoke_session(
            s1.id,
            end_rule(s1.id, Some(other), SessionEnd::Logout),
            &Stamp::new(&Meta::system(), NOW),
        )
        .await;
    assert!(matches!(foreign, Err(StoreError::NotFound)));
    assert_eq!(store.head().await.unwrap(), head);
    let out = store
        .revoke_session(
            s1.id,
            end_rule(s1.id, Some(u), SessionEnd::Logout),
            &Stamp::new(&Meta::system(), NOW),
        )
        .await
        .unwrap();
    assert!(out.is_some());
    let twice = store
        .revoke_session(
            s1.id,
            end_rule(s1.id, Some(u), SessionEnd::Logout),
            &Stamp::new(&Meta::system(), NOW),
        )
        .await
        .unwrap();
    assert!(twice.is_none(), "logout is idempotent");
    let pw = store
        .change_password(u, "newhash", Some(s2.id), &Stamp::new(&Meta::system(), NOW))
        .await
        .unwrap();
    assert_eq!(pw.event.revoked_sessions(), vec![s3.id]);
    assert_eq!(
        store.user_by_id(u).await.unwrap().unwrap().password_hash,
        "newhash"
    );
    let all = store
        .revoke_user_sessions(
            u,
            RevokeCause::Admin,
            None,
            &Stamp::new(&Meta::system(), NOW),
        )
        .await
        .unwrap();
    assert_eq!(all.event.revoked_sessions(), vec![s2.id]);
    assert!(store.live_sessions(u, NOW).await.unwrap().is_empty());
    let lock = store
        .lock(
            other,
            now_plus(60_000),
            None,
            &Stamp::new(&Meta::system(), NOW),
        )
        .await
        .unwrap();
    assert!(matches!(lock.event, Event::UserLocked { until, .. } if until == now_plus(60_000)));
    let snap = store.snapshot(now_plus(-1), NOW).await.unwrap();
    assert_eq!(snap.standing.locks, vec![(other, now_plus(60_000))]);
    store
        .unlock(other, &Stamp::new(&Meta::system(), NOW))
        .await
        .unwrap();
    let snap = store.snapshot(now_plus(-1), NOW).await.unwrap();
    assert!(snap.standing.locks.is_empty());
    assert!(matches!(
        store
            .lock(Uuid::now_v7(), NOW, None, &Stamp::new(&Meta::system(), NOW))
            .await,
        Err(StoreError::NotFound)
    ));
    // The audit log filters by user and type, oldest first, with a cursor.
    let mine = audit(store, 0, 100, Some(u), None).await;
    assert!(mine.iter().all(|e| e.event.user_id() == Some(u)));
    assert!(mine.windows(2).all(|w| w[0].seq < w[1].seq));
    let logins = audit(store, 0, 2, None, Some("login_succeeded")).await;
    assert_eq!(logins.len(), 2);
    let rest = audit(store, logins[1].seq, 100, None, Some("login_succeeded")).await;
    assert_eq!(rest.len(), 1);
}

async fn first_key_race_has_one_winner(kind: Kind) {
    let fx = StoreFixture::new(kind).await;
    let store = Arc::new(fx.store.clone());
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        let key = generate_signing_key(&fx.b.master, NOW).unwrap();
        tasks.push(tokio::spawn(async move {
            store
                .ensure_active_key(&key, &Stamp::new(&Meta::system(), NOW))
                .await
                .unwrap()
        }));
    }
    let mut created = 0;
    for t in tasks {
        created += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(created, 1);
    let keys = store.keys().await.unwrap();
    assert_eq!(
        keys.iter()
            .filter(|k| k.status == recall::domain::KeyStatus::Active)
            .count(),
        1
    );
}

async fn snapshot_reads_only_the_window(kind: Kind) {
    let fx = StoreFixture::new(kind).await;
    let store = &fx.store;
    let old: Vec<Event> = (0..300)
        .map(|_| Event::LoggedOut {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
        })
        .collect();
    store
        .append_raw(old, &Stamp::new(&Meta::system(), now_plus(-86_400_000)))
        .await
        .unwrap();
    let recent = Event::LoggedOut {
        user_id: Uuid::now_v7(),
        session_id: Uuid::now_v7(),
    };
    store
        .append_raw(
            vec![recent.clone()],
            &Stamp::new(&Meta::system(), now_plus(-1000)),
        )
        .await
        .unwrap();
    let snap = store.snapshot(now_plus(-330_000), NOW).await.unwrap();
    assert_eq!(snap.standing.head, 301);
    assert_eq!(
        snap.events.len(),
        1,
        "start-up reads the window, not the log"
    );
    assert_eq!(snap.events[0].event, recent);
}

async fn brute_force_counter_locks_and_doubles(kind: Kind) {
    let fx = StoreFixture::new(kind).await;
    let store = &fx.store;
    let policy = policy(3, 1000, 3000);
    let mut locks = Vec::new();
    for round in 0..4 {
        // Each round starts after the previous lock ended.
        let now = now_plus(round * 10_000);
        for i in 1..=3 {
            let reserved = store
                .reserve_guess("nobody", &policy, &Stamp::new(&Meta::system(), now))
                .await
                .unwrap();
            assert!(
                matches!(reserved, Guess::Reserved),
                "round {round} guess {i}"
            );
            let env = store
                .guess_failed("nobody", &policy, &Stamp::new(&Meta::system(), now))
                .await
                .unwrap();
            let Event::LoginFailed {
                locked_until,
                failures,
                ..
            } = env.event
            else {
                panic!("wrong event");
            };
            assert_eq!(failures, i, "round {round}");
            if i == 3 {
                locks.push(locked_until.unwrap().since(now).as_millis());
            } else {
                assert!(locked_until.is_none());
            }
        }
        // Locked: the next guess is refused without counting.
        let refused = store
            .reserve_guess(
                "nobody",
                &policy,
                &Stamp::new(&Meta::system(), now.plus(Duration::from_millis(1))),
            )
            .await
            .unwrap();
        assert!(matches!(refused, Guess::Locked { event: None, .. }));
    }
    assert_eq!(locks, vec![1000, 2000, 3000, 3000], "doubling, capped");
    let t = store.throttle("nobody").await.unwrap();
    assert_eq!(t.lock_count, 4);
    let ids: HashSet<_> = store
        .read_after(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(ids.len(), 12);
}

/// G10: parallel reservations of one username's budget: exactly the budget
/// is reserved, the first one past it locks, every other is refused; a
/// right password then cannot log in through the lock, nor clear it.
async fn guesses_are_reserved_before_hashing(kind: Kind) {
    let fx = StoreFixture::new(kind).await;
    let store = Arc::new(fx.store.clone());
    let policy = policy(10, 60_000, 600_000);
    let user_id = Uuid::now_v7();
    fx.user_with(user_id, "victim", "$argon2id$x").await;
    let mut racers = Vec::new();
    for _ in 0..40 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            store
                .reserve_guess("victim", &policy, &Stamp::new(&Meta::system(), NOW))
                .await
                .unwrap()
        }));
    }
    let (mut reserved, mut locked_here, mut refused) = (0, 0, 0);
    for r in racers {
        match r.await.unwrap() {
            Guess::Reserved => reserved += 1,
            Guess::Locked { event: Some(_), .. } => locked_here += 1,
            Guess::Locked { event: None, .. } => refused += 1,
        }
    }
    assert_eq!((reserved, locked_here, refused), (10, 1, 29));
    let t = store.throttle("victim").await.unwrap();
    assert_eq!(t.locked_until, Some(now_plus(60_000)));
    // The right password, hashed meanwhile: the lock wins, and stays.
    let s = new_session(user_id, 42);
    let login = fx.login_at(&s, now_plus(5)).await;
    assert!(matches!(login, Login::Locked { until } if until == now_plus(60_000)));
    assert_eq!(
        store.throttle("victim").await.unwrap().locked_until,
        Some(now_plus(60_000))
    );
    assert!(store
        .live_sessions(user_id, now_plus(5))
        .await
        .unwrap()
        .is_empty());
    // After the lock: a guess is reserved again, and a success clears counts.
    let later = now_plus(60_001);
    assert!(matches!(
        store
            .reserve_guess("victim", &policy, &Stamp::new(&Meta::system(), later))
            .await
            .unwrap(),
        Guess::Reserved
    ));
    let login = fx.login_at(&s, later).await;
    assert!(matches!(login, Login::Created(_)));
    assert_eq!(store.throttle("victim").await.unwrap().failures, 0);
}
