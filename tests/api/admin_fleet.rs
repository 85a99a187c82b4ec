//! Emergency controls across a fleet: admin revocation, locks and their expiry.

use recall::clock::Timestamp;
use std::time::Duration;

use serde_json::{json, Value};

use crate::both_stores;
use crate::fixtures::{fleet_with_user, start, stop_all, trio};
use crate::helpers::*;

both_stores!(lock_expires_with_nobody_acting,);

// ------------------------------------------------------ fleet: revocation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_admin_revoke_sessions_and_delete_session() {
    let (_b, fleet, name, user_id) = fleet_with_user("mallory").await;
    let all = trio(&fleet);
    let [a, bb, c] = all;
    let on_b = bb.login(&name).await;
    let on_c = c.login(&name).await;
    for s in [&on_b, &on_c] {
        answers_everywhere(&all, &s.access, 200, "").await;
    }

    // Revoke every session through A.
    let res = a
        .admin_user_action(
            &user_id,
            "revoke-sessions",
            json!({ "reason": "token seen on pastebin" }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["revoked_sessions"], 2);
    let seq = res.body["seq"].as_i64().expect("seq");
    // G2 on A at once; G3 on B and C.
    assert_eq!(a.me_status(&on_b.access).await, 401);
    for s in [&on_b, &on_c] {
        answers_everywhere(&all, &s.access, 401, "invalid_token").await;
        for app in all {
            assert_error(&app.refresh(&s.refresh).await, 401, "invalid_grant");
        }
    }
    // G1: the event is in the log, as read through another instance.
    let logged = events(c, &format!("user_id={user_id}&type=user_sessions_revoked")).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    let e = &logged[0];
    assert_eq!(e["seq"], seq);
    assert_eq!(e["actor"], "admin-token");
    assert_eq!(e["data"]["cause"], "admin");
    assert_eq!(e["data"]["reason"], "token seen on pastebin");
    let mut ids: Vec<_> = e["data"]["session_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut want = vec![on_b.session_id.clone(), on_c.session_id.clone()];
    want.sort();
    assert_eq!(ids, want);
    // The user can log in again; the new session works everywhere.
    let fresh = c.login(&name).await;
    answers_everywhere(&all, &fresh.access, 200, "").await;

    // DELETE one session through A: that one dies everywhere, the other lives.
    let other = bb.login(&name).await;
    let res = a
        .delete(
            &format!("/v1/admin/sessions/{}", fresh.session_id),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.body);
    assert_eq!(a.me_status(&fresh.access).await, 401);
    answers_everywhere(&all, &fresh.access, 401, "invalid_token").await;
    assert_error(&bb.refresh(&fresh.refresh).await, 401, "invalid_grant");
    for app in all {
        assert_eq!(app.me_status(&other.access).await, 200);
    }
    let logged = events(bb, &format!("user_id={user_id}&type=session_revoked")).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["session_id"], fresh.session_id.as_str());
    assert_eq!(logged[0]["actor"], "admin-token");
    assert_eq!(logged[0]["data"]["cause"], "admin");
    // Again: idempotent.
    let again = a
        .delete(
            &format!("/v1/admin/sessions/{}", fresh.session_id),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(again.status, 204);
    stop_all(fleet).await;
}

// ------------------------------------------------------------ fleet: locks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_lock_and_unlock() {
    let (_b, fleet, name, user_id) = fleet_with_user("lena").await;
    let all = trio(&fleet);
    let [a, bb, c] = all;
    let s1 = bb.login(&name).await;
    let s2 = c.login(&name).await;
    answers_everywhere(&all, &s1.access, 200, "").await;
    answers_everywhere(&all, &s2.access, 200, "").await;

    let before = Timestamp::now().ms();
    let res = a
        .admin_user_action(
            &user_id,
            "lock",
            json!({ "duration_secs": 600, "reason": "stolen laptop" }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let until = rfc3339_ms(res.body["locked_until"].as_str().unwrap());
    assert!(
        until >= before + 600_000 && until <= Timestamp::now().ms() + 600_000,
        "{}",
        res.body
    );
    let lock_seq = res.body["seq"].as_i64().unwrap();
    // Tokens are rejected on every instance (A at once).
    assert_ne!(a.me_status(&s1.access).await, 200);
    for s in [&s1, &s2] {
        for (i, app) in all.iter().enumerate() {
            let took = eventually(FLEET, || async move {
                let res = app.get("/v1/me", Some(&s.access)).await;
                res.status == 403 && res.error() == "account_locked"
            })
            .await;
            assert!(took.is_some(), "instance {i} still accepts a locked user");
        }
    }
    // Login answers 403 account_locked everywhere, even with the right password.
    for app in all {
        assert_error(&app.try_login(&name, PASSWORD).await, 403, "account_locked");
    }
    let found = bb
        .admin_get(&format!("/v1/admin/users?username={name}"))
        .await;
    assert_eq!(
        rfc3339_ms(found.body["locked_until"].as_str().unwrap()),
        until
    );
    // The lock is an event, with the sessions it ended.
    let logged = events(c, &format!("user_id={user_id}&type=user_locked")).await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["seq"], lock_seq);
    assert_eq!(logged[0]["actor"], "admin-token");
    assert_eq!(logged[0]["data"]["until"], until);
    assert_eq!(logged[0]["data"]["reason"], "stolen laptop");
    let ended = logged[0]["data"]["revoked_session_ids"].to_string();
    assert!(ended.contains(&s1.session_id) && ended.contains(&s2.session_id));

    // Unlock through A: login works on B again; old sessions stay dead.
    let res = a.admin_user_action(&user_id, "unlock", json!({})).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let unlock_seq = res.body["seq"].as_i64().unwrap();
    assert!(unlock_seq > lock_seq);
    let fresh = bb.login(&name).await;
    answers_everywhere(&all, &fresh.access, 200, "").await;
    for s in [&s1, &s2] {
        answers_everywhere(&all, &s.access, 401, "invalid_token").await;
        assert_error(&bb.refresh(&s.refresh).await, 401, "invalid_grant");
    }
    let found = c
        .admin_get(&format!("/v1/admin/users?username={name}"))
        .await;
    assert_eq!(found.body["locked_until"], Value::Null);
    let logged = events(a, &format!("user_id={user_id}&type=user_unlocked")).await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["seq"], unlock_seq);
    // An unlock of an unlocked user is harmless.
    let res = a.admin_user_action(&user_id, "unlock", json!({})).await;
    assert_eq!(res.status, 200);
    assert_eq!(a.me_status(&fresh.access).await, 200);
    // Bad durations are refused and lock nothing.
    for bad in [
        json!({ "duration_secs": 0 }),
        json!({ "duration_secs": -5 }),
    ] {
        let res = a.admin_user_action(&user_id, "lock", bad).await;
        assert_error(&res, 400, "invalid_request");
    }
    assert_eq!(bb.me_status(&fresh.access).await, 200);
    stop_all(fleet).await;
}

