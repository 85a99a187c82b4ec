//! Bound tokens (issue 21): client policies as events and network binding
//! (rightmost untrusted `X-Forwarded-For` from 127.0.0.1, a trusted proxy
//! in the tests), on both stores and a 3-instance fleet; the helpers the
//! DPoP tests (`bound_dpop`) share.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use recall_verifier::dpop::{ath, ed25519_proof};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::both_stores;
use crate::fixtures::{introspect, pg_fleet, start, stop_all};
use crate::helpers::{
    all_reject, assert_error, events, username, Kind, Res, TestApp, ADMIN_TOKEN, PASSWORD,
};

/// A request with headers of the test's choosing.
pub(crate) async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Option<Value>,
) -> Res {
    let mut req = app.http.request(method, format!("{}{}", app.base, path));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    Res::read(req.send().await.expect("request failed")).await
}

/// GET `path` with these headers.
pub(crate) async fn get_with(app: &TestApp, path: &str, headers: &[(&str, String)]) -> Res {
    send(app, Method::GET, path, headers, None).await
}

/// POST a JSON body to `path` with these headers.
pub(crate) async fn post_with(
    app: &TestApp,
    path: &str,
    headers: &[(&str, String)],
    body: Value,
) -> Res {
    send(app, Method::POST, path, headers, Some(body)).await
}

/// The headers of a DPoP-bound request: the token and a proof.
pub(crate) fn dpop_headers(token: &str, proof: &str) -> [(&'static str, String); 2] {
    [
        ("authorization", format!("DPoP {token}")),
        ("dpop", proof.to_owned()),
    ]
}

/// Asserts every instance rejects `token` within `limit` (`what` says why
/// it should) and the log holds one revocation, for a binding mismatch.
pub(crate) async fn assert_mismatch_revoked(
    apps: &[TestApp],
    token: &str,
    limit: Duration,
    what: &str,
) -> Value {
    let everywhere: Vec<&TestApp> = apps.iter().collect();
    assert!(
        all_reject(&everywhere, token, limit).await.is_some(),
        "{what}"
    );
    let mut revoked = events(&apps[0], "type=session_revoked").await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["data"]["cause"], "binding_mismatch");
    revoked.remove(0)
}

fn xff(ip: &str) -> (&'static str, String) {
    ("x-forwarded-for", ip.to_owned())
}

