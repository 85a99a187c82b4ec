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

use crate::feed::{post_204, user};
use crate::helpers::{Backend, Kind};

/// Verifies a compact JWS against the JWKS document by hand; returns
/// (header, claims).
fn verify_with_jwks(token: &str, jwks: &Value) -> (Value, Value) {
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
    let b = Backend::new(Kind::Sqlite).await;
    let app = b.spawn().await;
    let s = user(&app, "ssf").await;
    // The RFC 7009 path Keycloak's transmitter forgot: it must signal too.
    let revoke = app
        .http
        .post(format!("{}/oauth/revoke", app.base))
        .form(&[("token", s.refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
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
