//! Emergency controls (issue 4): admin auth, fleet-wide revocation and
//! locks, brute-force lockout, signing-key rotation and retirement, keys at
//! rest, the audit log and its live stream.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use futures_util::StreamExt;
use recall::events::Meta;
use recall::store::LockoutPolicy;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_stores;
use crate::helpers::{eventually, username, Backend, Kind, Res, TestApp, ADMIN_TOKEN, PASSWORD};

both_stores!(
    admin_auth_and_user_lookup,
    lock_expires_with_nobody_acting,
    brute_force_locks_known_and_unknown_usernames_alike_and_doubles,
    brute_force_lock_length_is_capped,
    scheduled_key_is_retired_once_its_tokens_cannot_be_valid,
    private_keys_are_encrypted_at_rest,
    audit_log_filters_and_cursor,
    sse_stream_delivers_new_events_live,
);

/// How long a fleet has to apply a revocation in these tests.
const FLEET: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------- helpers

/// The `kid` in an access token's header.
pub fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// Events of the audit log (admin token), after a query string.
pub async fn events(app: &TestApp, query: &str) -> Vec<Value> {
    let res = app
        .get(
            &format!("/v1/admin/events?limit=1000&{query}"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(res.status, 200, "events?{query}: {}", res.body);
    res.body["events"].as_array().unwrap().clone()
}

/// The `at` of an audit event, in ms.
fn at_ms(event: &Value) -> i64 {
    rfc3339_ms(event["at"].as_str().unwrap())
}

fn rfc3339_ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_millis()
}

/// `kid -> status` from `GET /v1/admin/keys`.
async fn key_statuses(app: &TestApp) -> Vec<(String, String)> {
    let res = app.get("/v1/admin/keys", Some(ADMIN_TOKEN)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["alg"], "EdDSA");
            rfc3339_ms(k["created_at"].as_str().unwrap());
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn status_of<'a>(keys: &'a [(String, String)], kid: &str) -> Option<&'a str> {
    keys.iter().find(|(k, _)| k == kid).map(|(_, s)| s.as_str())
}