/// A user locked through A, with a live session logged in on B: the lock
/// has reached every instance.
async fn locked_fleet(b: &Backend) -> (Vec<TestApp>, crate::helpers::Session) {
    let fleet = b.spawn_fleet(3).await;
    let name = username("lotte");
    let user_id = fleet[0].register(&name).await;
    let s = fleet[1].login(&name).await;
    let all: Vec<&TestApp> = fleet.iter().collect();
    answers_everywhere(&all, &s.access, 200, "").await;
    let res = fleet[0]
        .admin_user_action(&user_id, "lock", json!({ "duration_secs": 600 }))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let seq = res.body["seq"].as_i64().unwrap();
    for app in &fleet {
        let r = eventually(FLEET, || async move {
            app.recall().sync().state().last_seq() >= seq
        })
        .await;
        assert!(r.is_some(), "the lock never arrived");
    }
    (fleet, s)
}

/// API.md: "403 account_locked: the account is locked (login, refresh and
/// every token)". A locked user's access tokens answer 403 account_locked
/// on every instance while the lock lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_locked_users_tokens_answer_account_locked() {
    let b = Backend::new(Kind::Postgres).await;
    let (fleet, s) = locked_fleet(&b).await;
    let all: Vec<&TestApp> = fleet.iter().collect();
    answers_everywhere(&all, &s.access, 403, "account_locked").await;
    stop_all(fleet).await;
}

/// API.md: while locked, refresh answers 403 account_locked (on every
/// instance), for the refresh tokens the user held when locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_locked_users_refresh_answers_account_locked() {
    let b = Backend::new(Kind::Postgres).await;
    let (fleet, s) = locked_fleet(&b).await;
    for app in &fleet {
        assert_error(&app.refresh(&s.refresh).await, 403, "account_locked");
    }
    stop_all(fleet).await;
}

async fn lock_expires_with_nobody_acting(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (name, s) = app.signup("otto").await;
    let user_id = s.user_id.clone();
    let res = app
        .admin_user_action(&user_id, "lock", json!({ "duration_secs": 2 }))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let until = rfc3339_ms(res.body["locked_until"].as_str().unwrap());
    assert_error(&app.try_login(&name, PASSWORD).await, 403, "account_locked");
    assert_ne!(app.me_status(&s.access).await, 200);
    // Nobody acts; once the lock has ended, login works again.
    let wait = until - Timestamp::now().ms();
    assert!(wait > 0, "the 2 s lock ended before we could look");
    tokio::time::sleep(Duration::from_millis(wait as u64 + 50)).await;
    let res = app.try_login(&name, PASSWORD).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let fresh = res.body["access_token"].as_str().unwrap();
    assert_eq!(app.me_status(fresh).await, 200);
    // The lock ended, but the sessions it revoked stay revoked.
    assert_eq!(app.me_status(&s.access).await, 401);
    let found = app
        .admin_get(&format!("/v1/admin/users?username={name}"))
        .await;
    assert_eq!(found.body["locked_until"], Value::Null);
    // No unlock event: nobody acted.
    assert!(
        events(&app, &format!("user_id={user_id}&type=user_unlocked"))
            .await
            .is_empty()
    );
    app.stop().await;
}
