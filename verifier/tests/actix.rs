//! The actix-web extractor with bound tokens: it reads the scheme, the
//! one `DPoP` header, the method and path, and the client address
//! (through trusted proxies), and answers refusals as Recall does.
#![cfg(feature = "actix")]

mod common;

use actix_web::body::MessageBody;
use actix_web::http::header;
use actix_web::test::TestRequest;
use actix_web::{web, FromRequest, ResponseError};
use common::*;
use recall_verifier::actix::{verify_request, Authenticated};
use recall_verifier::{DpopRefusal, VerifyError};

fn request(v: &recall_verifier::Verifier) -> TestRequest {
    TestRequest::get()
        .uri("/orders/7?page=2")
        .app_data(web::Data::new(v.clone()))
}

async fn extract(req: TestRequest) -> Result<Authenticated, VerifyError> {
    Authenticated::extract(&req.to_http_request()).await
}

#[tokio::test]
async fn the_extractor_checks_a_dpop_proof_against_the_request() {
    let recall = FakeRecall::with_key().await;
    let v = started(config(&[&recall.base])).await;
    let claims = dpop_bound(&CLIENT_SEED);
    let token = sign(&claims);
    let htu = format!("{PUBLIC_URL}/orders/7");
    let p = proof(&CLIENT_SEED, "GET", &htu, &token);

    let ok = extract(
        request(&v)
            .insert_header((header::AUTHORIZATION, format!("dpop {token}")))
            .insert_header(("DPoP", p.clone())),
    )
    .await;
    assert_eq!(ok.map(|a| a.0.session_id).ok(), Some(claims.sid));

    // The same proof again, a POST, two DPoP headers, or Bearer: refused.
    let again = extract(
        request(&v)
            .insert_header((header::AUTHORIZATION, format!("DPoP {token}")))
            .insert_header(("DPoP", p.clone())),
    )
    .await;
    assert_eq!(again.err(), Some(VerifyError::Dpop(DpopRefusal::Replayed)));
    let p2 = proof(&CLIENT_SEED, "GET", &htu, &token);
    let post = extract(
        TestRequest::post()
            .uri("/orders/7")
            .app_data(web::Data::new(v.clone()))
            .insert_header((header::AUTHORIZATION, format!("DPoP {token}")))
            .insert_header(("DPoP", p2.clone())),
    )
    .await;
    assert_eq!(
        post.err(),
        Some(VerifyError::Dpop(DpopRefusal::Invalid(
            recall_verifier::dpop::DpopError::BadMethod
        )))
    );
    let two = extract(
        request(&v)
            .insert_header((header::AUTHORIZATION, format!("DPoP {token}")))
            .append_header(("DPoP", p2.clone()))
            .append_header(("DPoP", p2.clone())),
    )
    .await;
    assert_eq!(two.err(), Some(VerifyError::Dpop(DpopRefusal::Several)));
    let as_bearer = extract(
        request(&v)
            .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
            .insert_header(("DPoP", p2.clone())),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(as_bearer, VerifyError::Dpop(DpopRefusal::BoundAsBearer));

    // The refusal as actix answers it: 401, the DPoP challenge, JSON.
    let res = as_bearer.error_response();
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(
        res.headers().get(header::WWW_AUTHENTICATE).unwrap(),
        r#"DPoP error="invalid_dpop_proof", algs="EdDSA ES256""#
    );
    let body = res.into_body().try_into_bytes().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "invalid_dpop_proof");

    // Forward auth: the method and URI are the original request's.
    let forwarded = |original_uri: &str| {
        let fwd = proof(&CLIENT_SEED, "DELETE", &htu, &token);
        TestRequest::get()
            .uri("/v1/auth/verify")
            .insert_header((header::AUTHORIZATION, format!("DPoP {token}")))
            .insert_header(("DPoP", fwd))
            .insert_header(("X-Original-Method", "DELETE"))
            .insert_header(("X-Original-URI", original_uri))
            .to_http_request()
    };
    let req = forwarded("/orders/7?x=1");
    assert!(verify_request(&req, &v, true).await.is_ok());
    // The same headers mean nothing to the plain extractor.
    let req = forwarded("/orders/7");
    assert!(matches!(
        verify_request(&req, &v, false).await,
        Err(VerifyError::Dpop(DpopRefusal::Invalid(_)))
    ));
}

#[tokio::test]
async fn the_extractor_checks_the_network_through_trusted_proxies() {
    let recall = FakeRecall::with_key().await;
    let v = started(config(&[&recall.base])).await;
    let claims = net_bound("203.0.113.5", true);
    let token = sign(&claims);
    let with = |peer: &str, xff: Option<&str>| {
        let mut req = request(&v)
            .peer_addr(format!("{peer}:40000").parse().unwrap())
            .insert_header((header::AUTHORIZATION, format!("Bearer {token}")));
        if let Some(xff) = xff {
            req = req.insert_header(("X-Forwarded-For", xff));
        }
        extract(req)
    };
    // Directly from its network, and through nginx on loopback.
    assert!(with("203.0.113.44", None).await.is_ok());
    assert!(with("127.0.0.1", Some("6.6.6.6, 203.0.113.200"))
        .await
        .is_ok());
    // A forged header from an untrusted peer is ignored.
    let e = with("198.51.100.7", Some("203.0.113.5"))
        .await
        .err()
        .unwrap();
    assert_eq!(e, VerifyError::OtherNetwork);
    let res = e.error_response();
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(
        res.headers().get(header::WWW_AUTHENTICATE).unwrap(),
        r#"Bearer error="invalid_token""#
    );
    // rv: Recall is told, with the address the verifier saw.
    let reports = recall
        .wait_reports(1, std::time::Duration::from_secs(5))
        .await;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].body["client_ip"], "198.51.100.7");
    assert_eq!(reports[0].body["token"], token.as_str());
}

#[tokio::test]
async fn no_binding_key_answers_503_with_retry_after() {
    let recall = FakeRecall::start(None, 204).await;
    let v = started(config(&[&recall.base])).await;
    let token = sign(&net_bound("203.0.113.5", false));
    let e = extract(
        request(&v)
            .peer_addr("203.0.113.5:1".parse().unwrap())
            .insert_header((header::AUTHORIZATION, format!("Bearer {token}"))),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(e, VerifyError::NoBindingKey);
    let res = e.error_response();
    assert_eq!(res.status().as_u16(), 503);
    assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "1");
    assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
}
