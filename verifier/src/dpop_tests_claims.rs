//! Tests of the claims of DPoP proofs: `htm`, `htu` (and its
//! normalization as a proof sees it), `iat` against the window, required
//! and well-typed claims, and `ath` when a token is presented. Imports the
//! helpers of `dpop_tests.rs` and anything of `dpop`.

use super::*;

#[test]
fn htm_mismatch_is_refused() {
    for htm in ["POST", "get", "GET "] {
        let proof = ed(ed_header(), with(claims(), "htm", htm.into()));
        assert_eq!(
            verify_proof(&proof, &expect()),
            Err(DpopError::BadMethod),
            "{htm}"
        );
    }
}

#[test]
fn htu_mismatch_is_refused() {
    for htu in [
        "https://api.example.com/v1/other",
        "https://api.example.com/v1/things/",
        "https://api.example.com/V1/things",
        "https://evil.example.com/v1/things",
        "http://api.example.com/v1/things",
        "https://api.example.com:8443/v1/things",
        "api.example.com/v1/things",
        "/v1/things",
        "https://user@api.example.com/v1/things",
    ] {
        let proof = ed(ed_header(), with(claims(), "htu", htu.into()));
        assert_eq!(
            verify_proof(&proof, &expect()),
            Err(DpopError::BadUri),
            "{htu}"
        );
    }
    // The server's own URI not being absolute refuses too.
    let proof = ed(ed_header(), claims());
    let expect = Expect {
        htu: "/v1/things",
        ..expect()
    };
    assert_eq!(verify_proof(&proof, &expect), Err(DpopError::BadUri));
}

#[test]
fn htu_with_query_or_fragment_matches() {
    for (sent, seen) in [
        ("https://api.example.com/v1/things?a=1", HTU),
        ("https://api.example.com/v1/things#frag", HTU),
        (HTU, "https://api.example.com/v1/things?b=2#x"),
        (
            "https://API.Example.com:443/v1/things?x",
            "HTTPS://api.example.com/v1/things",
        ),
        ("https://api.example.com/v1/./x/../things", HTU),
        ("https://api.example.com/v1/%74hings", HTU),
    ] {
        let proof = ed(ed_header(), with(claims(), "htu", sent.into()));
        let expect = Expect {
            htu: seen,
            ..expect()
        };
        assert!(verify_proof(&proof, &expect).is_ok(), "{sent} vs {seen}");
    }
}

#[test]
fn iat_outside_window_is_refused() {
    for (iat, ok) in [
        (NOW - PROOF_WINDOW_SECS, true),
        (NOW + PROOF_WINDOW_SECS, true),
        (NOW - PROOF_WINDOW_SECS - 1, false),
        (NOW + PROOF_WINDOW_SECS + 1, false),
        (0, false),
        (i64::MIN, false),
        (i64::MAX, false),
    ] {
        let proof = ed(ed_header(), with(claims(), "iat", iat.into()));
        let got = verify_proof(&proof, &expect());
        if ok {
            assert_eq!(got.map(|p| p.iat), Ok(iat));
        } else {
            assert_eq!(got, Err(DpopError::Stale), "{iat}");
        }
    }
    for iat in [
        json!(1.8e9),
        json!("1800000000"),
        json!(u64::MAX),
        json!(null),
    ] {
        let proof = ed(ed_header(), with(claims(), "iat", iat));
        assert_eq!(verify_proof(&proof, &expect()), Err(DpopError::BadClaim));
    }
}

#[test]
fn missing_claims_are_refused() {
    for name in ["jti", "htm", "htu", "iat"] {
        let proof = ed(ed_header(), without(claims(), name));
        assert_eq!(
            verify_proof(&proof, &expect()),
            Err(DpopError::MissingClaim),
            "{name}"
        );
    }
    for jti in [json!(""), json!(12), json!("x".repeat(MAX_JTI_CHARS + 1))] {
        let proof = ed(ed_header(), with(claims(), "jti", jti));
        assert_eq!(verify_proof(&proof, &expect()), Err(DpopError::BadClaim));
    }
    let proof = ed(
        ed_header(),
        with(claims(), "jti", "é".repeat(MAX_JTI_CHARS).into()),
    );
    assert!(verify_proof(&proof, &expect()).is_ok());
    let proof = ed(ed_header(), with(claims(), "nonce", 5.into()));
    assert_eq!(verify_proof(&proof, &expect()), Err(DpopError::BadClaim));
}

#[test]
fn ath_is_required_and_checked_when_a_token_is_presented() {
    let token = "the-access-token";
    let expect = Expect {
        access_token: Some(token),
        ..expect()
    };
    let proof = ed(ed_header(), claims());
    assert_eq!(verify_proof(&proof, &expect), Err(DpopError::MissingAth));
    for wrong in [
        ath("another-token"),
        ath(token).to_uppercase(),
        format!("{}=", ath(token)),
    ] {
        let proof = ed(ed_header(), with(claims(), "ath", wrong.into()));
        assert_eq!(verify_proof(&proof, &expect), Err(DpopError::BadAth));
    }
    let proof = ed(ed_header(), with(claims(), "ath", 1.into()));
    assert_eq!(verify_proof(&proof, &expect), Err(DpopError::BadClaim));
    let proof = ed(ed_header(), with(claims(), "ath", ath(token).into()));
    assert!(verify_proof(&proof, &expect).is_ok());
    // With no token presented, an ath is ignored.
    assert!(verify_proof(&proof, &super::expect()).is_ok());
}