pub(crate) fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The URI a proof names for `path` on `app` (its RECALL_PUBLIC_URL).
pub(crate) fn htu(app: &TestApp, path: &str) -> String {
    format!(
        "{}{path}",
        app.recall().settings().public_url.trim_end_matches('/')
    )
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(crate) fn proof(seed: &[u8; 32], method: &str, url: &str, token: Option<&str>) -> String {
    let hash = token.map(ath);
    ed25519_proof(
        seed,
        method,
        url,
        now(),
        &Uuid::new_v4().to_string(),
        hash.as_deref(),
        None,
    )
}

pub(crate) async fn set_policy(app: &TestApp, client_type: &str, policy: Value) -> Res {
    app.call(
        Method::PUT,
        &format!("/v1/admin/policies/{client_type}"),
        Some(ADMIN_TOKEN),
        Some(policy),
    )
    .await
}

pub(crate) fn policy(binding: &str, on_mismatch: &str) -> Value {
    json!({
        "access_ttl_secs": 300, "refresh_ttl_secs": 86400, "session_max_secs": 604800,
        "binding": binding, "on_mismatch": on_mismatch,
    })
}

async fn login_from(app: &TestApp, name: &str, client_type: &str, ip: &str) -> Res {
    post_with(
        app,
        "/v1/auth/login",
        &[xff(ip)],
        json!({ "username": name, "password": PASSWORD, "client_type": client_type }),
    )
    .await
}

/// GET `path` with a bearer token, through a proxy, from `ip`.
async fn get_from(app: &TestApp, path: &str, access: &str, ip: &str) -> Res {
    let headers = [xff(ip), ("authorization", format!("Bearer {access}"))];
    get_with(app, path, &headers).await
}

/// GET /v1/me with a bearer token, through a proxy, from `ip`.
async fn me_from(app: &TestApp, access: &str, ip: &str) -> Res {
    get_from(app, "/v1/me", access, ip).await
}

async fn policies_are_events_and_apply_to_later_logins(kind: Kind) {
    let (_b, app) = start(kind).await;
    let all = app.admin_get("/v1/admin/policies").await;
    assert_eq!(all.status, 200, "{}", all.body);
    for t in ["web", "mobile", "service"] {
        let p = &all.body["policies"][t];
        assert_eq!(p["binding"], "none", "{t}: {p}");
        assert_eq!(
            p["access_ttl_secs"], 300,
            "{t}: today's setting is the default"
        );
    }
    let name = username("pol");
    app.register(&name).await;
    let before = login_from(&app, &name, "mobile", "203.0.113.5").await;
    assert!(claims(before.body["access_token"].as_str().unwrap())["net"].is_null());

    // Bad input changes nothing and names the field.
    let bad = set_policy(&app, "mobile", json!({ "binding": "network" })).await;
    assert_error(&bad, 400, "invalid_request");
    let mut long = policy("network", "reject");
    long["access_ttl_secs"] = json!(301);
    let bad = set_policy(&app, "mobile", long).await;
    assert_error(&bad, 400, "invalid_request");
    assert!(bad.body["error_description"]
        .as_str()
        .unwrap()
        .contains("access_ttl_secs"));
    assert_error(
        &set_policy(&app, "fridge", policy("none", "reject")).await,
        404,
        "not_found",
    );
    let user = app
        .post(
            "/v1/auth/login",
            None,
            json!({"username": name, "password": PASSWORD}),
        )
        .await;
    // An admin right is needed.
    let res = app
        .call(
            Method::PUT,
            "/v1/admin/policies/mobile",
            user.body["access_token"].as_str(),
            Some(policy("network", "reject")),
        )
        .await;
    assert_error(&res, 403, "forbidden");

    let mut p = policy("network", "reject");
    p["access_ttl_secs"] = json!(120);
    let set = set_policy(&app, "mobile", p).await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert!(set.body["seq"].as_i64().unwrap() > 0);
    let audit = events(&app, "type=policy_changed").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["actor"], "admin-token");
    assert_eq!(audit[0]["data"]["client_type"], "mobile");
    assert_eq!(audit[0]["data"]["policy"]["binding"], "network");

    // The session from before keeps working from anywhere; a new one is bound.
    let old = before.body["access_token"].as_str().unwrap();
    assert_eq!(me_from(&app, old, "198.51.100.9").await.status, 200);
    let after = login_from(&app, &name, "mobile", "203.0.113.5").await;
    assert_eq!(after.body["expires_in"], 120, "{}", after.body);
    let c = claims(after.body["access_token"].as_str().unwrap());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 120);
    assert!(c["net"]["h"].is_string(), "{c}");
    let access = after.body["access_token"].as_str().unwrap();
    let list = get_from(&app, "/v1/sessions", access, "203.0.113.9").await;
    let bindings: Vec<&str> = list.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["binding"].as_str().unwrap())
        .collect();
    assert!(
        bindings.contains(&"network") && bindings.contains(&"none"),
        "{bindings:?}"
    );
    app.stop().await;
}