/// The kids JWKS publishes.
async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let res = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(res.status, 200);
    res.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["kty"], "OKP");
            assert_eq!(k["crv"], "Ed25519");
            assert_eq!(k["use"], "sig");
            assert_eq!(k["alg"], "EdDSA");
            k["kid"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn login_res(app: &TestApp, name: &str, password: &str) -> Res {
    app.post(
        "/v1/auth/login",
        None,
        json!({ "username": name, "password": password }),
    )
    .await
}

async fn refresh_res(app: &TestApp, refresh: &str) -> Res {
    app.post(
        "/v1/auth/refresh",
        None,
        json!({ "refresh_token": refresh }),
    )
    .await
}

/// Asserts every app answers `GET /v1/me` with this token with `status`
/// and `error` within the fleet bound.
async fn answers_everywhere(apps: &[&TestApp], token: &str, status: u16, error: &str) {
    for (i, app) in apps.iter().enumerate() {
        let took = eventually(FLEET, || async move {
            let res = app.get("/v1/me", Some(token)).await;
            res.status == status && (error.is_empty() || res.error() == error)
        })
        .await;
        let last = app.get("/v1/me", Some(token)).await;
        assert!(
            took.is_some(),
            "instance {i}: expected {status} {error} within {FLEET:?}, got {} {}",
            last.status,
            last.body
        );
    }
}

fn assert_error(res: &Res, status: u16, error: &str) {
    assert_eq!(res.status, status, "{}", res.body);
    assert_eq!(res.error(), error, "{}", res.body);
    assert!(
        res.body["error_description"].is_string(),
        "error_description: {}",
        res.body
    );
}

/// Registers a user with the admin role on this instance's core.
async fn register_admin(app: &TestApp, name: &str) -> String {
    let (id, _) = app
        .recall()
        .register(
            name,
            PASSWORD.to_owned(),
            &["admin".into()],
            &Meta::system(),
        )
        .await
        .unwrap();
    id.to_string()
}

// ------------------------------------------------------------ admin auth

async fn admin_auth_and_user_lookup(kind: Kind) {
    let b = Backend::new(kind).await;
    let app = b.spawn().await;
    let name = username("ursula");
    let user_id = app.register(&name).await;
    let user = app.login(&name).await;
    let victim_name = username("victor");
    let victim_id = app.register(&victim_name).await;
    let victim = app.login(&victim_name).await;
    let keys_before = key_statuses(&app).await;

    let lookup = format!("/v1/admin/users?username={name}");
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, lookup.clone(), None),
        (
            Method::POST,
            format!("/v1/admin/users/{victim_id}/revoke-sessions"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/admin/users/{victim_id}/lock"),
            Some(json!({ "duration_secs": 60 })),
        ),
        (
            Method::POST,
            format!("/v1/admin/users/{victim_id}/unlock"),
            Some(json!({})),
        ),
        (
            Method::DELETE,
            format!("/v1/admin/sessions/{}", victim.session_id),
            None,
        ),
        (
            Method::POST,
            "/v1/admin/keys/rotate".into(),
            Some(json!({ "compromised": true })),
        ),
        (Method::GET, "/v1/admin/keys".into(), None),
        (Method::GET, "/v1/admin/events".into(), None),
        (Method::GET, "/v1/admin/events/stream".into(), None),
    ];
    let almost = format!("{ADMIN_TOKEN}x");
    let prefix = &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1];
    for (method, path, body) in &routes {
        // No bearer, garbage, near misses of the admin token: 401.
        for bearer in [None, Some("garbage"), Some(almost.as_str()), Some(prefix)] {
            let res = app.call(method.clone(), path, bearer, body.clone()).await;
            assert_error(&res, 401, "invalid_token");
            assert_eq!(
                res.headers["www-authenticate"].to_str().unwrap(),
                r#"Bearer error="invalid_token""#,
                "{method} {path}"
            );
        }
        // A normal user: 403 forbidden.
        let res = app
            .call(method.clone(), path, Some(&user.access), body.clone())
            .await;
        assert_error(&res, 403, "forbidden");
    }
    // None of the refused calls did anything.
    assert_eq!(app.me_status(&victim.access).await, 200);
    assert_eq!(key_statuses(&app).await, keys_before);
    assert!(events(&app, &format!("user_id={victim_id}"))
        .await
        .iter()
        .all(|e| e["type"] == "user_registered" || e["type"] == "login_succeeded"));

    // The bootstrap token works; the lookup has the documented shape.
    let res = app.get(&lookup, Some(ADMIN_TOKEN)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["user_id"], user_id.as_str());
    assert_eq!(res.body["username"], name.as_str());
    assert_eq!(res.body["roles"], json!([]));
    assert_eq!(res.body["locked_until"], Value::Null);
    let created = rfc3339_ms(res.body["created_at"].as_str().unwrap());
    assert!((created - recall::sync::now_ms()).abs() < 60_000);
    let mut keys: Vec<_> = res.body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["created_at", "locked_until", "roles", "user_id", "username"]
    );
    // Usernames compare lowercased.
    let upper = app
        .get(
            &format!("/v1/admin/users?username={}", name.to_uppercase()),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(upper.status, 200);
    assert_eq!(upper.body["user_id"], user_id.as_str());
    // Unknown users and ids: 404.
    let unknown = app
        .get(
            &format!("/v1/admin/users?username={}", username("nobody")),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_error(&unknown, 404, "not_found");
    let stranger = uuid::Uuid::now_v7();
    for path in [
        format!("/v1/admin/users/{stranger}/revoke-sessions"),
        format!("/v1/admin/users/{stranger}/lock"),
        format!("/v1/admin/users/{stranger}/unlock"),
        "/v1/admin/users/not-a-uuid/lock".into(),
    ] {
        let res = app.post(&path, Some(ADMIN_TOKEN), json!({})).await;
        assert_error(&res, 404, "not_found");
    }
    for path in [
        format!("/v1/admin/sessions/{stranger}"),
        "/v1/admin/sessions/not-a-uuid".into(),
    ] {
        let res = app
            .call(Method::DELETE, &path, Some(ADMIN_TOKEN), None)
            .await;
        assert_error(&res, 404, "not_found");
    }
    let missing = app.get("/v1/admin/users", Some(ADMIN_TOKEN)).await;
    assert_error(&missing, 400, "invalid_request");

    // A user with the admin role is an admin too.
    let boss_name = username("boss");
    let boss_id = register_admin(&app, &boss_name).await;
    let boss = app.login(&boss_name).await;
    let res = app
        .get(
            &format!("/v1/admin/users?username={boss_name}"),
            Some(&boss.access),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["user_id"], boss_id.as_str());
    assert_eq!(res.body["roles"], json!(["admin"]));
    assert_eq!(
        app.get("/v1/admin/keys", Some(&boss.access)).await.status,
        200
    );
    let res = app
        .post(
            &format!("/v1/admin/users/{victim_id}/revoke-sessions"),
            Some(&boss.access),
            json!({ "reason": "phished" }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["revoked_sessions"], 1);
    assert_eq!(app.me_status(&victim.access).await, 401);
    let seq = res.body["seq"].as_i64().unwrap();
    let logged = events(&app, "type=user_sessions_revoked").await;
    let event = logged.iter().find(|e| e["seq"] == seq).unwrap();
    assert_eq!(event["actor"], format!("admin:{boss_id}"));
    assert_eq!(event["user_id"], victim_id.as_str());
    assert_eq!(event["data"]["reason"], "phished");
    assert_eq!(event["data"]["cause"], "admin");
    // The bootstrap token's actions are recorded as such.
    let res = app
        .post(
            &format!("/v1/admin/users/{user_id}/revoke-sessions"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(res.status, 200);
    let seq = res.body["seq"].as_i64().unwrap();
    let logged = events(&app, &format!("user_id={user_id}")).await;
    let event = logged.iter().find(|e| e["seq"] == seq).unwrap();
    assert_eq!(event["actor"], "admin-token");
    // An admin whose sessions are revoked is no admin any more.
    let res = app
        .post(
            &format!("/v1/admin/users/{boss_id}/revoke-sessions"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(res.status, 200);
    let res = app.get("/v1/admin/keys", Some(&boss.access)).await;
    assert_error(&res, 401, "invalid_token");
    app.stop().await;
}

// ------------------------------------------------------ fleet: revocation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_admin_revoke_sessions_and_delete_session() {
    let b = Backend::new(Kind::Postgres).await;
    let fleet = b.spawn_fleet(3).await;
    let (a, bb, c) = (&fleet[0], &fleet[1], &fleet[2]);
    let all = [a, bb, c];
    let name = username("mallory");
    let user_id = a.register(&name).await;
    let on_b = bb.login(&name).await;
    let on_c = c.login(&name).await;
    for s in [&on_b, &on_c] {
        answers_everywhere(&all, &s.access, 200, "").await;
    }

    // Revoke every session through A.
    let res = a
        .post(
            &format!("/v1/admin/users/{user_id}/revoke-sessions"),
            Some(ADMIN_TOKEN),
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
            assert_error(&refresh_res(app, &s.refresh).await, 401, "invalid_grant");
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
        .call(
            Method::DELETE,
            &format!("/v1/admin/sessions/{}", fresh.session_id),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.body);
    assert_eq!(a.me_status(&fresh.access).await, 401);
    answers_everywhere(&all, &fresh.access, 401, "invalid_token").await;
    assert_error(&refresh_res(bb, &fresh.refresh).await, 401, "invalid_grant");
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
        .call(
            Method::DELETE,
            &format!("/v1/admin/sessions/{}", fresh.session_id),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(again.status, 204);
    for app in fleet {
        app.stop().await;
    }
}

// ------------------------------------------------------------ fleet: locks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_lock_and_unlock() {
    let b = Backend::new(Kind::Postgres).await;
    let fleet = b.spawn_fleet(3).await;
    let (a, bb, c) = (&fleet[0], &fleet[1], &fleet[2]);
    let all = [a, bb, c];
    let name = username("lena");
    let user_id = a.register(&name).await;
    let s1 = bb.login(&name).await;
    let s2 = c.login(&name).await;
    answers_everywhere(&all, &s1.access, 200, "").await;
    answers_everywhere(&all, &s2.access, 200, "").await;

    let before = recall::sync::now_ms();
    let res = a
        .post(
            &format!("/v1/admin/users/{user_id}/lock"),
            Some(ADMIN_TOKEN),
            json!({ "duration_secs": 600, "reason": "stolen laptop" }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let until = rfc3339_ms(res.body["locked_until"].as_str().unwrap());
    assert!(
        until >= before + 600_000 && until <= recall::sync::now_ms() + 600_000,
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
        assert_error(
            &login_res(app, &name, PASSWORD).await,
            403,
            "account_locked",
        );
    }
    let found = bb
        .get(
            &format!("/v1/admin/users?username={name}"),
            Some(ADMIN_TOKEN),
        )
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
    let res = a
        .post(
            &format!("/v1/admin/users/{user_id}/unlock"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let unlock_seq = res.body["seq"].as_i64().unwrap();
    assert!(unlock_seq > lock_seq);
    let fresh = bb.login(&name).await;
    answers_everywhere(&all, &fresh.access, 200, "").await;
    for s in [&s1, &s2] {
        answers_everywhere(&all, &s.access, 401, "invalid_token").await;
        assert_error(&refresh_res(bb, &s.refresh).await, 401, "invalid_grant");
    }
    let found = c
        .get(
            &format!("/v1/admin/users?username={name}"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(found.body["locked_until"], Value::Null);
    let logged = events(a, &format!("user_id={user_id}&type=user_unlocked")).await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["seq"], unlock_seq);
    // An unlock of an unlocked user is harmless.
    let res = a
        .post(
            &format!("/v1/admin/users/{user_id}/unlock"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(a.me_status(&fresh.access).await, 200);
    // Bad durations are refused and lock nothing.
    for bad in [
        json!({ "duration_secs": 0 }),
        json!({ "duration_secs": -5 }),
    ] {
        let res = a
            .post(
                &format!("/v1/admin/users/{user_id}/lock"),
                Some(ADMIN_TOKEN),
                bad,
            )
            .await;
        assert_error(&res, 400, "invalid_request");
    }
    assert_eq!(bb.me_status(&fresh.access).await, 200);
    for app in fleet {
        app.stop().await;
    }
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
        .post(
            &format!("/v1/admin/users/{user_id}/lock"),
            Some(ADMIN_TOKEN),
            json!({ "duration_secs": 600 }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let seq = res.body["seq"].as_i64().unwrap();
    for app in &fleet {
        let r = eventually(FLEET, || async move {
            app.recall().sync.state().last_seq() >= seq
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
    for app in fleet {
        app.stop().await;
    }
}

/// API.md: while locked, refresh answers 403 account_locked (on every
/// instance), for the refresh tokens the user held when locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_locked_users_refresh_answers_account_locked() {
    let b = Backend::new(Kind::Postgres).await;
    let (fleet, s) = locked_fleet(&b).await;
    for app in &fleet {
        assert_error(&refresh_res(app, &s.refresh).await, 403, "account_locked");
    }
    for app in fleet {
        app.stop().await;
    }
}

async fn lock_expires_with_nobody_acting(kind: Kind) {
    let b = Backend::new(kind).await;
    let app = b.spawn().await;
    let name = username("otto");
    let user_id = app.register(&name).await;
    let s = app.login(&name).await;
    let res = app
        .post(
            &format!("/v1/admin/users/{user_id}/lock"),
            Some(ADMIN_TOKEN),
            json!({ "duration_secs": 2 }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let until = rfc3339_ms(res.body["locked_until"].as_str().unwrap());
    assert_error(
        &login_res(&app, &name, PASSWORD).await,
        403,
        "account_locked",
    );
    assert_ne!(app.me_status(&s.access).await, 200);
    // Nobody acts; once the lock has ended, login works again.
    let wait = until - recall::sync::now_ms();
    assert!(wait > 0, "the 2 s lock ended before we could look");
    tokio::time::sleep(Duration::from_millis(wait as u64 + 50)).await;
    let res = login_res(&app, &name, PASSWORD).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let fresh = res.body["access_token"].as_str().unwrap();
    assert_eq!(app.me_status(fresh).await, 200);
    // The lock ended, but the sessions it revoked stay revoked.
    assert_eq!(app.me_status(&s.access).await, 401);
    let found = app
        .get(
            &format!("/v1/admin/users?username={name}"),
            Some(ADMIN_TOKEN),
        )
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
        let k = login_res(app, known, "wrong password!").await;
        let g = login_res(app, ghost, "wrong password!").await;
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
    let base = 2000;
    settings.lockout = LockoutPolicy {
        max_failures: 10,
        base_ms: base,
        max_ms: 10_000,
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
    assert_locked(&login_res(&app, &known, PASSWORD).await, k_until);
    assert_locked(&login_res(&app, &ghost, PASSWORD).await, g_until);
    assert_locked(&login_res(&app, &known, "wrong password!").await, k_until);
    assert_locked(
        &login_res(&app, &known.to_uppercase(), PASSWORD).await,
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
        (end - recall::sync::now_ms()).max(0) as u64 + 50,
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
        (at_1_5 - recall::sync::now_ms()).max(0) as u64,
    ))
    .await;
    assert_locked(&login_res(&app, &known, PASSWORD).await, k_until2);
    assert_locked(&login_res(&app, &ghost, PASSWORD).await, g_until2);
    // ... and open after 2 x base: the right password logs in.
    tokio::time::sleep(Duration::from_millis(
        (k_until2.max(g_until2) - recall::sync::now_ms()).max(0) as u64 + 50,
    ))
    .await;
    let ok = login_res(&app, &known, PASSWORD).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_error(
        &login_res(&app, &ghost, PASSWORD).await,
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
        base_ms: 1000,
        max_ms: 1500,
    };
    let app = b.spawn_with(settings, None).await;
    let ghost = username("capped");
    for round in 1..=3 {
        for _ in 0..3 {
            assert_error(
                &login_res(&app, &ghost, "wrong password!").await,
                401,
                "invalid_credentials",
            );
        }
        let (at, until) = last_lock(&app, &ghost).await;
        let want = if round == 1 { 1000 } else { 1500 };
        assert_eq!(until - at, want, "round {round}");
        assert_locked(&login_res(&app, &ghost, PASSWORD).await, until);
        tokio::time::sleep(Duration::from_millis(
            (until - recall::sync::now_ms()).max(0) as u64 + 50,
        ))
        .await;
    }
    app.stop().await;
}

// ----------------------------------------------------------- key rotation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_compromised_key_rotation() {
    let b = Backend::new(Kind::Postgres).await;
    let fleet = b.spawn_fleet(3).await;
    let (a, bb, c) = (&fleet[0], &fleet[1], &fleet[2]);
    let all = [a, bb, c];
    let name = username("kira");
    a.register(&name).await;
    let s = a.login(&name).await;
    let s2 = c.login(&name).await;
    let old_kid = kid_of(&s.access);
    answers_everywhere(&all, &s.access, 200, "").await;
    assert_eq!(
        key_statuses(a).await,
        vec![(old_kid.clone(), "active".into())]
    );

    let res = a
        .post(
            "/v1/admin/keys/rotate",
            Some(ADMIN_TOKEN),
            json!({ "compromised": true, "reason": "key leaked in a backup" }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let new_kid = res.body["kid"].as_str().unwrap().to_owned();
    assert_eq!(res.body["previous_kid"], old_kid.as_str());
    assert_ne!(new_kid, old_kid);
    let seq = res.body["seq"].as_i64().unwrap();
    // Old-key tokens die on every instance (A before it answered).
    assert_eq!(a.me_status(&s.access).await, 401);
    for t in [&s.access, &s2.access] {
        answers_everywhere(&all, t, 401, "invalid_token").await;
    }
    // Sessions survive: refresh (on B and C) gives a new-key token that
    // works on all three.
    for (app, sess) in [(bb, &s), (c, &s2)] {
        let r = refresh_res(app, &sess.refresh).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let access = r.body["access_token"].as_str().unwrap();
        assert_eq!(kid_of(access), new_kid);
        assert_eq!(r.body["session_id"], sess.session_id.as_str());
        answers_everywhere(&all, access, 200, "").await;
    }
    // New logins sign with the new key too.
    let fresh = bb.login(&name).await;
    assert_eq!(kid_of(&fresh.access), new_kid);
    // JWKS drops the old key everywhere; the key list says why.
    for app in all {
        let want = std::slice::from_ref(&new_kid);
        let took = eventually(FLEET, || async move { jwks_kids(app).await == want }).await;
        assert!(took.is_some(), "jwks: {:?}", jwks_kids(app).await);
    }
    let keys = key_statuses(c).await;
    assert_eq!(status_of(&keys, &old_kid), Some("revoked"));
    assert_eq!(status_of(&keys, &new_kid), Some("active"));
    assert_eq!(keys.len(), 2);
    let logged = events(bb, "type=key_rotated").await;
    let e = logged.iter().find(|e| e["seq"] == seq).unwrap();
    assert_eq!(e["data"]["kid"], new_kid.as_str());
    assert_eq!(e["data"]["previous_kid"], old_kid.as_str());
    assert_eq!(e["data"]["compromised"], true);
    assert_eq!(e["data"]["reason"], "key leaked in a backup");
    assert_eq!(e["actor"], "admin-token");
    let bad = a
        .post("/v1/admin/keys/rotate", Some(ADMIN_TOKEN), json!({}))
        .await;
    assert_error(&bad, 400, "invalid_request");
    for app in fleet {
        app.stop().await;
    }
}

/// A new-key token issued right after a rotation is accepted by every
/// instance once the rotation notice has reached it (G3): the notice path
/// loads the new key material, not only the next poll of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_accepts_new_key_tokens_as_soon_as_the_rotation_arrives() {
    use std::sync::atomic::Ordering;
    let b = Backend::new(Kind::Postgres).await;
    let mut fleet = Vec::new();
    for _ in 0..3 {
        let mut s = b.settings();
        // Polling so slow that only the Redis notice can carry the rotation.
        s.poll_interval_ms = 60_000;
        s.max_staleness_ms = 120_000;
        fleet.push(b.spawn_with(s, Some(crate::helpers::redis_url())).await);
    }
    let (a, bb, c) = (&fleet[0], &fleet[1], &fleet[2]);
    let name = username("quinn");
    a.register(&name).await;
    let mut refresh = a.login(&name).await.refresh;
    let reads = |app: &TestApp| app.recall().metrics.catchup_reads.load(Ordering::Relaxed);
    let reads_before = [reads(bb), reads(c)];
    for compromised in [false, true] {
        let res = a
            .post(
                "/v1/admin/keys/rotate",
                Some(ADMIN_TOKEN),
                json!({ "compromised": compromised }),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.body);
        let new_kid = res.body["kid"].as_str().unwrap().to_owned();
        // A client refreshes on A at once and goes to B and C with the token.
        let r = refresh_res(a, &refresh).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let access = r.body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(kid_of(&access), new_kid);
        refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
        for app in [bb, c] {
            let (token, kid) = (access.as_str(), new_kid.as_str());
            let took = eventually(Duration::from_secs(1), || async move {
                app.me_status(token).await == StatusCode::OK
                    && jwks_kids(app).await.iter().any(|k| k == kid)
            })
            .await;
            let last = app.get("/v1/me", Some(token)).await;
            assert!(
                took.is_some(),
                "compromised={compromised}: new-key token refused: {}",
                last.body
            );
        }
    }
    // No log read carried it (no gap, no poll): the notices did.
    assert_eq!([reads(bb), reads(c)], reads_before);
    for app in fleet {
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_scheduled_key_rotation() {
    let b = Backend::new(Kind::Postgres).await;
    let fleet = b.spawn_fleet(3).await;
    let (a, bb, c) = (&fleet[0], &fleet[1], &fleet[2]);
    let all = [a, bb, c];
    let name = username("sched");
    a.register(&name).await;
    let s = bb.login(&name).await;
    let old_kid = kid_of(&s.access);
    answers_everywhere(&all, &s.access, 200, "").await;

    let res = a
        .post(
            "/v1/admin/keys/rotate",
            Some(ADMIN_TOKEN),
            json!({ "compromised": false }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let new_kid = res.body["kid"].as_str().unwrap().to_owned();
    assert_eq!(res.body["previous_kid"], old_kid.as_str());
    let seq = res.body["seq"].as_i64().unwrap();
    // Every instance learns the rotation: JWKS lists both keys.
    let mut want = vec![old_kid.clone(), new_kid.clone()];
    want.sort();
    for app in all {
        let want = &want;
        let took = eventually(FLEET, || async move {
            let mut kids = jwks_kids(app).await;
            kids.sort();
            kids == *want
        })
        .await;
        assert!(took.is_some(), "jwks: {:?}", jwks_kids(app).await);
    }
    // Old tokens keep working everywhere.
    for app in all {
        assert_eq!(app.me_status(&s.access).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for app in all {
        assert_eq!(app.me_status(&s.access).await, 200);
    }
    let keys = key_statuses(c).await;
    assert_eq!(status_of(&keys, &old_kid), Some("verifying"));
    assert_eq!(status_of(&keys, &new_kid), Some("active"));
    // New tokens use the new key and work everywhere.
    let fresh = c.login(&name).await;
    assert_eq!(kid_of(&fresh.access), new_kid);
    answers_everywhere(&all, &fresh.access, 200, "").await;
    let r = refresh_res(a, &s.refresh).await;
    assert_eq!(r.status, 200);
    assert_eq!(kid_of(r.body["access_token"].as_str().unwrap()), new_kid);
    let logged = events(a, "type=key_rotated").await;
    let e = logged.iter().find(|e| e["seq"] == seq).unwrap();
    assert_eq!(e["data"]["compromised"], false);
    let retire = e["data"]["previous_retire_after"].as_i64().unwrap();
    // Retired only after the old key's last token can have expired.
    let rotated = at_ms(e);
    assert!(
        retire >= rotated + 300_000,
        "retire_after {retire} too early"
    );
    for app in fleet {
        app.stop().await;
    }
}

async fn scheduled_key_is_retired_once_its_tokens_cannot_be_valid(kind: Kind) {
    let b = Backend::new(kind).await;
    let mut settings = b.settings();
    settings.access_ttl_secs = 1;
    settings.poll_interval_ms = 200;
    let retention_ms = settings.retention_ms();
    let app = b.spawn_with(settings, None).await;
    let name = username("rita");
    app.register(&name).await;
    let s = app.login(&name).await;
    let old_kid = kid_of(&s.access);
    // Taken before the request: the rotation's own time lies inside it.
    let rotated_at = recall::sync::now_ms();
    let res = app
        .post(
            "/v1/admin/keys/rotate",
            Some(ADMIN_TOKEN),
            json!({ "compromised": false }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let new_kid = res.body["kid"].as_str().unwrap().to_owned();
    assert_eq!(
        status_of(&key_statuses(&app).await, &old_kid),
        Some("verifying")
    );
    let app = &app;
    let old = old_kid.as_str();
    let took = eventually(
        Duration::from_millis(retention_ms as u64 + 8000),
        || async move { status_of(&key_statuses(app).await, old) == Some("retired") },
    )
    .await;
    assert!(took.is_some(), "{:?}", key_statuses(app).await);
    let retired: Vec<_> = events(app, "type=key_retired")
        .await
        .into_iter()
        .filter(|e| e["data"]["kid"] == old)
        .collect();
    assert_eq!(retired.len(), 1, "exactly one key_retired: {retired:?}");
    let rotation = events(app, "type=key_rotated")
        .await
        .into_iter()
        .find(|e| e["data"]["kid"] == new_kid.as_str())
        .unwrap();
    // Not before every token of the old key had expired.
    assert!(
        at_ms(&retired[0]) - at_ms(&rotation) >= retention_ms,
        "retired after {} ms, retention {retention_ms} ms",
        at_ms(&retired[0]) - at_ms(&rotation)
    );
    assert!(recall::sync::now_ms() - rotated_at >= retention_ms);
    assert_eq!(jwks_kids(app).await, vec![new_kid.clone()]);
    let keys = key_statuses(app).await;
    assert_eq!(status_of(&keys, &new_kid), Some("active"));
    // The new key still signs and verifies.
    let fresh = app.login(&name).await;
    assert_eq!(kid_of(&fresh.access), new_kid);
    assert_eq!(app.me_status(&fresh.access).await, 200);
}

// ------------------------------------------------------------ keys at rest

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every stored form of `secret` we look for.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    vec![
        secret.to_vec(),
        hex(secret).into_bytes(),
        hex(secret).to_uppercase().into_bytes(),
        STANDARD.encode(secret).into_bytes(),
        STANDARD_NO_PAD.encode(secret).into_bytes(),
        URL_SAFE.encode(secret).into_bytes(),
        URL_SAFE_NO_PAD.encode(secret).into_bytes(),
    ]
}

/// Every row of signing_keys and events, each column as bytes.
async fn stored_rows(b: &Backend) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<Vec<u8>>>) {
    match &b.db {
        Some(db) => {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let keys = client
                .query(
                    "SELECT kid, alg, public_key, private_key_enc, status, created_at::text, \
                     retire_after::text, row_to_json(k)::text FROM signing_keys k",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            if i == 2 || i == 3 {
                                r.get::<_, Vec<u8>>(i)
                            } else {
                                r.get::<_, Option<String>>(i)
                                    .unwrap_or_default()
                                    .into_bytes()
                            }
                        })
                        .collect()
                })
                .collect();
            let events = client
                .query("SELECT data, row_to_json(e)::text FROM events e", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    vec![
                        r.get::<_, String>(0).into_bytes(),
                        r.get::<_, String>(1).into_bytes(),
                    ]
                })
                .collect();
            (keys, events)
        }
        None => {
            let conn = rusqlite::Connection::open_with_flags(
                b.dir.0.join("recall.db"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let rows = |sql: &str| -> Vec<Vec<Vec<u8>>> {
                let mut stmt = conn.prepare(sql).unwrap();
                let n = stmt.column_count();
                stmt.query_map([], |r| {
                    Ok((0..n)
                        .map(|i| match r.get::<_, rusqlite::types::Value>(i).unwrap() {
                            rusqlite::types::Value::Blob(b) => b,
                            rusqlite::types::Value::Text(t) => t.into_bytes(),
                            rusqlite::types::Value::Integer(n) => n.to_string().into_bytes(),
                            rusqlite::types::Value::Real(f) => f.to_string().into_bytes(),
                            rusqlite::types::Value::Null => Vec::new(),
                        })
                        .collect())
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            };
            (
                rows("SELECT * FROM signing_keys"),
                rows("SELECT * FROM events"),
            )
        }
    }
}

async fn private_keys_are_encrypted_at_rest(kind: Kind) {
    let b = Backend::new(kind).await;
    let app = b.spawn().await;
    let name = username("rest");
    app.register(&name).await;
    let s = app.login(&name).await;
    // Three keys: one revoked, one verifying, one active.
    for compromised in [true, false] {
        let res = app
            .post(
                "/v1/admin/keys/rotate",
                Some(ADMIN_TOKEN),
                json!({ "compromised": compromised }),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.body);
    }
    let r = refresh_res(&app, &s.refresh).await;
    assert_eq!(r.status, 200);
    let store = b.store().await;
    let records = store.keys().await.unwrap();
    assert_eq!(records.len(), 3);
    let mut secrets = Vec::new();
    for k in &records {
        let der = b.master.open(&k.kid, &k.private_key_enc).unwrap();
        // PKCS#8 (v2 from ed25519-dalek: the public key comes last, so
        // decode it rather than take the last 32 bytes).
        let signing = ed25519_dalek::SigningKey::from_pkcs8_der(&der).unwrap();
        let seed = signing.to_bytes();
        assert!(contains(&der, &seed));
        // The seed really is the private key of this row's public key.
        assert_eq!(signing.verifying_key().to_bytes().to_vec(), k.public_key);
        // Sealed under the master key: another master key cannot open it.
        assert!(recall::keys::MasterKey::generate()
            .open(&k.kid, &k.private_key_enc)
            .is_err());
        secrets.push((k.kid.clone(), seed.to_vec(), der));
    }
    let (key_rows, event_rows) = stored_rows(&b).await;
    assert_eq!(key_rows.len(), 3);
    assert!(event_rows.len() >= 5);
    for (kid, seed, der) in &secrets {
        for form in forms(seed).iter().chain(forms(der).iter()) {
            for (what, rows) in [("signing_keys", &key_rows), ("events", &event_rows)] {
                for row in rows.iter() {
                    for col in row {
                        assert!(
                            !contains(col, form),
                            "{what} holds the private key of {kid} ({})",
                            String::from_utf8_lossy(form)
                        );
                    }
                }
            }
        }
    }
    app.stop().await;
}

// ------------------------------------------------------------------ audit

async fn audit_log_filters_and_cursor(kind: Kind) {
    let b = Backend::new(kind).await;
    let app = b.spawn().await;
    let n1 = username("ann");
    let u1 = app.register(&n1).await;
    let n2 = username("ben");
    let u2 = app.register(&n2).await;
    let s1 = app.login(&n1).await;
    let _s2 = app.login(&n2).await;
    let out = app
        .post("/v1/auth/logout", Some(&s1.access), json!({}))
        .await;
    assert_eq!(out.status, 204);
    let _ = login_res(&app, &n2, "wrong password!").await;

    // Everything, oldest first, with the documented shape.
    let all = events(&app, "").await;
    assert!(all.len() >= 7, "{all:?}");
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for e in &all {
        let mut keys: Vec<_> = e.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "actor",
                "at",
                "data",
                "ip",
                "seq",
                "session_id",
                "type",
                "user_id"
            ]
        );
        rfc3339_ms(e["at"].as_str().unwrap());
        assert!(e["data"].is_object());
    }
    let logout = all
        .iter()
        .find(|e| e["type"] == "logged_out")
        .expect("logout event");
    assert_eq!(logout["user_id"], u1.as_str());
    assert_eq!(logout["session_id"], s1.session_id.as_str());
    assert_eq!(logout["actor"], format!("user:{u1}"));
    assert_eq!(logout["ip"], "127.0.0.1");

    // Paging with the cursor visits the same events.
    let mut after = 0;
    let mut paged = Vec::new();
    loop {
        let res = app
            .get(
                &format!("/v1/admin/events?after={after}&limit=2"),
                Some(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(res.status, 200);
        let page = res.body["events"].as_array().unwrap().clone();
        assert!(page.len() <= 2);
        let next = res.body["next_after"].as_i64().unwrap();
        if page.is_empty() {
            assert_eq!(next, after, "an empty page keeps the cursor");
            break;
        }
        assert_eq!(next, page.last().unwrap()["seq"].as_i64().unwrap());
        paged.extend(page.iter().map(|e| e["seq"].as_i64().unwrap()));
        after = next;
    }
    assert_eq!(paged, seqs);
    let res = app
        .get(
            &format!("/v1/admin/events?after={}&limit=3", seqs[1]),
            Some(ADMIN_TOKEN),
        )
        .await;
    let page: Vec<i64> = res.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(page, seqs[2..5]);

    // Filters: by user, by type, both.
    let mine = events(&app, &format!("user_id={u1}")).await;
    let types: Vec<_> = mine.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["user_registered", "login_succeeded", "logged_out"]);
    assert!(mine.iter().all(|e| e["user_id"] == u1.as_str()));
    let logins = events(&app, "type=login_succeeded").await;
    assert_eq!(logins.len(), 2);
    assert!(logins.iter().all(|e| e["type"] == "login_succeeded"));
    let both = events(&app, &format!("user_id={u2}&type=login_succeeded")).await;
    assert_eq!(both.len(), 1);
    assert_eq!(both[0]["user_id"], u2.as_str());
    assert!(events(&app, "type=no_such_type").await.is_empty());
    assert!(events(&app, &format!("user_id={}", uuid::Uuid::now_v7()))
        .await
        .is_empty());
    // The default limit is 100, the most 1000.
    let res = app.get("/v1/admin/events", Some(ADMIN_TOKEN)).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["events"].as_array().unwrap().len(), seqs.len());
    let ok = app
        .get("/v1/admin/events?limit=1000", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(ok.status, 200);
    for bad in [
        "limit=1001",
        "limit=0",
        "limit=-1",
        "limit=abc",
        "user_id=not-a-uuid",
        "after=x",
        "unknown=1",
    ] {
        let res = app
            .get(&format!("/v1/admin/events?{bad}"), Some(ADMIN_TOKEN))
            .await;
        assert_error(&res, 400, "invalid_request");
    }
    app.stop().await;
}

async fn sse_stream_delivers_new_events_live(kind: Kind) {
    let b = Backend::new(kind).await;
    let app = b.spawn().await;
    let name = username("sse");
    app.register(&name).await;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("{}/v1/admin/events/stream", app.base);
    // Admins only.
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let user = app.login(&name).await;
    let res = client
        .get(&url)
        .bearer_auth(&user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let res = tokio::time::timeout(
        Duration::from_secs(5),
        client.get(&url).bearer_auth(ADMIN_TOKEN).send(),
    )
    .await
    .expect("stream headers in time")
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ctype = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    let mut stream = res.bytes_stream();

    // Events after the stream opened.
    let s = app.login(&name).await;
    let out = app
        .post("/v1/auth/logout", Some(&s.access), json!({}))
        .await;
    assert_eq!(out.status, 204);

    let mut buf = String::new();
    let mut seen: Vec<(String, Value)> = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let mut event = None;
                let mut data = None;
                let mut id = None;
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str::<Value>(v).unwrap());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse::<i64>().unwrap());
                    }
                }
                if let (Some(event), Some(data)) = (event, data) {
                    assert_eq!(data["type"], event.as_str());
                    assert_eq!(Some(data["seq"].as_i64().unwrap()), id);
                    let done = event == "logged_out" && data["session_id"] == s.session_id.as_str();
                    seen.push((event, data));
                    if done {
                        return true;
                    }
                }
            }
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "no logged_out frame for {}; saw {seen:?}",
        s.session_id
    );
    // The login came first, in order, and nothing from before the stream opened.
    let login = seen
        .iter()
        .position(|(t, d)| t == "login_succeeded" && d["session_id"] == s.session_id.as_str())
        .expect("login frame");
    assert_eq!(login, seen.len() - 2, "{seen:?}");
    assert!(seen
        .iter()
        .all(|(t, d)| !(t == "login_succeeded" && d["session_id"] == user.session_id.as_str())));
    drop(stream);
    app.stop().await;
}
