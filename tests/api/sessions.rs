//! Users and sessions over HTTP, on both stores.

use std::sync::Arc;

use serde_json::json;

use crate::both_stores;
use crate::fixtures::{start, start_tuned};
use crate::helpers::{username, Backend, Kind, Session, PASSWORD};

both_stores!(
    logout_others_keeps_only_the_caller,
    walkthrough_register_login_me_logout,
    logout_all_and_password_change,
    session_list_and_delete,
    refresh_rotation_and_theft_detection,
    concurrent_http_refreshes_one_wins,
    wrong_password_and_unknown_user_look_the_same,
    forward_auth_and_oauth_revoke,
);

async fn walkthrough_register_login_me_logout(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (name, s) = app.signup("alice").await;
    let user_id = s.user_id.clone();
    let me = app.get("/v1/me", Some(&s.access)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["user_id"], user_id.as_str());
    assert_eq!(me.body["username"], name.as_str());
    assert_eq!(me.body["session_id"], s.session_id.as_str());
    assert_eq!(me.body["client_type"], "web");
    let out = app.logout(&s.access).await;
    assert_eq!(out.status, 204);
    let after = app.get("/v1/me", Some(&s.access)).await;
    assert_eq!(after.status, 401);
    assert_eq!(after.error(), "invalid_token");
    assert_eq!(
        after.headers["www-authenticate"].to_str().unwrap(),
        r#"Bearer error="invalid_token""#
    );
    // The refresh token died with the session.
    let r = app.refresh(&s.refresh).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "invalid_grant");
    // The token claims carry ids only (G7).
    let payload = s.access.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert!(!claims.to_string().contains(&name));
    app.stop().await;
}

async fn logout_all_and_password_change(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (name, [a, c, d]) = app.signup_many("bob").await;
    // Password change: every other session dies, this one lives.
    let bad = app
        .change_password(&a.access, "nope-nope", "another pass")
        .await;
    assert_eq!(bad.status, 401);
    app.assert_me(&c.access, 200, "a failed change revokes nothing")
        .await;
    let short = app.change_password(&a.access, PASSWORD, "short").await;
    assert_eq!(short.status, 400);
    let ok = app
        .change_password(&a.access, PASSWORD, "another pass")
        .await;
    assert_eq!(ok.status, 204, "{}", ok.body);
    assert_eq!(app.me_status(&a.access).await, 200);
    assert_eq!(app.me_status(&c.access).await, 401);
    assert_eq!(app.me_status(&d.access).await, 401);
    let old = app.try_login(&name, PASSWORD).await;
    assert_eq!(old.status, 401);
    let e = app.login_with(&name, "another pass").await;
    // Logout-all: every session, including the caller's.
    let all = app
        .post("/v1/auth/logout-all", Some(&e.access), json!({}))
        .await;
    assert_eq!(all.status, 204);
    assert_eq!(app.me_status(&a.access).await, 401);
    assert_eq!(app.me_status(&e.access).await, 401);
    let r = app.refresh(&a.refresh).await;
    assert_eq!(r.error(), "invalid_grant");
    app.stop().await;
}

