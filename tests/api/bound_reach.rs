//! Bound tokens beyond Recall's own routes (issue 21): the `recall
//! verifier` sidecar (a real process) and nginx `auth_request` in front of
//! it with the shipped config, on a 3-instance fleet; real
//! `X-Forwarded-For` chains (the test client stands in for a trusted proxy
//! on 127.0.0.1, as a load balancer in front would be).

use std::time::{Duration, Instant};

use recall_verifier::dpop::{ath, ed25519_proof};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::bound::assert_mismatch_revoked;
use crate::feed::create_service;
use crate::fixtures::{introspect, pg_fleet, stop_all};
use crate::helpers::{username, TestApp, ADMIN_TOKEN, PASSWORD};
use crate::verifiers::Sidecar;

fn policy(binding: &str, on_mismatch: &str) -> Value {
    json!({
        "access_ttl_secs": 300, "refresh_ttl_secs": 86400, "session_max_secs": 604800,
        "binding": binding, "on_mismatch": on_mismatch,
    })
}

async fn login_from(app: &TestApp, body: Value, xff: &str) -> Value {
    let res = app
        .http
        .post(format!("{}/v1/auth/login", app.base))
        .header("x-forwarded-for", xff)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Forward auth at the sidecar: the status.
async fn verify_from(s: &Sidecar, access: &str, xff: &str) -> u16 {
    s.http
        .get(format!("{}/v1/auth/verify", s.base))
        .bearer_auth(access)
        .header("x-forwarded-for", xff)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A policy set on A binds the very next login on B (login reads it from
/// the log's store), and the sidecar, which needs no policy, enforces the
/// token's binding from its first request: through X-Forwarded-For chains,
/// and with `revoke`, a use from elsewhere at the sidecar ends the session
/// on every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_set_on_one_instance_is_enforced_by_the_others_and_the_sidecar() {
    let (_b, apps) = pg_fleet(3).await;
    let (_, service) = create_service(&apps[0], "sidecar").await;
    let sidecar = Sidecar::start(std::slice::from_ref(&apps[2].base), &service, 5000).await;
    let name = username("reach");
    apps[0].register(&name).await;
    let body = json!({ "username": name, "password": PASSWORD, "client_type": "mobile" });
    let put = apps[0]
        .call(
            Method::PUT,
            "/v1/admin/policies/mobile",
            Some(ADMIN_TOKEN),
            Some(policy("network", "revoke")),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let changed = Instant::now();
    let login = login_from(&apps[1], body, "203.0.113.5").await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    // From the sidecar's first request on: inside the /24 yes, outside no.
    assert_eq!(verify_from(&sidecar, &token, "203.0.113.200").await, 204);
    let enforced = changed.elapsed();
    eprintln!("policy set on A -> enforced by B's login and the sidecar: {enforced:?}");
    // The sidecar's introspection: active only for an address inside.
    for (ip, active) in [
        (None, false),
        (Some("203.0.113.77"), true),
        (Some("198.51.100.1"), false),
    ] {
        let mut form = vec![("token", token.as_str())];
        form.extend(ip.map(|ip| ("client_ip", ip)));
        let body = introspect(&sidecar.http, &sidecar.base, None, &form)
            .await
            .body;
        assert_eq!(body["active"], active, "{ip:?}: {body}");
    }
    // A forged left part of a chain changes nothing: the rightmost wins.
    assert_eq!(
        verify_from(&sidecar, &token, "6.6.6.6, 203.0.113.8").await,
        204
    );
    assert_eq!(
        verify_from(&sidecar, &token, "203.0.113.8, 198.51.100.1").await,
        401
    );
    // That use from elsewhere revoked the session (reported to Recall).
    let what = "the sidecar's mismatch never revoked the session";
    assert_mismatch_revoked(&apps, &token, Duration::from_secs(3), what).await;
    let refused = crate::helpers::eventually(Duration::from_secs(3), || async {
        verify_from(&sidecar, &token, "203.0.113.200").await == 401
    })
    .await;
    assert!(
        refused.is_some(),
        "the sidecar kept admitting the revoked session"
    );
    // The web token of the same user is not bound.
    let web = json!({ "username": name, "password": PASSWORD });
    let web = login_from(&apps[2], web, "203.0.113.5").await;
    let web = web["access_token"].as_str().unwrap();
    assert_eq!(verify_from(&sidecar, web, "198.51.100.1").await, 204);
    // No address appears in what the feed carries.
    let feed = apps[0].get("/v1/revocations", Some(&service)).await;
    assert!(
        !feed.body.to_string().contains("203.0.113"),
        "{}",
        feed.body
    );
    sidecar.stop().await;
    stop_all(apps).await;
}

/// A DPoP-bound token at the sidecar: fresh proofs for the original request
/// (X-Original-Method/URI, against its --public-url) pass, a replayed one
/// does not, and the token as Bearer does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_checks_dpop_proofs_of_the_original_request() {
    let (_b, apps) = pg_fleet(1).await;
    let app = &apps[0];
    let (_, service) = create_service(app, "sidecar").await;
    let flags = ["--public-url", "https://api.example.test"];
    let sidecar =
        Sidecar::start_with(std::slice::from_ref(&app.base), &service, 5000, &flags).await;
    let name = username("sdpop");
    app.register(&name).await;
    let seed = [11u8; 32];
    let now = || chrono::Utc::now().timestamp();
    let login_url = format!(
        "{}/v1/auth/login",
        app.recall().settings().public_url.trim_end_matches('/')
    );
    let proof = ed25519_proof(&seed, "POST", &login_url, now(), "login-1", None, None);
    let res = app
        .http
        .post(format!("{}/v1/auth/login", app.base))
        .header("dpop", proof)
        .json(&json!({ "username": name, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let token = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let forward = |proof: Option<String>, scheme: &'static str| {
        let mut req = sidecar
            .http
            .get(format!("{}/v1/auth/verify", sidecar.base))
            .header("authorization", format!("{scheme} {token}"))
            .header("x-original-method", "DELETE")
            .header("x-original-uri", "/orders/7?force=1");
        if let Some(p) = proof {
            req = req.header("dpop", p);
        }
        req.send()
    };
    let url = "https://api.example.test/orders/7";
    let fresh = || {
        let jti = Uuid::new_v4().to_string();
        ed25519_proof(&seed, "DELETE", url, now(), &jti, Some(&ath(&token)), None)
    };
    let p = fresh();
    assert_eq!(
        forward(Some(p.clone()), "DPoP").await.unwrap().status(),
        204
    );
    let replay = forward(Some(p), "DPoP").await.unwrap();
    assert_eq!(replay.status(), 401);
    assert!(replay.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("DPoP"));
    assert_eq!(
        forward(Some(fresh()), "Bearer").await.unwrap().status(),
        401
    );
    assert_eq!(forward(None, "DPoP").await.unwrap().status(), 401);
    let other_uri = ed25519_proof(
        &seed,
        "DELETE",
        "https://api.example.test/orders/8",
        now(),
        &Uuid::new_v4().to_string(),
        Some(&ath(&token)),
        None,
    );
    assert_eq!(
        forward(Some(other_uri), "DPoP").await.unwrap().status(),
        401
    );
    assert_eq!(forward(Some(fresh()), "DPoP").await.unwrap().status(), 204);
    sidecar.stop().await;
    stop_all(apps).await;
}

/// Network binding through nginx `auth_request` (the shipped config, which
/// passes X-Forwarded-For with nginx's own peer appended) to the sidecar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_binding_through_nginx_and_the_sidecar() {
    let (_b, apps) = pg_fleet(1).await;
    let app = &apps[0];
    let (_, service) = create_service(app, "nginx").await;
    let sidecar = Sidecar::start(std::slice::from_ref(&app.base), &service, 5000).await;
    let put = app
        .call(
            Method::PUT,
            "/v1/admin/policies/mobile",
            Some(ADMIN_TOKEN),
            Some(policy("network", "reject")),
        )
        .await;
    assert_eq!(put.status, 200);
    let name = username("nginxnet");
    app.register(&name).await;
    let body = json!({ "username": name, "password": PASSWORD, "client_type": "mobile" });
    let token = login_from(app, body, "2001:db8:aa:bb01::1").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let nginx = crate::nginx::Nginx::start(&sidecar).await;
    let get = |xff: &'static str| {
        nginx
            .http
            .get(format!("{}/orders", nginx.base))
            .bearer_auth(&token)
            .header("x-forwarded-for", xff)
            .send()
    };
    let up = crate::helpers::eventually(Duration::from_secs(10), || async {
        get("2001:db8:aa:bbff::2")
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(
        up.is_some(),
        "a token from its own /56 never got through nginx"
    );
    assert_eq!(get("2001:db8:aa:cc00::2").await.unwrap().status(), 401);
    assert_eq!(
        get("2001:db8:aa:bb01::1, 198.51.100.1")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get("198.51.100.1, 2001:db8:aa:bb01::9")
            .await
            .unwrap()
            .status(),
        200
    );
    nginx.stop().await;
    sidecar.stop().await;
    stop_all(apps).await;
}
