//! The tower layer with bound tokens: a DPoP-bound token with its proof,
//! a network-bound one from the peer in the request's extensions.
#![cfg(feature = "tower")]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use common::*;
use http::{header, Request, Response};
use recall_verifier::tower::{PeerAddr, VerifierLayer};
use recall_verifier::{Principal, Verifier};
use tower::{Layer, ServiceExt};

/// A service answering 200 with the principal's session id.
async fn call(
    v: &Verifier,
    layer: Option<VerifierLayer>,
    req: Request<String>,
) -> Response<String> {
    let inner = tower::service_fn(|req: Request<String>| async move {
        let sid = req
            .extensions()
            .get::<Principal>()
            .map(|p| p.session_id.to_string())
            .unwrap_or_default();
        Ok::<_, Infallible>(Response::new(sid))
    });
    layer
        .unwrap_or_else(|| VerifierLayer::new(v.clone()))
        .layer(inner)
        .oneshot(req)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_layer_checks_a_dpop_proof_against_the_request() {
    let recall = FakeRecall::with_key().await;
    let v = started(config(&[&recall.base])).await;
    let claims = dpop_bound(&CLIENT_SEED);
    let token = sign(&claims);
    let p = proof(
        &CLIENT_SEED,
        "PUT",
        &format!("{PUBLIC_URL}/orders/7"),
        &token,
    );
    let req = |proof: &str| {
        Request::put("/orders/7?x=1")
            .header(header::AUTHORIZATION, format!("DPoP {token}"))
            .header("dpop", proof)
            .body(String::new())
            .unwrap()
    };
    let res = call(&v, None, req(&p)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.into_body(), claims.sid.to_string());
    // Replayed.
    let res = call(&v, None, req(&p)).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        r#"DPoP error="invalid_dpop_proof", algs="EdDSA ES256""#
    );
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(res.into_body(), "");
    // As Bearer.
    let p = proof(
        &CLIENT_SEED,
        "PUT",
        &format!("{PUBLIC_URL}/orders/7"),
        &token,
    );
    let bearer = Request::put("/orders/7")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("dpop", p)
        .body(String::new())
        .unwrap();
    assert_eq!(call(&v, None, bearer).await.status(), 401);
}

#[tokio::test]
async fn the_layer_checks_the_network_of_the_peer() {
    let recall = FakeRecall::with_key().await;
    let v = started(config(&[&recall.base])).await;
    let claims = net_bound("2001:db8:aa:bb01::1", false);
    let token = sign(&claims);
    let req = |xff: Option<&str>| {
        let mut b =
            Request::get("/orders").header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(xff) = xff {
            b = b.header("x-forwarded-for", xff);
        }
        b.body(String::new()).unwrap()
    };
    // The peer as a SocketAddr in the extensions (what hyper servers
    // commonly put there), from the session's /56.
    let mut r = req(None);
    r.extensions_mut()
        .insert("[2001:db8:aa:bbff::9]:5000".parse::<SocketAddr>().unwrap());
    let res = call(&v, None, r).await;
    assert_eq!(
        (res.status().as_u16(), res.into_body()),
        (200, claims.sid.to_string())
    );
    // Through a trusted proxy, with the client on the right.
    let mut r = req(Some("2001:db8:aa:bb02::1"));
    r.extensions_mut().insert(PeerAddr(ip("::1")));
    assert_eq!(call(&v, None, r).await.status(), 200);
    // From elsewhere.
    let mut r = req(Some("2001:db8:aa:bb02::1"));
    r.extensions_mut().insert(PeerAddr(ip("2001:db8:ff::1")));
    let res = call(&v, None, r).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer error="invalid_token""#
    );
    // No peer known: refused.
    assert_eq!(call(&v, None, req(None)).await.status(), 401);
    // A custom way to find the peer (axum's ConnectInfo, say).
    #[derive(Clone)]
    struct Conn(SocketAddr);
    let layer = VerifierLayer::new(v.clone()).peer_addr(|ext| ext.get::<Conn>().map(|c| c.0.ip()));
    let mut r = req(None);
    r.extensions_mut()
        .insert(Conn("[2001:db8:aa:bb01::2]:1".parse().unwrap()));
    assert_eq!(call(&v, Some(layer), r).await.status(), 200);
}
