//! DPoP-bound tokens (issue 21) on Recall's routes: fresh proofs of the
//! token's key, refusals of every kind the RFC lists, bound refresh tokens,
//! `/oauth/token`, introspection, replay refused across a fleet (and 503
//! when the shared check is down), and server nonces across instances.

use recall_verifier::dpop::{ath, ed25519_jkt, ed25519_proof};
use serde_json::json;
use uuid::Uuid;

use crate::both_stores;
use crate::bound::{
    claims, dpop_headers, get_with, htu, now, policy, post_with, proof, set_policy,
};
use crate::fixtures::{introspect, start, stop_all};
use crate::fleet::Proxy;
use crate::helpers::{
    assert_error, redis_url, username, Backend, Kind, Res, ADMIN_TOKEN, PASSWORD,
};

both_stores!(a_dpop_bound_token_needs_a_fresh_proof_of_its_key);

async fn a_dpop_bound_token_needs_a_fresh_proof_of_its_key(kind: Kind) {
    let (_b, app) = start(kind).await;
    let name = username("dpop");
    app.register(&name).await;
    let seed = [7u8; 32];
    let login_url = htu(&app, "/v1/auth/login");
    let body = json!({ "username": name, "password": PASSWORD });
    let res = post_with(
        &app,
        "/v1/auth/login",
        &[("dpop", proof(&seed, "POST", &login_url, None))],
        body.clone(),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["token_type"], "DPoP");
    let token = res.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&token)["cnf"]["jkt"], ed25519_jkt(&seed));
    let me_url = htu(&app, "/v1/me");
    let dpop_me = |p: String| {
        let token = token.clone();
        let app = &app;
        async move { get_with(app, "/v1/me", &dpop_headers(&token, &p)).await }
    };
    let good = proof(&seed, "GET", &me_url, Some(&token));
    assert_eq!(dpop_me(good.clone()).await.status, 200);
    // The same proof again: a replay.
    let again = dpop_me(good).await;
    assert_error(&again, 401, "invalid_dpop_proof");
    assert!(again.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("DPoP "));
    // As Bearer, without a proof, with another key, for another URI or method, stale.
    let bearer = app.get("/v1/me", Some(&token)).await;
    assert_error(&bearer, 401, "invalid_dpop_proof");
    let none = get_with(
        &app,
        "/v1/me",
        &[("authorization", format!("DPoP {token}"))],
    )
    .await;
    assert_error(&none, 401, "invalid_dpop_proof");
    for bad in [
        proof(&[8u8; 32], "GET", &me_url, Some(&token)),
        proof(&seed, "GET", &htu(&app, "/v1/sessions"), Some(&token)),
        proof(&seed, "POST", &me_url, Some(&token)),
        proof(&seed, "GET", &me_url, Some("another token")),
        proof(&seed, "GET", &me_url, None),
        ed25519_proof(
            &seed,
            "GET",
            &me_url,
            now() - 300,
            "old",
            Some(&ath(&token)),
            None,
        ),
        "not.a.proof".to_owned(),
    ] {
        assert_error(&dpop_me(bad).await, 401, "invalid_dpop_proof");
    }
    // Two DPoP headers: refused.
    let two = get_with(
        &app,
        "/v1/me",
        &[
            ("authorization", format!("DPoP {token}")),
            ("dpop", proof(&seed, "GET", &me_url, Some(&token))),
            ("dpop", proof(&seed, "GET", &me_url, Some(&token))),
        ],
    )
    .await;
    assert_error(&two, 401, "invalid_dpop_proof");
    // The refresh token is bound: no proof or another key's is refused, and
    // the refusal does not spend it.
    let refresh_url = htu(&app, "/v1/auth/refresh");
    let rt = json!({ "refresh_token": res.body["refresh_token"] });
    let plain = app.post("/v1/auth/refresh", None, rt.clone()).await;
    assert_error(&plain, 400, "invalid_dpop_proof");
    let other = post_with(
        &app,
        "/v1/auth/refresh",
        &[("dpop", proof(&[9u8; 32], "POST", &refresh_url, None))],
        rt.clone(),
    )
    .await;
    assert_error(&other, 400, "invalid_dpop_proof");
    let ok = post_with(
        &app,
        "/v1/auth/refresh",
        &[("dpop", proof(&seed, "POST", &refresh_url, None))],
        rt,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["token_type"], "DPoP");
    // RFC 6749 /oauth/token takes a proof too.
    let form = format!(
        "grant_type=refresh_token&refresh_token={}",
        ok.body["refresh_token"].as_str().unwrap()
    );
    let oauth = app
        .http
        .post(format!("{}/oauth/token", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "dpop",
            proof(&seed, "POST", &htu(&app, "/oauth/token"), None),
        )
        .body(form)
        .send()
        .await
        .unwrap();
    let oauth = Res::read(oauth).await;
    assert_eq!(oauth.status, 200, "{}", oauth.body);
    assert_eq!(
        claims(oauth.body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        ed25519_jkt(&seed)
    );

    // Introspection tells a resource server the token is DPoP-bound (RFC 9449).
    let form = [("token", token.as_str())];
    let intro = introspect(&app.http, &app.base, Some(ADMIN_TOKEN), &form).await;
    assert_eq!(intro.body["active"], true, "{}", intro.body);
    assert_eq!(intro.body["token_type"], "DPoP");
    assert_eq!(intro.body["cnf"]["jkt"], ed25519_jkt(&seed));
    // A client type whose policy says dpop must send one.
    assert_eq!(
        set_policy(&app, "service", policy("dpop", "reject"))
            .await
            .status,
        200
    );
    let svc = json!({ "username": name, "password": PASSWORD, "client_type": "service" });
    assert_error(
        &app.post("/v1/auth/login", None, svc).await,
        400,
        "invalid_dpop_proof",
    );
    // Discovery says which algorithms.
    let meta = app
        .get("/.well-known/oauth-authorization-server", None)
        .await;
    assert_eq!(
        meta.body["dpop_signing_alg_values_supported"],
        json!(["EdDSA", "ES256"])
    );
    app.stop().await;
}

/// The same proof presented to two instances of a fleet: the second
/// refuses it (Redis `SET NX`); with Redis cut, bound requests fail closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_replayed_to_another_instance_is_refused_and_a_lost_redis_fails_closed() {
    let b = Backend::new(Kind::Postgres).await;
    let proxy = Proxy::new(
        redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned(),
    )
    .await;
    let mut apps = b.spawn_fleet(2).await;
    let mut s = b.settings();
    s.max_staleness_ms = 3_600_000;
    apps.push(b.spawn_with(s, Some(proxy.redis_url())).await);
    let name = username("replay");
    apps[0].register(&name).await;
    let seed = [3u8; 32];
    let login_url = htu(&apps[0], "/v1/auth/login");
    let res = post_with(
        &apps[0],
        "/v1/auth/login",
        &[("dpop", proof(&seed, "POST", &login_url, None))],
        json!({ "username": name, "password": PASSWORD }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let token = res.body["access_token"].as_str().unwrap().to_owned();
    // Every instance has its own public URL here; a proof names one of them.
    let p1 = proof(&seed, "GET", &htu(&apps[1], "/v1/me"), Some(&token));
    assert_eq!(
        get_with(&apps[1], "/v1/me", &dpop_headers(&token, &p1))
            .await
            .status,
        200
    );
    let replay = get_with(&apps[1], "/v1/me", &dpop_headers(&token, &p1)).await;
    assert_error(&replay, 401, "invalid_dpop_proof");
    // Instances behind one public URL: the same proof to two of them.
    let shared = "http://recall.test/v1/me";
    let p2 = proof(&seed, "GET", shared, Some(&token));
    let original = [
        ("x-original-method", "GET".to_owned()),
        ("x-original-uri", shared.to_owned()),
    ];
    let mut h = dpop_headers(&token, &p2).to_vec();
    h.extend(original.iter().cloned());
    let first = get_with(&apps[0], "/v1/auth/verify", &h).await;
    assert_eq!(first.status, 204, "{}", first.body);
    let second = get_with(&apps[1], "/v1/auth/verify", &h).await;
    assert_error(&second, 401, "invalid_dpop_proof");
    assert!(second.body["error_description"]
        .as_str()
        .unwrap()
        .contains("used before"));
    assert!(apps[1].metric("recall_dpop_replays_total").await >= 2.0);
    // Redis cut under the third instance: a fresh proof gets 503, not a pass.
    proxy.cut();
    let p3 = proof(&seed, "GET", &htu(&apps[2], "/v1/me"), Some(&token));
    let closed = get_with(&apps[2], "/v1/me", &dpop_headers(&token, &p3)).await;
    assert_error(&closed, 503, "unavailable");
    // Unbound tokens are not affected.
    let plain = apps[2].login(&name).await;
    assert_eq!(apps[2].me_status(&plain.access).await, 200);
    stop_all(apps).await;
}

/// RECALL_DPOP_NONCE: a proof without a nonce gets `use_dpop_nonce` and a
/// `DPoP-Nonce`; a nonce one instance issued is good on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_nonces_from_one_instance_work_on_another() {
    let b = Backend::new(Kind::Postgres).await;
    let apps = b.spawn_fleet_with(2, |s| s.dpop_nonce = true).await;
    let name = username("nonce");
    apps[0].register(&name).await;
    let seed = [5u8; 32];
    let body = json!({ "username": name, "password": PASSWORD });
    let url0 = htu(&apps[0], "/v1/auth/login");
    let first = post_with(
        &apps[0],
        "/v1/auth/login",
        &[("dpop", proof(&seed, "POST", &url0, None))],
        body.clone(),
    )
    .await;
    assert_error(&first, 400, "use_dpop_nonce");
    let nonce = first.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let url1 = htu(&apps[1], "/v1/auth/login");
    let with_nonce = |nonce: &str| {
        let jti = Uuid::new_v4().to_string();
        ed25519_proof(&seed, "POST", &url1, now(), &jti, None, Some(nonce))
    };
    let with = with_nonce(&nonce);
    let ok = post_with(&apps[1], "/v1/auth/login", &[("dpop", with)], body.clone()).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let forged = with_nonce("AAAA");
    let res = post_with(&apps[1], "/v1/auth/login", &[("dpop", forged)], body).await;
    assert_error(&res, 400, "use_dpop_nonce");
    stop_all(apps).await;
}
