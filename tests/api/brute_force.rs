//! Brute-force lockout: known and unknown usernames alike, doubling, capped.

use recall::clock::Timestamp;
use std::time::Duration;

use recall::domain::LockoutPolicy;
use serde_json::{json, Value};

use crate::both_stores;
use crate::helpers::*;

both_stores!(
    brute_force_locks_known_and_unknown_usernames_alike_and_doubles,
    brute_force_lock_length_is_capped,
);

// ------------------------------------------------------------ brute force

/// The `login_failed` events of one username.
async fn failures_of(app: &TestApp, name: &str) -> Vec<Value> {
    events(app, "type=login_failed")
        .await
        .into_iter()
        .filter(|e| e["data"]["username"] == name)
        .collect()
}

/// `(at, locked_until)` of the newest lock of `name`.
async fn last_lock(app: &TestApp, name: &str) -> (i64, i64) {
    let failures = failures_of(app, name).await;
    let e = failures
        .iter()
        .rev()
        .find(|e| e["data"]["locked_until"].is_i64())
        .unwrap_or_else(|| panic!("no lock for {name}: {failures:?}"));
    (at_ms(e), e["data"]["locked_until"].as_i64().unwrap())
}

/// A locked answer with the shape API.md gives it, for a lock ending `until`.
fn assert_locked(res: &Res, until: i64) {
    assert_eq!(res.status, 403, "{}", res.body);
    assert_eq!(
        res.body,
        json!({
            "error": "account_locked",
            "error_description": format!("the account is locked until {}", recall::http::rfc3339(until)),
        })
    );
}

/// Ten wrong passwords for both names, interleaved; every answer the same.
async fn fail_ten_times(app: &TestApp, known: &str, ghost: &str) {
    for i in 1..=10 {
        let k = app.try_login(known, "wrong password!").await;
        let g = app.try_login(ghost, "wrong password!").await;
        assert_eq!(k.status, 401, "attempt {i}: {}", k.body);
        assert_eq!(k.error(), "invalid_credentials");
        assert_eq!(k.body, g.body, "attempt {i}");
        assert_eq!(k.status, g.status);
        assert_eq!(
            k.headers.get("www-authenticate"),
            g.headers.get("www-authenticate")
        );
    }
}

async fn brute_force_locks_known_and_unknown_usernames_alike_and_doubles(kind: Kind) {
    let b = Backend::new(kind).await;
    let mut settings = b.settings();
    let base: i64 = 2000;
    settings.lockout = LockoutPolicy {
        max_failures: 10,
        base: std::time::Duration::from_millis(base as u64),
        max: std::time::Duration::from_millis(10_000),
    };
    let app = b.spawn_with(settings, None).await;
    let known = username("kim");
    app.register(&known).await;
    let ghost = username("ghost");

    // Round 1: ten failures lock both names for the base time.
    fail_ten_times(&app, &known, &ghost).await;
    let (k_at, k_until) = last_lock(&app, &known).await;
    let (g_at, g_until) = last_lock(&app, &ghost).await;
    assert_eq!(k_until - k_at, base);
    assert_eq!(g_until - g_at, base);
    // Locked: even the right password is refused, and both look the same.
    assert_locked(&app.try_login(&known, PASSWORD).await, k_until);
    assert_locked(&app.try_login(&ghost, PASSWORD).await, g_until);
    assert_locked(&app.try_login(&known, "wrong password!").await, k_until);
    assert_locked(
        &app.try_login(&known.to_uppercase(), PASSWORD).await,
        k_until,
    );
    // The audit events of the two names have the same shape.
    let kf = failures_of(&app, &known).await;
    let gf = failures_of(&app, &ghost).await;
    assert_eq!(kf.len(), 10, "locked attempts are not counted: {kf:?}");
    assert_eq!(gf.len(), 10);
    for (k, g) in kf.iter().zip(&gf) {
        assert_eq!(k["data"]["failures"], g["data"]["failures"]);
        assert_eq!(
            k["user_id"], g["user_id"],
            "the log must not tell them apart"
        );
        let mut kk: Vec<_> = k["data"].as_object().unwrap().keys().collect();
        let mut gk: Vec<_> = g["data"].as_object().unwrap().keys().collect();
        kk.sort();
        gk.sort();
        assert_eq!(kk, gk);
    }

    // The lock ends by itself: wrong passwords count again from zero.
    let end = k_until.max(g_until);
    tokio::time::sleep(Duration::from_millis(
        (end - Timestamp::now().ms()).max(0) as u64 + 50,
    ))
    .await;

    // Round 2: the repeat lock is twice as long.
    fail_ten_times(&app, &known, &ghost).await;
    let (k_at2, k_until2) = last_lock(&app, &known).await;
    let (g_at2, g_until2) = last_lock(&app, &ghost).await;
    assert!(k_at2 > k_until && g_at2 > g_until);
    assert_eq!(k_until2 - k_at2, 2 * base);
    assert_eq!(g_until2 - g_at2, 2 * base);
    // Measured too: still locked at 1.5 x base ...
    let at_1_5 = k_at2.max(g_at2) + base * 3 / 2;
    tokio::time::sleep(Duration::from_millis(
        (at_1_5 - Timestamp::now().ms()).max(0) as u64,
    ))
    .await;
    assert_locked(&app.try_login(&known, PASSWORD).await, k_until2);
    assert_locked(&app.try_login(&ghost, PASSWORD).await, g_until2);
    // ... and open after 2 x base: the right password logs in.
    tokio::time::sleep(Duration::from_millis(
        (k_until2.max(g_until2) - Timestamp::now().ms()).max(0) as u64 + 50,
    ))
    .await;
    let ok = app.try_login(&known, PASSWORD).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_error(
        &app.try_login(&ghost, PASSWORD).await,
        401,
        "invalid_credentials",
    );
    app.stop().await;
}

async fn brute_force_lock_length_is_capped(kind: Kind) {
    let b = Backend::new(kind).await;
    let mut settings = b.settings();
    settings.lockout = LockoutPolicy {
        max_failures: 3,
        base: std::time::Duration::from_millis(1000),
        max: std::time::Duration::from_millis(1500),
    };
    let app = b.spawn_with(settings, None).await;
    let ghost = username("capped");
    for round in 1..=3 {
        for _ in 0..3 {
            assert_error(
                &app.try_login(&ghost, "wrong password!").await,
                401,
                "invalid_credentials",
            );
        }
        let (at, until) = last_lock(&app, &ghost).await;
        let want = if round == 1 { 1000 } else { 1500 };
        assert_eq!(until - at, want, "round {round}");
        assert_locked(&app.try_login(&ghost, PASSWORD).await, until);
        tokio::time::sleep(Duration::from_millis(
            (until - Timestamp::now().ms()).max(0) as u64 + 50,
        ))
        .await;
    }
    app.stop().await;
}
