//! Emergency controls: who is an admin, and looking users up.

use recall::clock::Timestamp;
use reqwest::Method;
use serde_json::{json, Value};

use crate::both_stores;
use crate::fixtures::start;
use crate::helpers::*;

both_stores!(admin_auth_and_user_lookup,);

// ------------------------------------------------------------ admin auth

async fn admin_auth_and_user_lookup(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (name, user) = app.signup("ursula").await;
    let user_id = user.user_id.clone();
    let (_victim_name, victim) = app.signup("victor").await;
    let victim_id = victim.user_id.clone();
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
    let res = app.admin_get(&lookup).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["user_id"], user_id.as_str());
    assert_eq!(res.body["username"], name.as_str());
    assert_eq!(res.body["roles"], json!([]));
    assert_eq!(res.body["locked_until"], Value::Null);
    let created = rfc3339_ms(res.body["created_at"].as_str().unwrap());
    assert!((created - Timestamp::now().ms()).abs() < 60_000);
    let mut keys: Vec<_> = res.body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["created_at", "locked_until", "roles", "user_id", "username"]
    );
    // Usernames compare lowercased.
    let upper = app
        .admin_get(&format!("/v1/admin/users?username={}", name.to_uppercase()))
        .await;
    assert_eq!(upper.status, 200);
    assert_eq!(upper.body["user_id"], user_id.as_str());
    // Unknown users and ids: 404.
    let unknown = app
        .admin_get(&format!("/v1/admin/users?username={}", username("nobody")))
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
    let missing = app.admin_get("/v1/admin/users").await;
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
        .admin_user_action(&user_id, "revoke-sessions", json!({}))
        .await;
    assert_eq!(res.status, 200);
    let seq = res.body["seq"].as_i64().unwrap();
    let logged = events(&app, &format!("user_id={user_id}")).await;
    let event = logged.iter().find(|e| e["seq"] == seq).unwrap();
    assert_eq!(event["actor"], "admin-token");
    // An admin whose sessions are revoked is no admin any more.
    let res = app
        .admin_user_action(&boss_id, "revoke-sessions", json!({}))
        .await;
    assert_eq!(res.status, 200);
    let res = app.get("/v1/admin/keys", Some(&boss.access)).await;
    assert_error(&res, 401, "invalid_token");
    app.stop().await;
}