async fn logout_others_keeps_only_the_caller(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (_, [me, a, c]) = app.signup_many("others").await;
    let res = app
        .post("/v1/auth/logout-others", Some(&me.access), json!({}))
        .await;
    assert_eq!(res.status, 204, "{}", res.body);
    assert_eq!(app.me_status(&me.access).await, 200);
    assert_eq!(app.me_status(&a.access).await, 401);
    assert_eq!(app.me_status(&c.access).await, 401);
    let refresh = app.refresh(&a.refresh).await;
    assert_eq!(refresh.status, 401);
    let list = app.get("/v1/sessions", Some(&me.access)).await;
    assert_eq!(list.body["sessions"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn session_list_and_delete(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (n1, n2) = (username("carol"), username("mallory"));
    app.register(&n1).await;
    app.register(&n2).await;
    let web = app.login(&n1).await;
    let mobile = app
        .post("/v1/auth/login", None, json!({ "username": n1, "password": PASSWORD, "client_type": "mobile", "device_id": "pixel" }))
        .await;
    assert_eq!(mobile.status, 200);
    let mobile = Session::from_body(&mobile.body, &web.user_id);
    let other = app.login(&n2).await;
    let list = app.get("/v1/sessions", Some(&web.access)).await;
    assert_eq!(list.status, 200);
    let sessions = list.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["session_id"], web.session_id.as_str());
    assert!(sessions.iter().any(|s| s["client_type"] == "mobile"));
    assert!(sessions[0]["created_at"].as_str().unwrap().ends_with('Z'));
    // Every field of API.md; a refresh moves last_used_at, and a session
    // ends at the latest RECALL_SESSION_MAX_SECS after login.
    let ms = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    for s in sessions {
        for field in [
            "session_id",
            "client_type",
            "ip",
            "user_agent",
            "created_at",
            "last_used_at",
            "expires_at",
            "current",
        ] {
            assert!(s.get(field).is_some(), "{field} missing: {s}");
        }
        assert!(ms(&s["last_used_at"]) >= ms(&s["created_at"]));
        let lifetime = ms(&s["expires_at"]) - ms(&s["created_at"]);
        assert!(lifetime > 0 && lifetime <= 1_209_600_000, "{lifetime}");
    }
    let before = ms(&current[0]["last_used_at"]);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let refreshed = app.refresh(&web.refresh).await;
    assert_eq!(refreshed.status, 200);
    let web = Session::from_body(&refreshed.body, &web.user_id);
    let list = app.get("/v1/sessions", Some(&web.access)).await;
    let mine = list.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()
        .clone();
    assert!(ms(&mine["last_used_at"]) > before, "{mine}");
    // Admins see the same list for any user.
    let admin_list = app
        .admin_get(&format!("/v1/admin/users/{}/sessions", web.user_id))
        .await;
    assert_eq!(admin_list.status, 200, "{}", admin_list.body);
    assert_eq!(admin_list.body["sessions"].as_array().unwrap().len(), 2);
    let nobody = app
        .admin_get(&format!(
            "/v1/admin/users/{}/sessions",
            uuid::Uuid::now_v7()
        ))
        .await;
    assert_eq!(nobody.status, 404);
    assert_eq!(
        app.get(
            &format!("/v1/admin/users/{}/sessions", web.user_id),
            Some(&web.access)
        )
        .await
        .status,
        403
    );
    // Another user's session and an unknown one: 404, nothing revoked.
    let theirs = app.delete_session(&web.access, &other.session_id).await;
    assert_eq!(theirs.status, 404);
    assert_eq!(app.me_status(&other.access).await, 200);
    let unknown = app
        .delete_session(&web.access, &uuid::Uuid::now_v7().to_string())
        .await;
    assert_eq!(unknown.status, 404);
    let garbage = app.delete_session(&web.access, "not-a-uuid").await;
    assert_eq!(garbage.status, 404);
    let del = app.delete_session(&web.access, &mobile.session_id).await;
    assert_eq!(del.status, 204);
    assert_eq!(app.me_status(&mobile.access).await, 401);
    assert_eq!(app.me_status(&web.access).await, 200);
    let bad_type = app
        .post(
            "/v1/auth/login",
            None,
            json!({ "username": n1, "password": PASSWORD, "client_type": "fridge" }),
        )
        .await;
    assert_eq!(bad_type.status, 400);
    app.stop().await;
}

async fn refresh_rotation_and_theft_detection(kind: Kind) {
    let (_b, app) = start_tuned(kind, |s| {
        s.refresh_grace_secs = 0;
    })
    .await;
    let (_, s) = app.signup("dave").await;
    let r1 = app.refresh(&s.refresh).await;
    assert_eq!(r1.status, 200, "{}", r1.body);
    let s1 = Session::from_body(&r1.body, &s.user_id);
    assert_eq!(s1.session_id, s.session_id, "same session");
    assert_ne!(s1.refresh, s.refresh, "rotated");
    assert_eq!(r1.body["token_type"], "Bearer");
    assert_eq!(app.me_status(&s1.access).await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // The spent token comes back (a thief): the whole session dies.
    let stolen = app.refresh(&s.refresh).await;
    assert_eq!(stolen.status, 401);
    assert_eq!(stolen.error(), "invalid_grant");
    assert_eq!(app.me_status(&s1.access).await, 401);
    let legit = app.refresh(&s1.refresh).await;
    assert_eq!(legit.error(), "invalid_grant");
    let junk = app.refresh("nope").await;
    assert_eq!(junk.error(), "invalid_grant");
    app.stop().await;
}

async fn concurrent_http_refreshes_one_wins(kind: Kind) {
    let b = Backend::new(kind).await;
    let app = Arc::new(b.spawn().await);
    let (_, s) = app.signup("erin").await;
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let app = app.clone();
        let token = s.refresh.clone();
        tasks.push(tokio::spawn(async move { app.refresh(&token).await }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let res = t.await.unwrap();
        match res.status.as_u16() {
            200 => winners.push(Session::from_body(&res.body, &s.user_id)),
            401 => assert_eq!(res.error(), "invalid_grant"),
            other => panic!("unexpected {other}: {}", res.body),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent refresh wins");
    // Inside the grace window the loser did not kill the session.
    assert_eq!(app.me_status(&winners[0].access).await, 200);
    let next = app.refresh(&winners[0].refresh).await;
    assert_eq!(next.status, 200);
}

async fn wrong_password_and_unknown_user_look_the_same(kind: Kind) {
    let (_b, app) = start(kind).await;
    let name = username("frank");
    app.register(&name).await;
    let wrong = app.try_login(&name, "wrong password").await;
    let unknown = app.try_login(&username("ghost"), "wrong password").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.error(), "invalid_credentials");
    // Case-insensitive usernames.
    app.login(&name.to_uppercase()).await;
    let taken = app.try_register(&name.to_uppercase(), PASSWORD).await;
    assert_eq!(taken.status, 409);
    assert_eq!(taken.error(), "username_taken");
    for bad in ["ab", "has space", "émile", &"x".repeat(65)] {
        let res = app.try_register(bad, PASSWORD).await;
        assert_eq!(res.status, 400, "{bad}");
        assert!(res.body["error_description"]
            .as_str()
            .unwrap()
            .contains("username"));
    }
    let long = app.try_register(&username("pw"), &"x".repeat(1025)).await;
    assert_eq!(long.status, 400);
    app.stop().await;
}

async fn forward_auth_and_oauth_revoke(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (name, s) = app.signup("gina").await;
    let v = app.get("/v1/auth/verify", Some(&s.access)).await;
    assert_eq!(v.status, 204);
    assert_eq!(v.headers["x-user-id"].to_str().unwrap(), s.user_id);
    assert_eq!(v.headers["x-session-id"].to_str().unwrap(), s.session_id);
    assert_eq!(app.get("/v1/auth/verify", None).await.status, 401);
    // RFC 7009 with a form body: a refresh token ends its session.
    let form = format!("token={}&token_type_hint=refresh_token", s.refresh);
    let r = app.post_form("/oauth/revoke", form, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        app.get("/v1/auth/verify", Some(&s.access)).await.status,
        401
    );
    // Unknown tokens: still 200.
    let r = app
        .post_form("/oauth/revoke", b"token=whatever".to_vec(), None)
        .await;
    assert_eq!(r.status, 200);
    // An access token (JSON body) ends its session too.
    let s2 = app.login(&name).await;
    let r = app
        .post("/oauth/revoke", None, json!({ "token": s2.access }))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.me_status(&s2.access).await, 401);
    // Introspection is for admins.
    let s3 = app.login(&name).await;
    let form = format!("token={}", s3.access);
    let denied = app
        .post_form("/oauth/introspect", form.clone(), Some(&s3.access))
        .await;
    assert_eq!(denied.status, 403);
    let yes = app
        .post_form("/oauth/introspect", form, Some(crate::helpers::ADMIN_TOKEN))
        .await;
    assert_eq!(yes.body["active"], true);
    assert_eq!(yes.body["sid"], s3.session_id.as_str());
    let no = app
        .post_form(
            "/oauth/introspect",
            format!("token={}", s2.access),
            Some(crate::helpers::ADMIN_TOKEN),
        )
        .await;
    assert_eq!(no.body, json!({ "active": false }));
    app.stop().await;
}

/// A saturated password pool answers 503 `unavailable` at once instead of
/// queueing without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_password_pool_answers_503() {
    let b = Backend::new(Kind::Sqlite).await;
    let mut settings = b.settings();
    settings.hash_workers = 1;
    settings.hash_queue = 1;
    let app = Arc::new(b.spawn_with(settings, None).await);
    // Twelve usernames, so the brute-force budget of one (10 guesses in
    // flight) plays no part: only the pool decides. Unknown names cost one
    // hash like known ones and answer 401 when checked.
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (app, name) = (app.clone(), username("busy"));
        tasks.push(tokio::spawn(
            async move { app.try_login(&name, PASSWORD).await },
        ));
    }
    let (mut ok, mut busy) = (0, 0);
    for t in tasks {
        let res = t.await.unwrap();
        match res.status.as_u16() {
            401 => ok += 1,
            503 => {
                assert_eq!(res.error(), "unavailable");
                assert!(res.headers.contains_key("retry-after"));
                busy += 1;
            }
            other => panic!("unexpected {other}: {}", res.body),
        }
    }
    assert!(ok >= 1, "the pool still served: {ok}");
    assert!(busy >= 1, "excess logins were refused: {busy}");
}

/// Behind a proxy on loopback, the forwarded client address is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_client_ip_from_a_local_proxy_is_recorded() {
    let (_b, app) = start(Kind::Sqlite).await;
    let name = username("proxied");
    app.register(&name).await;
    let res = app
        .http
        .post(format!("{}/v1/auth/login", app.base))
        .header("x-forwarded-for", "203.0.113.7")
        .header("user-agent", "recall-test/1")
        .json(&json!({ "username": name, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    let list = app.get("/v1/sessions", body["access_token"].as_str()).await;
    let s = &list.body["sessions"][0];
    assert_eq!(s["ip"], "203.0.113.7");
    assert_eq!(s["user_agent"], "recall-test/1");
    app.stop().await;
}