async fn a_mobile_token_from_another_network_is_refused_and_web_is_not(kind: Kind) {
    let (_b, app) = start(kind).await;
    assert_eq!(
        set_policy(&app, "mobile", policy("network", "reject"))
            .await
            .status,
        200
    );
    let name = username("net");
    app.register(&name).await;
    let mobile = login_from(&app, &name, "mobile", "203.0.113.5").await;
    let web = login_from(&app, &name, "web", "203.0.113.5").await;
    let (m, w) = (
        mobile.body["access_token"].as_str().unwrap(),
        web.body["access_token"].as_str().unwrap(),
    );
    // No address anywhere in the token.
    for t in [m, w] {
        let text = String::from_utf8(
            URL_SAFE_NO_PAD
                .decode(t.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(!text.contains("203.0.113"), "{text}");
    }
    assert_eq!(
        me_from(&app, m, "203.0.113.77").await.status,
        200,
        "same /24"
    );
    // A forged left part of the chain changes nothing: the rightmost wins.
    assert_eq!(me_from(&app, m, "6.6.6.6, 203.0.113.8").await.status, 200);
    let other = me_from(&app, m, "198.51.100.1").await;
    assert_error(&other, 401, "invalid_token");
    assert!(other.body["error_description"]
        .as_str()
        .unwrap()
        .contains("another network"));
    assert_eq!(
        me_from(&app, m, "203.0.113.5, 198.51.100.1").await.status,
        401
    );
    assert_eq!(
        me_from(&app, w, "198.51.100.1").await.status,
        200,
        "web is not bound"
    );
    // Introspection: a network-bound token is active only for an address
    // inside its network, which the caller must name.
    for (ip, active) in [
        (None, false),
        (Some("203.0.113.9"), true),
        (Some("198.51.100.1"), false),
    ] {
        let mut form = vec![("token", m)];
        form.extend(ip.map(|ip| ("client_ip", ip)));
        let body = introspect(&app.http, &app.base, Some(ADMIN_TOKEN), &form)
            .await
            .body;
        assert_eq!(body["active"], active, "{ip:?}: {body}");
    }
    // Forward auth applies it too.
    let verify = get_from(&app, "/v1/auth/verify", m, "198.51.100.1").await;
    assert_eq!(verify.status, 401);
    // A refresh from elsewhere is a mismatch; the token is not spent by it.
    let refresh = mobile.body["refresh_token"].as_str().unwrap();
    let away = post_with(
        &app,
        "/v1/auth/refresh",
        &[xff("198.51.100.1")],
        json!({ "refresh_token": refresh }),
    )
    .await;
    assert_error(&away, 401, "invalid_grant");
    let home = post_with(
        &app,
        "/v1/auth/refresh",
        &[xff("203.0.113.200")],
        json!({ "refresh_token": refresh }),
    )
    .await;
    assert_eq!(home.status, 200, "{}", home.body);
    let next = home.body["access_token"].as_str().unwrap();
    assert_eq!(
        me_from(&app, next, "198.51.100.1").await.status,
        401,
        "still bound"
    );
    assert_eq!(me_from(&app, next, "203.0.113.1").await.status, 200);
    // The session was not revoked (reject, not revoke).
    assert!(events(&app, "type=session_revoked").await.is_empty());
    app.stop().await;
}

both_stores!(
    policies_are_events_and_apply_to_later_logins,
    a_mobile_token_from_another_network_is_refused_and_web_is_not,
);

/// A policy set on A binds the next login on B at once (it is read from
/// the log's store at login), and with `revoke` a use from another network
/// on C ends the session everywhere, with an event and a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_follows_a_policy_and_revokes_on_mismatch() {
    let (_b, apps) = pg_fleet(3).await;
    let name = username("fleetnet");
    apps[0].register(&name).await;
    assert_eq!(
        set_policy(&apps[0], "mobile", policy("network", "revoke"))
            .await
            .status,
        200
    );
    let login = login_from(&apps[1], &name, "mobile", "2001:db8:aa:bb01::1").await;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.body["access_token"].as_str().unwrap().to_owned();
    assert!(claims(&token)["net"]["rv"].as_bool().unwrap());
    assert_eq!(
        me_from(&apps[2], &token, "2001:db8:aa:bbff::9")
            .await
            .status,
        200,
        "same /56"
    );
    assert_eq!(
        me_from(&apps[2], &token, "2001:db8:aa:cc00::9")
            .await
            .status,
        401
    );
    let what = "revoked on every instance, from the right network too";
    let revoked = assert_mismatch_revoked(&apps, &token, Duration::from_millis(500), what).await;
    assert_eq!(revoked["data"]["reason"], "token used from another network");
    stop_all(apps).await;
}
