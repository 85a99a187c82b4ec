//! Shared Signals, first part: SETs derived from the real log of a running
//! instance, signed with its active key, verified from its JWKS with an
//! independent implementation (ed25519-dalek and serde_json, not the
//! jsonwebtoken crate Recall signs with).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use recall::ssf::{security_events, set_claims, SESSION_REVOKED, SET_TYP};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::both_stores;
use crate::feed::{post_204, user};
use crate::fixtures::start;
use crate::helpers::Kind;

/// The claims of a compact JWS, unverified (for indexing).
pub fn claims_of(token: &str) -> Value {
    token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// Verifies a compact JWS against the JWKS document by hand; returns
/// (header, claims).
pub fn verify_with_jwks(token: &str, jwks: &Value) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("the SET's kid is in the JWKS");
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = VerifyingKey::from_bytes(&x).unwrap();
    let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .expect("the signature verifies with the JWKS key");
    (header, claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_from_the_log_verify_from_the_jwks() {
    let (_b, app) = start(Kind::Sqlite).await;
    let s = user(&app, "ssf").await;
    // The RFC 7009 path Keycloak's transmitter forgot: it must signal too.
    let revoke = app.oauth_revoke(&s.refresh).await;
    assert_eq!(revoke.status, 200);
    let other = user(&app, "ssf2").await;
    post_204(&app, "/v1/auth/logout", &other.access).await;
    let recall = app.recall();
    let log = recall.store().read_after(0, 1000).await.unwrap();
    let sets: Vec<_> = log.iter().flat_map(security_events).collect();
    let revoked: Vec<String> = sets
        .iter()
        .filter(|e| e.event_type == SESSION_REVOKED)
        .filter_map(|e| e.subject.session.map(|s| s.to_string()))
        .collect();
    assert_eq!(
        revoked,
        vec![s.session_id.clone(), other.session_id.clone()]
    );

    let kid = recall.sync().state().active_kid().unwrap().to_owned();
    let issuer = recall.settings().issuer.clone();
    let stream = Uuid::now_v7();
    let jwks = app.get("/.well-known/jwks.json", None).await.body;
    for event in &sets {
        let claims = set_claims(
            event,
            &issuer,
            "https://receiver.example",
            stream,
            1_800_000_000,
        );
        let token = recall
            .sync()
            .keyring()
            .sign_json(&kid, SET_TYP, &claims)
            .unwrap();
        let (header, got) = verify_with_jwks(&token, &jwks);
        assert_eq!(header["typ"], "secevent+jwt");
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(got, claims);
        assert_eq!(got["aud"], "https://receiver.example");
        assert_eq!(got["iss"], json!(issuer));
        assert!(got["jti"]
            .as_str()
            .unwrap()
            .starts_with(&stream.to_string()));
        assert_eq!(got["sub_id"]["user"]["format"], "opaque");
        assert_eq!(got["events"].as_object().unwrap().len(), 1);
    }
    // A SET is no access token: Recall's verifier refuses its typ.
    let set = recall
        .sync()
        .keyring()
        .sign_json(
            &kid,
            SET_TYP,
            &set_claims(&sets[0], &issuer, "x", stream, 0),
        )
        .unwrap();
    assert_eq!(app.me_status(&set).await, 401);
    app.stop().await;
}

/// A service credential and a poll stream of its own on `app`.
async fn poll_stream(app: &crate::helpers::TestApp, name: &str, body: Value) -> (String, String) {
    let (_, token) = crate::feed::create_service(app, name).await;
    let res = app.post("/ssf/streams", Some(&token), body).await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert_eq!(res.body["delivery"]["method"], "urn:ietf:rfc:8936");
    (token, res.body["stream_id"].as_str().unwrap().to_owned())
}

/// Polls once, acknowledging `ack`; returns the SETs verified from the
/// JWKS as (jti, claims), in log order, and `moreAvailable`.
async fn poll(
    app: &crate::helpers::TestApp,
    token: &str,
    stream: &str,
    ack: &[String],
    max: u64,
) -> (Vec<(String, Value)>, bool) {
    let res = app
        .post(
            &format!("/ssf/poll/{stream}"),
            Some(token),
            json!({ "ack": ack, "maxEvents": max, "returnImmediately": true }),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let jwks = app.get("/.well-known/jwks.json", None).await.body;
    let mut sets: Vec<(String, Value)> = res.body["sets"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(jti, set)| {
            let (header, claims) = verify_with_jwks(set.as_str().unwrap(), &jwks);
            assert_eq!(header["typ"], "secevent+jwt");
            assert_eq!(claims["jti"], jti.as_str());
            (jti.clone(), claims)
        })
        .collect();
    let pos = |jti: &str| -> (i64, i64) {
        let mut parts = jti.rsplitn(3, '.');
        let index = parts.next().unwrap().parse().unwrap();
        let seq = parts.next().unwrap().parse().unwrap();
        (seq, index)
    };
    sets.sort_by_key(|(jti, _)| pos(jti));
    (sets, res.body["moreAvailable"].as_bool().unwrap())
}

/// Every SET of the stream from now on, polled in batches of 3 with acks.
async fn drain(app: &crate::helpers::TestApp, token: &str, stream: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut ack: Vec<String> = Vec::new();
    for _ in 0..50 {
        let (sets, more) = poll(app, token, stream, &ack, 3).await;
        ack = sets.iter().map(|(j, _)| j.clone()).collect();
        all.extend(sets.into_iter().map(|(_, c)| c));
        if ack.is_empty() && !more {
            return all;
        }
    }
    panic!("the stream never drained");
}

fn shape(sets: &[Value]) -> Vec<(String, Option<String>)> {
    sets.iter()
        .map(|c| {
            let kind = c["events"]
                .as_object()
                .unwrap()
                .keys()
                .next()
                .unwrap()
                .clone();
            let short = kind.rsplit('/').next().unwrap().to_owned();
            (
                short,
                c["sub_id"]["session"]["id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

async fn every_revocation_path_reaches_a_poll_receiver(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (token, stream) =
        poll_stream(&app, "receiver", json!({ "aud": "https://rp.example" })).await;
    let mut expected: Vec<(&str, Option<String>)> = Vec::new();
    // logout
    let s = user(&app, "p1").await;
    post_204(&app, "/v1/auth/logout", &s.access).await;
    expected.push(("session-revoked", Some(s.session_id.clone())));
    // logout-others, then logout-all
    let name = crate::helpers::username("p2");
    app.register(&name).await;
    let (a, bb) = (app.login(&name).await, app.login(&name).await);
    post_204(&app, "/v1/auth/logout-others", &a.access).await;
    expected.push(("session-revoked", Some(bb.session_id.clone())));
    post_204(&app, "/v1/auth/logout-all", &a.access).await;
    expected.push(("session-revoked", Some(a.session_id.clone())));
    // session delete (by the user), admin session delete, admin revoke
    let name = crate::helpers::username("p3");
    app.register(&name).await;
    let (c, d, e) = (
        app.login(&name).await,
        app.login(&name).await,
        app.login(&name).await,
    );
    let del = app.delete_session(&c.access, &d.session_id).await;
    assert_eq!(del.status, 204);
    expected.push(("session-revoked", Some(d.session_id.clone())));
    let del =
        crate::feed::admin_delete(&app, &format!("/v1/admin/sessions/{}", e.session_id)).await;
    assert_eq!(del.status, 204);
    expected.push(("session-revoked", Some(e.session_id.clone())));
    let res = app
        .admin_user_action(&c.user_id, "revoke-sessions", json!({}))
        .await;
    assert_eq!(res.status, 200);
    expected.push(("session-revoked", Some(c.session_id.clone())));
    // lock and unlock
    let l = user(&app, "p4").await;
    let res = app.admin_user_action(&l.user_id, "lock", json!({})).await;
    assert_eq!(res.status, 200);
    expected.push(("account-disabled", None));
    expected.push(("session-revoked", Some(l.session_id.clone())));
    let res = app.admin_user_action(&l.user_id, "unlock", json!({})).await;
    assert_eq!(res.status, 200);
    expected.push(("account-enabled", None));
    // password change: credential-change, and the other session ends
    let name = crate::helpers::username("p5");
    app.register(&name).await;
    let (keep, gone) = (app.login(&name).await, app.login(&name).await);
    let body =
        json!({ "current_password": crate::helpers::PASSWORD, "new_password": "a new password 9" });
    assert_eq!(
        app.post("/v1/auth/password", Some(&keep.access), body)
            .await
            .status,
        204
    );
    expected.push(("credential-change", None));
    expected.push(("session-revoked", Some(gone.session_id.clone())));
    // RFC 7009 (the path Keycloak's transmitter forgot)
    let r = user(&app, "p6").await;
    let res = app.oauth_revoke(&r.access).await;
    assert_eq!(res.status, 200);
    expected.push(("session-revoked", Some(r.session_id.clone())));

    let sets = drain(&app, &token, &stream).await;
    let want: Vec<(String, Option<String>)> = expected
        .into_iter()
        .map(|(k, s)| (k.to_owned(), s))
        .collect();
    assert_eq!(shape(&sets), want, "every path, once each, in log order");
    for c in &sets {
        assert_eq!(c["aud"], "https://rp.example");
        assert!(c["sub_id"]["format"] == "complex" || c["sub_id"]["format"] == "opaque");
    }
    // Acknowledged SETs are not sent again.
    let (after, more) = poll(&app, &token, &stream, &[], 10).await;
    assert!(after.is_empty() && !more, "{after:?}");
    app.stop().await;
}

both_stores!(
    verification_reaches_only_its_own_stream,
    every_revocation_path_reaches_a_poll_receiver,
    streams_belong_to_their_receiver,
    paused_holds_and_disabled_drops
);

async fn streams_belong_to_their_receiver(kind: Kind) {
    let (_b, app) = start(kind).await;
    let meta = app.get("/.well-known/ssf-configuration", None).await;
    assert_eq!(meta.status, 200);
    assert_eq!(meta.body["spec_version"], "1_0");
    assert!(meta.body["configuration_endpoint"]
        .as_str()
        .unwrap()
        .ends_with("/ssf/streams"));
    let (mine, stream) = poll_stream(&app, "mine", json!({})).await;
    let (theirs, _) = poll_stream(&app, "theirs", json!({})).await;
    let q = format!("/ssf/streams?stream_id={stream}");
    assert_eq!(app.get(&q, Some(&mine)).await.status, 200);
    assert_eq!(app.get(&q, Some(&theirs)).await.status, 404);
    let list = app.get("/ssf/streams", Some(&theirs)).await;
    assert_eq!(
        list.body.as_array().unwrap().len(),
        1,
        "each sees only its own"
    );
    let admin = app.get(&q, Some(crate::helpers::ADMIN_TOKEN)).await;
    assert_eq!(admin.status, 403);
    assert_eq!(app.get(&q, None).await.status, 401);
    // Update (PATCH) keeps what is not given; replace (PUT) resets it.
    let want = json!([recall::ssf::SESSION_REVOKED]);
    let patched = app
        .call(
            reqwest::Method::PATCH,
            "/ssf/streams",
            Some(&mine),
            Some(json!({ "stream_id": stream, "events_requested": want })),
        )
        .await;
    assert_eq!(patched.status, 200);
    assert_eq!(patched.body["events_delivered"], want);
    let stolen = app
        .call(
            reqwest::Method::PATCH,
            "/ssf/streams",
            Some(&theirs),
            Some(json!({ "stream_id": stream, "aud": "evil" })),
        )
        .await;
    assert_eq!(stolen.status, 404);
    let replaced = app
        .call(
            reqwest::Method::PUT,
            "/ssf/streams",
            Some(&mine),
            Some(json!({ "stream_id": stream })),
        )
        .await;
    assert_eq!(
        replaced.body["events_delivered"].as_array().unwrap().len(),
        5
    );
    let bad = app
        .post(
            "/ssf/streams",
            Some(&mine),
            json!({ "delivery": { "method": "urn:nope" } }),
        )
        .await;
    assert_eq!(bad.status, 400);
    let st = app
        .get(&format!("/ssf/status?stream_id={stream}"), Some(&mine))
        .await;
    assert_eq!(st.body["status"], "enabled");
    let gone = app
        .call(reqwest::Method::DELETE, &q, Some(&theirs), None)
        .await;
    assert_eq!(gone.status, 404);
    assert_eq!(
        app.call(reqwest::Method::DELETE, &q, Some(&mine), None)
            .await
            .status,
        204
    );
    assert_eq!(app.get(&q, Some(&mine)).await.status, 404);
    let admin_view = app
        .get("/v1/admin/ssf/streams", Some(crate::helpers::ADMIN_TOKEN))
        .await;
    assert_eq!(admin_view.body["streams"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn paused_holds_and_disabled_drops(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (token, stream) = poll_stream(&app, "status", json!({})).await;
    let set = |status: &str| {
        app.post(
            "/ssf/status",
            Some(&token),
            json!({ "stream_id": stream, "status": status }),
        )
    };
    assert_eq!(set("paused").await.status, 200);
    let held = user(&app, "held").await;
    post_204(&app, "/v1/auth/logout", &held.access).await;
    let (none, _) = poll(&app, &token, &stream, &[], 10).await;
    assert!(none.is_empty(), "a paused stream delivers nothing");
    assert_eq!(set("enabled").await.status, 200);
    assert_eq!(
        shape(&drain(&app, &token, &stream).await),
        vec![("session-revoked".to_owned(), Some(held.session_id.clone()))]
    );
    assert_eq!(set("disabled").await.status, 200);
    let dropped = user(&app, "dropped").await;
    post_204(&app, "/v1/auth/logout", &dropped.access).await;
    assert_eq!(set("enabled").await.status, 200);
    let after = user(&app, "after").await;
    post_204(&app, "/v1/auth/logout", &after.access).await;
    assert_eq!(
        shape(&drain(&app, &token, &stream).await),
        vec![("session-revoked".to_owned(), Some(after.session_id.clone()))],
        "what happened while disabled is dropped"
    );
    assert_eq!(set("sleeping").await.status, 400);
    app.stop().await;
}

async fn verification_reaches_only_its_own_stream(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (mine, stream) = poll_stream(&app, "verify", json!({})).await;
    let (theirs, other) = poll_stream(&app, "other", json!({})).await;
    let meta = app.get("/.well-known/ssf-configuration", None).await;
    assert!(meta.body["verification_endpoint"]
        .as_str()
        .unwrap()
        .ends_with("/ssf/verify"));
    let res = app
        .post(
            "/ssf/verify",
            Some(&mine),
            json!({ "stream_id": stream, "state": "s-42" }),
        )
        .await;
    assert_eq!(res.status, 204, "{:?}", res.body);
    let sets = drain(&app, &mine, &stream).await;
    assert_eq!(sets.len(), 1);
    let event = &sets[0]["events"][recall::ssf::VERIFICATION];
    assert_eq!(event["state"], "s-42");
    assert_eq!(
        sets[0]["sub_id"],
        json!({ "format": "opaque", "id": stream })
    );
    assert!(
        drain(&app, &theirs, &other).await.is_empty(),
        "another stream's verification"
    );
    // Only the stream's own receiver may ask.
    let stolen = app
        .post("/ssf/verify", Some(&theirs), json!({ "stream_id": stream }))
        .await;
    assert_eq!(stolen.status, 404);
    app.stop().await;
}

/// A session revoked for a use from another network (policy `revoke`)
/// goes out as a CAEP session-revoked SET whose reason says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_mismatch_goes_out_as_a_set_with_its_reason() {
    let (_b, app) = start(Kind::Sqlite).await;
    let (token, stream) = poll_stream(&app, "rp", json!({ "aud": "https://rp.example" })).await;
    let put = app
        .call(
            reqwest::Method::PUT,
            "/v1/admin/policies/mobile",
            Some(crate::helpers::ADMIN_TOKEN),
            Some(json!({
                "access_ttl_secs": 300, "refresh_ttl_secs": 86400, "session_max_secs": 86400,
                "binding": "network", "on_mismatch": "revoke",
            })),
        )
        .await;
    assert_eq!(put.status, 200);
    let name = crate::helpers::username("setnet");
    app.register(&name).await;
    let login: Value = app
        .http
        .post(format!("{}/v1/auth/login", app.base))
        .header("x-forwarded-for", "203.0.113.5")
        .json(&json!({ "username": name, "password": crate::helpers::PASSWORD, "client_type": "mobile" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().unwrap();
    let away = app
        .http
        .get(format!("{}/v1/me", app.base))
        .bearer_auth(access)
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(away.status(), 401);
    let sets = drain(&app, &token, &stream).await;
    let revoked: Vec<&Value> = sets
        .iter()
        .filter(|c| c["sub_id"]["session"]["id"] == login["session_id"])
        .collect();
    assert_eq!(revoked.len(), 1, "{sets:?}");
    let event = revoked[0]["events"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert_eq!(event["initiating_entity"], "policy");
    assert_eq!(
        event["reason_admin"]["en"],
        "token used from another network"
    );
    app.stop().await;
}
