//! Bound tokens (issue 21) through `Verifier::authenticate_request`,
//! against a fake Recall: DPoP-bound tokens need the DPoP scheme and one
//! fresh proof of their key for this request, never seen before;
//! network-bound tokens need a client address in their session's network
//! and the binding key from the feed; a use from elsewhere with `rv` is
//! reported to Recall.

#![cfg(feature = "client")]

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use recall_verifier::dpop::DpopError;
use recall_verifier::{DpopHeader, DpopRefusal, Presented, VerifyError};

fn dpop<'a>(token: &'a str, proof: &'a str, htm: &'a str, uri: &'a str) -> Presented<'a> {
    Presented {
        token,
        dpop_scheme: true,
        proof: DpopHeader::One(proof),
        htm,
        uri,
        client_ip: Some(ip("203.0.113.5")),
    }
}

fn bearer(token: &str, client_ip: Option<IpAddr>) -> Presented<'_> {
    Presented {
        token,
        dpop_scheme: false,
        proof: DpopHeader::Absent,
        htm: "GET",
        uri: "/orders",
        client_ip,
    }
}

fn refused(reason: DpopRefusal) -> Result<(), VerifyError> {
    Err(VerifyError::Dpop(reason))
}

#[tokio::test]
async fn a_dpop_bound_token_passes_with_a_fresh_proof_of_its_key_once() {
    let recall = FakeRecall::with_key().await;
    let v = started(config(&[&recall.base])).await;
    let claims = dpop_bound(&CLIENT_SEED);
    let token = sign(&claims);
    let htu = format!("{PUBLIC_URL}/orders");
    let p = proof(&CLIENT_SEED, "GET", &htu, &token);

    // The query is not part of htu.
    let ok = v
        .authenticate_request(&dpop(&token, &p, "GET", "/orders?page=2"))
        .unwrap();
    assert_eq!((ok.user_id, ok.session_id), (claims.sub, claims.sid));
    assert_eq!(ok.verified.0.cnf, claims.cnf);

    // The same proof again: a replay.
    assert_eq!(
        v.authenticate_request(&dpop(&token, &p, "GET", "/orders"))
            .map(|_| ()),
        refused(DpopRefusal::Replayed)
    );
    // A new proof passes (and through the async path too).
    let again = proof(&CLIENT_SEED, "GET", &htu, &token);
    assert!(v
        .verify_request(&dpop(&token, &again, "GET", "/orders"))
        .await
        .is_ok());
    assert_eq!(v.counters().refusals.get("dpop_replayed"), 1);
    let metrics = v.metrics_text();
    assert!(
        metrics.contains("recall_verifier_refusals_total{reason=\"dpop_replayed\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("recall_verifier_dpop_proofs_remembered 2\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_proof_of_another_key_or_request_is_refused() {
    let recall = FakeRecall::with_key().await;
    let v = started(config(&[&recall.base])).await;
    let token = sign(&dpop_bound(&CLIENT_SEED));
    let other_token = sign(&dpop_bound(&CLIENT_SEED));
    let htu = format!("{PUBLIC_URL}/orders");
    let check = |p: &str, htm: &str, uri: &str| {
        v.authenticate_request(&dpop(&token, p, htm, uri))
            .map(|_| ())
    };

    // Another key (a thief's own): valid proof, wrong jkt.
    let thief = proof(&[4; 32], "GET", &htu, &token);
    assert_eq!(
        check(&thief, "GET", "/orders"),
        refused(DpopRefusal::WrongKey)
    );
    // Another method, another path, another host.
    let p = proof(&CLIENT_SEED, "GET", &htu, &token);
    assert_eq!(
        check(&p, "POST", "/orders"),
        refused(DpopRefusal::Invalid(DpopError::BadMethod))
    );
    assert_eq!(
        check(&p, "GET", "/orders/7"),
        refused(DpopRefusal::Invalid(DpopError::BadUri))
    );
    let elsewhere = proof(&CLIENT_SEED, "GET", "https://evil.example/orders", &token);
    assert_eq!(
        check(&elsewhere, "GET", "/orders"),
        refused(DpopRefusal::Invalid(DpopError::BadUri))
    );
    // A proof made for another token (its ath).
    let for_other = proof(&CLIENT_SEED, "GET", &htu, &other_token);
    assert_eq!(
        check(&for_other, "GET", "/orders"),
        refused(DpopRefusal::Invalid(DpopError::BadAth))
    );
    // An old proof.
    let old = recall_verifier::dpop::ed25519_proof(
        &CLIENT_SEED,
        "GET",
        &htu,
        now() - 120,
        "old",
        Some(&recall_verifier::dpop::ath(&token)),
        None,
    );
    assert_eq!(
        check(&old, "GET", "/orders"),
        refused(DpopRefusal::Invalid(DpopError::Stale))
    );
    // No DPoP header, or two.
    let mut none = dpop(&token, &p, "GET", "/orders");
    none.proof = DpopHeader::Absent;
    assert_eq!(
        v.authenticate_request(&none).map(|_| ()),
        refused(DpopRefusal::Missing)
    );
    none.proof = DpopHeader::Invalid;
    assert_eq!(
        v.authenticate_request(&none).map(|_| ()),
        refused(DpopRefusal::Several)
    );
    // None of these spent the good proof: it still passes once.
    assert_eq!(check(&p, "GET", "/orders"), Ok(()));
    assert_eq!(v.counters().refusals.get("dpop_wrong_key"), 1);
    assert_eq!(v.counters().refusals.get("dpop_bad_uri"), 2);
    let err = VerifyError::Dpop(DpopRefusal::WrongKey);
    assert_eq!((err.status(), err.code()), (401, "invalid_dpop_proof"));
}

#[tokio::test]
async fn schemes_must_fit_the_token() {
    let recall = FakeRecall::with_key().await;
    let v = started(config(&[&recall.base])).await;
    let bound = sign(&dpop_bound(&CLIENT_SEED));
    let plain = sign(&claims());
    let htu = format!("{PUBLIC_URL}/orders");

    // A DPoP-bound token as Bearer: refused, with or without a proof.
    assert_eq!(
        v.authenticate_request(&bearer(&bound, None)).map(|_| ()),
        refused(DpopRefusal::BoundAsBearer)
    );
    let p = proof(&CLIENT_SEED, "GET", &htu, &bound);
    let mut with_proof = dpop(&bound, &p, "GET", "/orders");
    with_proof.dpop_scheme = false;
    assert_eq!(
        v.authenticate_request(&with_proof).map(|_| ()),
        refused(DpopRefusal::BoundAsBearer)
    );
    // `authenticate` (the token alone) refuses bound tokens of both kinds.
    assert_eq!(
        v.authenticate(&bound).map(|_| ()),
        refused(DpopRefusal::BoundAsBearer)
    );
    let net = sign(&net_bound("203.0.113.5", false));
    assert_eq!(
        v.authenticate(&net).map(|_| ()),
        Err(VerifyError::NeedsRequest)
    );
    assert_eq!(
        v.verify_header(Some(&format!("Bearer {bound}")))
            .await
            .map(|_| ()),
        refused(DpopRefusal::BoundAsBearer)
    );
    // The DPoP scheme with an unbound token.
    let p = proof(&CLIENT_SEED, "GET", &htu, &plain);
    assert_eq!(
        v.authenticate_request(&dpop(&plain, &p, "GET", "/orders"))
            .map(|_| ()),
        refused(DpopRefusal::NotBound)
    );
    // An unbound token as Bearer passes both ways.
    assert!(v.authenticate(&plain).is_ok());
    assert!(v.authenticate_request(&bearer(&plain, None)).is_ok());
    // Forged and revoked-looking tokens still fail as tokens first.
    assert!(matches!(
        v.authenticate_request(&bearer("a.b.c", None)),
        Err(VerifyError::Token(_))
    ));
}

#[tokio::test]
async fn without_a_public_url_dpop_needs_an_absolute_uri() {
    let recall = FakeRecall::with_key().await;
    let mut cfg = config(&[&recall.base]);
    cfg.public_url = None;
    let v = started(cfg).await;
    let token = sign(&dpop_bound(&CLIENT_SEED));
    let htu = format!("{PUBLIC_URL}/orders");
    let p = proof(&CLIENT_SEED, "GET", &htu, &token);
    // A path: nothing to resolve it against (no guess from Host).
    assert_eq!(
        v.authenticate_request(&dpop(&token, &p, "GET", "/orders"))
            .map(|_| ()),
        refused(DpopRefusal::NoPublicUrl)
    );
    // An absolute URI (forward auth's X-Original-URI) is used as it is.
    assert!(v
        .authenticate_request(&dpop(&token, &p, "GET", &format!("{htu}?q=1")))
        .is_ok());
    // Unbound tokens need no public URL.
    assert!(v
        .authenticate_request(&bearer(&sign(&claims()), None))
        .is_ok());
}

#[tokio::test]
async fn a_network_bound_token_passes_from_its_network_only() {
    let recall = FakeRecall::with_key().await;
    let v = started(config(&[&recall.base])).await;
    assert!(v.has_binding_key());
    let claims = net_bound("203.0.113.5", false);
    let token = sign(&claims);
    for inside in ["203.0.113.5", "203.0.113.250", "::ffff:203.0.113.9"] {
        let ok = v.authenticate_request(&bearer(&token, Some(ip(inside))));
        assert_eq!(ok.map(|p| p.session_id), Ok(claims.sid), "{inside}");
    }
    for outside in ["203.0.114.5", "198.51.100.1", "2001:db8::1"] {
        assert_eq!(
            v.authenticate_request(&bearer(&token, Some(ip(outside))))
                .map(|_| ()),
            Err(VerifyError::OtherNetwork),
            "{outside}"
        );
    }
    // No client address known: refused.
    assert_eq!(
        v.authenticate_request(&bearer(&token, None)).map(|_| ()),
        Err(VerifyError::OtherNetwork)
    );
    // Another session's digest from the same network does not fit this one.
    let mut stolen_digest = net_bound("203.0.113.5", false);
    stolen_digest.net = claims.net.clone();
    assert_eq!(
        v.authenticate_request(&bearer(&sign(&stolen_digest), Some(ip("203.0.113.5"))))
            .map(|_| ()),
        Err(VerifyError::OtherNetwork)
    );
    let e = VerifyError::OtherNetwork;
    assert_eq!((e.status(), e.code()), (401, "invalid_token"));
    assert_eq!(e.to_string(), "token used from another network");
    // rv is false: nothing reported.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(recall.reports().is_empty());
    assert_eq!(v.counters().refusals.get("other_network"), 5);
}

#[tokio::test]
async fn both_bindings_at_once() {
    let recall = FakeRecall::with_key().await;
    let v = started(config(&[&recall.base])).await;
    let mut claims = dpop_bound(&CLIENT_SEED);
    claims.net = Some(net(claims.sid, "203.0.113.5", false));
    let token = sign(&claims);
    let htu = format!("{PUBLIC_URL}/orders");
    let p = proof(&CLIENT_SEED, "GET", &htu, &token);
    let mut req = dpop(&token, &p, "GET", "/orders");
    req.client_ip = Some(ip("198.51.100.1"));
    // The network is checked first: the proof is not spent.
    assert_eq!(
        v.authenticate_request(&req).map(|_| ()),
        Err(VerifyError::OtherNetwork)
    );
    req.client_ip = Some(ip("203.0.113.77"));
    assert!(v.authenticate_request(&req).is_ok());
}

#[tokio::test]
async fn no_binding_key_fails_closed_for_network_bound_tokens_only() {
    let recall = FakeRecall::start(None, 204).await;
    let v = started(config(&[&recall.base])).await;
    assert!(!v.has_binding_key());
    let token = sign(&net_bound("203.0.113.5", true));
    let e = v
        .authenticate_request(&bearer(&token, Some(ip("203.0.113.5"))))
        .unwrap_err();
    assert_eq!(e, VerifyError::NoBindingKey);
    assert_eq!(
        (e.status(), e.code(), e.retry_after()),
        (503, "unavailable", Some("1"))
    );
    // Not even from elsewhere is anything reported without the key.
    assert_eq!(
        v.authenticate_request(&bearer(&token, Some(ip("198.51.100.1"))))
            .map(|_| ()),
        Err(VerifyError::NoBindingKey)
    );
    // Unbound and DPoP-bound tokens need no binding key.
    assert!(v
        .authenticate_request(&bearer(&sign(&claims()), None))
        .is_ok());
    let dpop_token = sign(&dpop_bound(&CLIENT_SEED));
    let p = proof(
        &CLIENT_SEED,
        "GET",
        &format!("{PUBLIC_URL}/orders"),
        &dpop_token,
    );
    assert!(v
        .authenticate_request(&dpop(&dpop_token, &p, "GET", "/orders"))
        .is_ok());
    assert_eq!(v.counters().refusals.get("no_binding_key"), 2);
    assert!(v.metrics_text().contains("recall_verifier_binding_key 0\n"));

    // Recall starts sending one: the async path fetches it on demand.
    recall.set_binding_key(Some(binding_key_b64()));
    let ok = v
        .verify_request(&bearer(&token, Some(ip("203.0.113.5"))))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    assert!(v.has_binding_key());
    assert!(v.metrics_text().contains("recall_verifier_binding_key 1\n"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(recall.reports().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_from_elsewhere_with_rv_is_reported_to_recall_once() {
    let recall = FakeRecall::with_key().await;
    let v = started(config(&[&recall.base])).await;
    let token = sign(&net_bound("203.0.113.5", true));
    let from = bearer(&token, Some(ip("198.51.100.23")));
    // Recall is slow to answer: the refusal does not wait for it.
    recall.set_mismatch_delay(Duration::from_secs(3));
    let started_at = std::time::Instant::now();
    assert_eq!(
        v.authenticate_request(&from).map(|_| ()),
        Err(VerifyError::OtherNetwork)
    );
    assert!(started_at.elapsed() < Duration::from_secs(1));
    let reports = recall.wait_reports(1, Duration::from_secs(5)).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    assert_eq!(
        r.authorization.as_deref(),
        Some(&*format!("Bearer {SERVICE_TOKEN}"))
    );
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        r.body,
        serde_json::json!({ "token": token, "client_ip": "198.51.100.23" })
    );
    // Again at once: refused, not reported a second time.
    assert_eq!(
        v.authenticate_request(&from).map(|_| ()),
        Err(VerifyError::OtherNetwork)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recall.reports().len(), 1);
    // Counted as sent once Recall answered.
    let c = v.counters();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while c
        .mismatch_reports_sent
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
        && tokio::time::Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        (
            load(&c.mismatch_reports_sent),
            load(&c.mismatch_reports_skipped)
        ),
        (1, 1)
    );
    // From its own network it still passes (Recall's revocation comes
    // through the feed, not from here).
    assert!(v
        .authenticate_request(&bearer(&token, Some(ip("203.0.113.5"))))
        .is_ok());
}

#[tokio::test]
async fn a_failed_report_is_tried_once_more_on_another_upstream() {
    let down = FakeRecall::start(Some(binding_key_b64()), 503).await;
    let up = FakeRecall::with_key().await;
    let v = started(config(&[&down.base, &up.base])).await;
    let token = sign(&net_bound("203.0.113.5", true));
    assert_eq!(
        v.authenticate_request(&bearer(&token, Some(ip("198.51.100.1"))))
            .map(|_| ()),
        Err(VerifyError::OtherNetwork)
    );
    let got = up.wait_reports(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        down.reports().len(),
        1,
        "the followed upstream was tried first"
    );
    assert_eq!(got[0].body["client_ip"], "198.51.100.1");

    // Both refuse (503): counted as failed, and reported again next time.
    let both_down = [
        FakeRecall::start(Some(binding_key_b64()), 503).await,
        FakeRecall::start(Some(binding_key_b64()), 500).await,
    ];
    let v = started(config(&[&both_down[0].base, &both_down[1].base])).await;
    let from = bearer(&token, Some(ip("198.51.100.1")));
    let _ = v.authenticate_request(&from);
    let failed = || {
        v.counters()
            .mismatch_reports_failed
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while failed() == 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(failed(), 1);
    assert_eq!(
        both_down[0].reports().len() + both_down[1].reports().len(),
        2
    );
    let _ = v.authenticate_request(&from);
    let total = || both_down[0].reports().len() + both_down[1].reports().len();
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while total() < 4 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(total(), 4, "a failed report does not silence the next one");
}

#[test]
fn a_report_outside_a_runtime_goes_out_on_its_own_thread() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (recall, v) = rt.block_on(async {
        let recall = FakeRecall::with_key().await;
        let v = started(config(&[&recall.base])).await;
        (recall, v)
    });
    let token = sign(&net_bound("203.0.113.5", true));
    // Called from a plain thread, no runtime around.
    let refused = std::thread::scope(|s| {
        s.spawn(|| v.authenticate_request(&bearer(&token, Some(ip("198.51.100.1")))))
            .join()
            .unwrap()
    });
    assert_eq!(refused.map(|_| ()), Err(VerifyError::OtherNetwork));
    let got = rt.block_on(recall.wait_reports(1, Duration::from_secs(5)));
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn the_client_address_follows_trusted_proxies() {
    let recall = FakeRecall::with_key().await;
    let mut cfg = config(&[&recall.base]);
    cfg.trusted_proxies =
        recall_verifier::request::parse_trusted_proxies("127.0.0.0/8,::1,10.0.0.0/8").unwrap();
    let v = started(cfg).await;
    let lo = Some(ip("127.0.0.1"));
    // A trusted peer: the rightmost untrusted entry (the left is forged).
    assert_eq!(
        v.client_addr(lo, &["203.0.113.5, 198.51.100.7, 10.1.1.1"]),
        Some(ip("198.51.100.7"))
    );
    assert_eq!(
        v.client_addr(lo, &["6.6.6.6", "203.0.113.5"]),
        Some(ip("203.0.113.5"))
    );
    assert_eq!(v.client_addr(lo, &[]), lo);
    assert_eq!(v.client_addr(lo, &["garbage"]), lo);
    // An untrusted peer: its header is ignored.
    assert_eq!(
        v.client_addr(Some(ip("198.51.100.9")), &["203.0.113.5"]),
        Some(ip("198.51.100.9"))
    );
    assert_eq!(v.client_addr(None, &["203.0.113.5"]), None);

    // End to end with a network-bound token: a forged left entry does not
    // help a client from elsewhere, the proxy's appended one decides.
    let token = sign(&net_bound("203.0.113.5", false));
    let via = |peer: &str, xff: &[&str]| {
        let client_ip = v.client_addr(Some(ip(peer)), xff);
        v.authenticate_request(&bearer(&token, client_ip))
            .map(|_| ())
    };
    assert_eq!(via("127.0.0.1", &["198.51.100.7, 203.0.113.9"]), Ok(()));
    assert_eq!(
        via("127.0.0.1", &["203.0.113.9, 198.51.100.7"]),
        Err(VerifyError::OtherNetwork)
    );
    assert_eq!(
        via("198.51.100.2", &["203.0.113.9"]),
        Err(VerifyError::OtherNetwork)
    );
}
