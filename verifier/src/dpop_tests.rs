//! Tests of `dpop`: every check of RFC 9449 section 4.3, the replay
//! cache, and random mutations of valid proofs.

use super::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

const NOW: i64 = 1_800_000_000;
const SEED: [u8; 32] = [7; 32];
const HTU: &str = "https://api.example.com/v1/things";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn expect() -> Expect<'static> {
    Expect {
        htm: "GET",
        htu: HTU,
        access_token: None,
        now: NOW,
    }
}

fn ed_jwk(seed: &[u8; 32]) -> Value {
    let key = SigningKey::from_bytes(seed);
    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.verifying_key().as_bytes())})
}

fn ed_header() -> Value {
    json!({"typ": DPOP_TYP, "alg": "EdDSA", "jwk": ed_jwk(&SEED)})
}

fn claims() -> Value {
    json!({"jti": "j-1", "htm": "GET", "htu": HTU, "iat": NOW})
}

/// A proof of any header and claims, signed with the Ed25519 `seed`.
fn ed_signed(header: &Value, claims: &Value, seed: &[u8; 32]) -> String {
    let signed = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let signature = SigningKey::from_bytes(seed).sign(signed.as_bytes());
    format!("{signed}.{}", b64(signature.to_bytes()))
}

fn ed(header: Value, claims: Value) -> String {
    ed_signed(&header, &claims, &SEED)
}

fn with(mut value: Value, name: &str, member: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.insert(name.into(), member);
    }
    value
}

fn without(mut value: Value, name: &str) -> Value {
    if let Value::Object(map) = &mut value {
        map.remove(name);
    }
    value
}

struct Es256 {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Es256 {
    fn new() -> Es256 {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("gen");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("pkcs8");
        Es256 { key, rng }
    }

    fn jwk(&self) -> Value {
        let point = self.key.public_key().as_ref();
        assert_eq!((point.len(), point[0]), (65, 4));
        json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])})
    }

    fn proof(&self, claims: &Value) -> String {
        let header = json!({"typ": DPOP_TYP, "alg": "ES256", "jwk": self.jwk()});
        let signed = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature = self.key.sign(&self.rng, signed.as_bytes()).expect("sign");
        format!("{signed}.{}", b64(signature.as_ref()))
    }
}

#[test]
fn valid_eddsa_proof_passes_with_its_jkt() {
    let proof = ed25519_proof(&SEED, "GET", HTU, NOW, "j-1", None, Some("n-1"));
    let got = verify_proof(&proof, &expect()).expect("valid");
    assert_eq!(
        got,
        Proof {
            jkt: ed25519_jkt(&SEED),
            jti: "j-1".into(),
            iat: NOW,
            nonce: Some("n-1".into()),
        }
    );
    assert_eq!(got.jkt, jwk_thumbprint(&ed_jwk(&SEED)).expect("thumbprint"));
    assert_ne!(got.jkt, ed25519_jkt(&[8; 32]));
    // With an access token and its ath.
    let token = "eyJ.access.token";
    let proof = ed25519_proof(&SEED, "POST", HTU, NOW, "j-2", Some(&ath(token)), None);
    let expect = Expect {
        htm: "POST",
        access_token: Some(token),
        ..expect()
    };
    assert_eq!(verify_proof(&proof, &expect).map(|p| p.nonce), Ok(None));
}

#[test]
fn valid_es256_proof_passes_with_its_jkt() {
    let key = Es256::new();
    let got = verify_proof(&key.proof(&claims()), &expect()).expect("valid");
    assert_eq!(got.jkt, jwk_thumbprint(&key.jwk()).expect("thumbprint"));
    assert_eq!((got.jti.as_str(), got.iat, got.nonce), ("j-1", NOW, None));
    // Another key's signature.
    let other = Es256::new();
    let forged = key.proof(&claims());
    let theirs = other.proof(&claims());
    let forged = format!(
        "{}.{}",
        forged.rsplit_once('.').expect("dot").0,
        theirs.rsplit_once('.').expect("dot").1
    );
    assert_eq!(
        verify_proof(&forged, &expect()),
        Err(DpopError::BadSignature)
    );
    // A point off the curve.
    let mut jwk = key.jwk();
    let mut y = URL_SAFE_NO_PAD
        .decode(jwk["y"].as_str().expect("y"))
        .expect("b64");
    y[31] ^= 1;
    jwk["y"] = b64(&y).into();
    let header = json!({"typ": DPOP_TYP, "alg": "ES256", "jwk": jwk});
    let proof = format!(
        "{}.{}",
        b64(header.to_string()),
        key.proof(&claims()).split_once('.').expect("dot").1
    );
    assert_eq!(verify_proof(&proof, &expect()), Err(DpopError::BadKey));
    // A DER signature, or a truncated one.
    let proof = key.proof(&claims());
    let (signed, _) = proof.rsplit_once('.').expect("dot");
    let short = format!("{signed}.{}", b64([1u8; 63]));
    assert_eq!(
        verify_proof(&short, &expect()),
        Err(DpopError::BadSignature)
    );
}

#[test]
fn okp_thumbprint_matches_rfc_8037() {
    let jwk = json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    });
    assert_eq!(
        jwk_thumbprint(&jwk),
        Ok("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k".into())
    );
    // RFC 8037 A.1's seed gives that key.
    let seed: [u8; 32] = URL_SAFE_NO_PAD
        .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
        .expect("b64")
        .try_into()
        .expect("32 bytes");
    assert_eq!(
        ed25519_jkt(&seed),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
    assert_eq!(
        jwk_thumbprint(&json!({"kty": "RSA", "n": "x", "e": "AQAB"})),
        Err(DpopError::BadKey)
    );
    assert_eq!(
        jwk_thumbprint(&json!({"kty": "EC", "crv": "P-256", "x": "x"})),
        Err(DpopError::BadKey)
    );
    assert_eq!(jwk_thumbprint(&json!("OKP")), Err(DpopError::BadKey));
}

#[test]
fn ath_is_base64url_sha256() {
    // SHA-256("abc"), RFC 6234 / FIPS 180-2.
    assert_eq!(ath("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
}

#[test]
fn alg_none_is_refused() {
    let header = with(ed_header(), "alg", "none".into());
    let signed = format!("{}.{}.", b64(header.to_string()), b64(claims().to_string()));
    assert_eq!(
        verify_proof(&signed, &expect()),
        Err(DpopError::BadAlgorithm)
    );
    assert_eq!(
        verify_proof(&ed(header, claims()), &expect()),
        Err(DpopError::BadAlgorithm)
    );
}

#[test]
fn alg_hs256_is_refused() {
    let header =
        json!({"typ": DPOP_TYP, "alg": "HS256", "jwk": {"kty": "oct", "k": b64(b"secret")}});
    assert_eq!(
        verify_proof(&ed(header, claims()), &expect()),
        Err(DpopError::BadAlgorithm)
    );
    for alg in [
        json!("RS256"),
        json!("eddsa"),
        json!(null),
        json!(["EdDSA"]),
    ] {
        let header = with(ed_header(), "alg", alg);
        assert_eq!(
            verify_proof(&ed(header, claims()), &expect()),
            Err(DpopError::BadAlgorithm)
        );
    }
    let header = without(ed_header(), "alg");
    assert_eq!(
        verify_proof(&ed(header, claims()), &expect()),
        Err(DpopError::BadAlgorithm)
    );
}

#[test]
fn wrong_typ_is_refused() {
    for typ in ["JWT", "at+jwt", "DPoP+JWT", "application/dpop+jwt", ""] {
        let header = with(ed_header(), "typ", typ.into());
        assert_eq!(
            verify_proof(&ed(header, claims()), &expect()),
            Err(DpopError::BadType)
        );
    }
}

#[test]
fn missing_typ_is_refused() {
    let header = without(ed_header(), "typ");
    assert_eq!(
        verify_proof(&ed(header, claims()), &expect()),
        Err(DpopError::BadType)
    );
}

#[test]
fn missing_jwk_is_refused() {
    let header = without(ed_header(), "jwk");
    assert_eq!(
        verify_proof(&ed(header, claims()), &expect()),
        Err(DpopError::MissingJwk)
    );
    let header = with(ed_header(), "jwk", "x".into());
    assert_eq!(
        verify_proof(&ed(header, claims()), &expect()),
        Err(DpopError::BadKey)
    );
}

#[test]
fn jwk_with_private_members_is_refused() {
    for member in PRIVATE_MEMBERS {
        let jwk = with(ed_jwk(&SEED), member, b64(SEED).into());
        let header = with(ed_header(), "jwk", jwk);
        assert_eq!(
            verify_proof(&ed(header, claims()), &expect()),
            Err(DpopError::PrivateKey)
        );
    }
}

#[test]
fn wrong_crv_or_kty_is_refused() {
    for (name, value) in [
        ("crv", "X25519"),
        ("crv", "Ed448"),
        ("crv", "P-256"),
        ("kty", "EC"),
        ("kty", "oct"),
        ("alg", "ES256"),
    ] {
        let jwk = with(ed_jwk(&SEED), name, value.into());
        let header = with(ed_header(), "jwk", jwk);
        assert_eq!(
            verify_proof(&ed(header, claims()), &expect()),
            Err(DpopError::BadKey),
            "{name}"
        );
    }
    // An Ed25519 key under ES256, and a P-256 key under EdDSA.
    let header = with(ed_header(), "alg", "ES256".into());
    assert_eq!(
        verify_proof(&ed(header, claims()), &expect()),
        Err(DpopError::BadKey)
    );
    let header = with(ed_header(), "jwk", Es256::new().jwk());
    assert_eq!(
        verify_proof(&ed(header, claims()), &expect()),
        Err(DpopError::BadKey)
    );
    // An `alg` in the jwk that agrees is fine.
    let jwk = with(ed_jwk(&SEED), "alg", "EdDSA".into());
    let header = with(ed_header(), "jwk", jwk);
    assert!(verify_proof(&ed(header, claims()), &expect()).is_ok());
}

#[test]
fn x_of_wrong_length_or_weak_is_refused() {
    let x = SigningKey::from_bytes(&SEED).verifying_key().to_bytes();
    let mut long = x.to_vec();
    long.push(0);
    let padded = format!("{}=", b64(x));
    let identity = {
        let mut id = [0u8; 32];
        id[0] = 1;
        id
    };
    // y = p + 1 (2^255 - 18), a non-canonical encoding of the identity.
    let mut non_canonical = [0xffu8; 32];
    non_canonical[0] = 0xee;
    non_canonical[31] = 0x7f;
    for bad in [
        b64(&x[..31]),
        b64(&long),
        String::new(),
        padded,
        "!!!".into(),
        b64(identity),
        b64([0u8; 32]),
        b64(non_canonical),
    ] {
        let jwk = with(ed_jwk(&SEED), "x", bad.clone().into());
        let header = with(ed_header(), "jwk", jwk);
        assert_eq!(
            verify_proof(&ed(header, claims()), &expect()),
            Err(DpopError::BadKey),
            "{bad}"
        );
    }
    let jwk = with(ed_jwk(&SEED), "x", 12.into());
    let header = with(ed_header(), "jwk", jwk);
    assert_eq!(
        verify_proof(&ed(header, claims()), &expect()),
        Err(DpopError::BadKey)
    );
    // ES256 coordinates of the wrong length.
    let key = Es256::new();
    let jwk = with(key.jwk(), "y", b64([1u8; 31]).into());
    let header = json!({"typ": DPOP_TYP, "alg": "ES256", "jwk": jwk});
    assert_eq!(
        verify_proof(&ed(header, claims()), &expect()),
        Err(DpopError::BadKey)
    );
}

#[test]
fn non_canonical_ed25519_keys_are_refused() {
    // y + p for small y (< 19) still fits in 255 bits: a second encoding
    // of the point with that y, if there is one.
    let mut found = 0;
    for y in 2u8..19 {
        let mut canonical = [0u8; 32];
        canonical[0] = y;
        // p = 2^255 - 19: little-endian ed ff .. ff 7f.
        let mut shifted = [0xffu8; 32];
        shifted[0] = 0xed + y;
        shifted[31] = 0x7f;
        let Ok(key) = VerifyingKey::from_bytes(&canonical) else {
            continue;
        };
        if key.is_weak() {
            continue;
        }
        assert!(VerifyingKey::from_bytes(&shifted).is_ok(), "{y}");
        let jwk = |x: [u8; 32]| json!({"kty": "OKP", "crv": "Ed25519", "x": b64(x)});
        assert!(PublicKey::from_jwk(Alg::EdDsa, &jwk(canonical)).is_ok());
        assert!(matches!(
            PublicKey::from_jwk(Alg::EdDsa, &jwk(shifted)),
            Err(DpopError::BadKey)
        ));
        found += 1;
    }
    assert!(found > 0);
}

#[test]
fn flipped_signature_byte_is_refused() {
    let proof = ed(ed_header(), claims());
    let (signed, signature) = proof.rsplit_once('.').expect("dot");
    let mut signature = URL_SAFE_NO_PAD.decode(signature).expect("b64");
    for at in [0, 31, 32, 63] {
        signature[at] ^= 0x01;
        let bad = format!("{signed}.{}", b64(&signature));
        assert_eq!(verify_proof(&bad, &expect()), Err(DpopError::BadSignature));
        signature[at] ^= 0x01;
    }
    // A flipped byte of the signed part too.
    let bad = ed(ed_header(), claims()).replacen("eyJ", "eyK", 1);
    assert!(verify_proof(&bad, &expect()).is_err());
}

#[test]
fn signature_of_another_key_is_refused() {
    // The header names SEED's key, the signature is another's.
    let proof = ed_signed(&ed_header(), &claims(), &[9; 32]);
    assert_eq!(
        verify_proof(&proof, &expect()),
        Err(DpopError::BadSignature)
    );
}

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
fn normalize_htu_cases() {
    let n = |s: &str| normalize_htu(s);
    assert_eq!(
        n("HTTPS://Example.COM:443/A/b?q#f").as_deref(),
        Some("https://example.com/A/b")
    );
    assert_eq!(
        n("http://example.com:80").as_deref(),
        Some("http://example.com/")
    );
    assert_eq!(
        n("http://example.com:").as_deref(),
        Some("http://example.com/")
    );
    assert_eq!(
        n("http://example.com:443/").as_deref(),
        Some("http://example.com:443/")
    );
    assert_eq!(
        n("https://example.com:08443/").as_deref(),
        Some("https://example.com:8443/")
    );
    assert_eq!(
        n("https://[::1]:8443/x").as_deref(),
        Some("https://[::1]:8443/x")
    );
    assert_eq!(n("https://[::1]/x").as_deref(), Some("https://[::1]/x"));
    assert_eq!(n("https://[::1/x"), None);
    assert_eq!(
        n("https://e.com/a%2fb%7e").as_deref(),
        Some("https://e.com/a%2Fb~")
    );
    assert_eq!(
        n("https://e.com/a/b/../../..").as_deref(),
        Some("https://e.com/")
    );
    assert_eq!(n("https://e.com/a/.").as_deref(), Some("https://e.com/a/"));
    assert_eq!(
        n("https://e.com/a//b").as_deref(),
        Some("https://e.com/a//b")
    );
    assert_eq!(n("https://e.com?x").as_deref(), Some("https://e.com/"));
    for bad in [
        "",
        "https://",
        "https:///x",
        "ftp://e.com/",
        "https:e.com/",
        "https://e.com:99999/",
        "https://e.com:+1/",
        "https://e.com:a/",
        "https://u:p@e.com/",
        "https://e.com/a b",
        "https://e.com/%zz",
        "https://e.com/%4",
        "https://e.com/é",
        "https://e.com\\@evil.com/",
    ] {
        assert_eq!(n(bad), None, "{bad}");
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
    assert!(verify_proof(&proof, &super::tests::expect()).is_ok());
}

#[test]
fn truncated_or_malformed_proofs_are_refused() {
    let proof = ed(ed_header(), claims());
    for cut in [0, 1, 10, proof.len() / 2, proof.len() - 1] {
        assert!(verify_proof(&proof[..cut], &expect()).is_err(), "{cut}");
    }
    let (signed, _) = proof.rsplit_once('.').expect("dot");
    assert_eq!(verify_proof(signed, &expect()), Err(DpopError::Malformed));
    assert_eq!(
        verify_proof(&format!("{proof}."), &expect()),
        Err(DpopError::Malformed)
    );
    assert_eq!(verify_proof("", &expect()), Err(DpopError::Malformed));
    assert_eq!(verify_proof("..", &expect()), Err(DpopError::Malformed));
    let long = "a".repeat(MAX_PROOF_LEN + 1);
    assert_eq!(verify_proof(&long, &expect()), Err(DpopError::TooLong));
}

#[test]
fn non_json_header_is_refused() {
    let rest = ed(ed_header(), claims());
    let rest = rest.split_once('.').expect("dot").1;
    for header in [
        b64("not json"),
        b64("[1,2]"),
        b64("\"dpop+jwt\""),
        "!!".into(),
    ] {
        let proof = format!("{header}.{rest}");
        assert_eq!(verify_proof(&proof, &expect()), Err(DpopError::Malformed));
    }
    // Non-JSON claims behind a good signature.
    let header = b64(ed_header().to_string());
    let signed = format!("{header}.{}", b64("nope"));
    let signature = SigningKey::from_bytes(&SEED).sign(signed.as_bytes());
    let proof = format!("{signed}.{}", b64(signature.to_bytes()));
    assert_eq!(verify_proof(&proof, &expect()), Err(DpopError::Malformed));
}

#[test]
fn crit_header_is_refused() {
    for crit in [json!(["exp"]), json!([]), json!(null)] {
        let header = with(ed_header(), "crit", crit);
        assert_eq!(
            verify_proof(&ed(header, claims()), &expect()),
            Err(DpopError::Critical)
        );
    }
}

#[test]
fn every_error_has_a_reason() {
    let all = [
        DpopError::TooLong,
        DpopError::Malformed,
        DpopError::BadType,
        DpopError::BadAlgorithm,
        DpopError::Critical,
        DpopError::MissingJwk,
        DpopError::BadKey,
        DpopError::PrivateKey,
        DpopError::BadSignature,
        DpopError::MissingClaim,
        DpopError::BadClaim,
        DpopError::BadMethod,
        DpopError::BadUri,
        DpopError::Stale,
        DpopError::MissingAth,
        DpopError::BadAth,
    ];
    let reasons: std::collections::HashSet<_> = all.iter().map(DpopError::reason).collect();
    assert_eq!(reasons.len(), all.len());
    assert!(all.iter().all(|e| !e.to_string().is_empty()));
}

#[test]
fn replay_cache_refuses_a_repeat() {
    let cache = ReplayCache::new(10);
    assert!(cache.is_empty());
    assert!(cache.first_use("jkt-a", "j-1", NOW, NOW));
    assert!(!cache.first_use("jkt-a", "j-1", NOW, NOW + 1));
    // Another jkt with the same jti, and another jti.
    assert!(cache.first_use("jkt-b", "j-1", NOW, NOW));
    assert!(cache.first_use("jkt-a", "j-2", NOW, NOW));
    // Pairs that concatenate alike stay apart.
    assert!(cache.first_use("jkt-a", "bj-1", NOW, NOW));
    assert!(cache.first_use("jkt-ab", "j-1", NOW, NOW));
    assert_eq!(cache.len(), 5);
}

#[test]
fn replay_cache_forgets_after_the_window() {
    let cache = ReplayCache::new(10);
    assert!(cache.first_use("jkt", "j-1", NOW, NOW));
    // Kept through iat + window, when the proof still verifies.
    assert!(!cache.first_use("jkt", "j-1", NOW, NOW + PROOF_WINDOW_SECS));
    assert!(cache.first_use("jkt", "j-2", NOW, NOW + PROOF_WINDOW_SECS));
    assert_eq!(cache.len(), 2);
    // Past it, both are evicted; the proof itself is stale by then.
    assert!(cache.first_use("jkt", "j-3", NOW + 61, NOW + PROOF_WINDOW_SECS + 1));
    assert_eq!(cache.len(), 1);
    // A proof outside the window is never accepted.
    assert!(!cache.first_use("jkt", "j-1", NOW, NOW + PROOF_WINDOW_SECS + 1));
    assert!(!cache.first_use("jkt", "j-4", NOW + 1000, NOW));
    assert!(!cache.first_use("jkt", "j-5", i64::MIN, i64::MAX));
}

#[test]
fn replay_cache_fails_closed_when_full() {
    let cache = ReplayCache::new(3);
    for jti in ["a", "b", "c"] {
        assert!(cache.first_use("jkt", jti, NOW, NOW));
    }
    assert!(!cache.first_use("jkt", "d", NOW, NOW));
    assert!(!cache.first_use("jkt", "d", NOW + 10, NOW + 10));
    assert_eq!(cache.len(), 3);
    // Once those expire there is room again.
    assert!(cache.first_use("jkt", "d", NOW + 61, NOW + 61));
    assert_eq!(cache.len(), 1);
    assert!(!ReplayCache::new(0).first_use("jkt", "a", NOW, NOW));
}

#[test]
fn replay_cache_is_shared_across_threads() {
    let cache = std::sync::Arc::new(ReplayCache::new(1000));
    let firsts: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let cache = cache.clone();
                s.spawn(move || {
                    (0..100)
                        .filter(|i| cache.first_use("jkt", &i.to_string(), NOW, NOW))
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    assert_eq!(firsts, 100);
}

/// xorshift64*: deterministic, no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

fn mutate(rng: &mut Rng, proof: &str) -> String {
    const CHARS: &[char] = &[
        'A',
        'z',
        '0',
        '9',
        '-',
        '_',
        '.',
        '=',
        '+',
        '/',
        ' ',
        '%',
        '\0',
        'é',
        '€',
        '\u{1F600}',
    ];
    let mut chars: Vec<char> = proof.chars().collect();
    let mut parts: Vec<String> = proof.split('.').map(str::to_owned).collect();
    match rng.below(8) {
        0 | 1 => {
            let at = rng.below(chars.len());
            if let Some(c) = chars.get_mut(at) {
                *c = CHARS[rng.below(CHARS.len())];
            }
            chars.into_iter().collect()
        }
        2 => {
            chars.truncate(rng.below(chars.len()));
            chars.into_iter().collect()
        }
        3 => {
            let at = rng.below(parts.len());
            parts.remove(at);
            parts.join(".")
        }
        4 => {
            let at = rng.below(parts.len());
            let part = parts[at].clone();
            parts.insert(rng.below(parts.len() + 1), part);
            parts.join(".")
        }
        5 => {
            let (a, b) = (rng.below(parts.len()), rng.below(parts.len()));
            parts.swap(a, b);
            parts.join(".")
        }
        _ => {
            // Flip a byte of a decoded part and re-encode it.
            let at = rng.below(parts.len());
            let mut bytes = URL_SAFE_NO_PAD.decode(&parts[at]).unwrap_or_default();
            let i = rng.below(bytes.len());
            if let Some(b) = bytes.get_mut(i) {
                *b ^= 1 << rng.below(8);
            }
            if rng.below(4) == 0 {
                bytes.truncate(i);
            }
            parts[at] = b64(&bytes);
            parts.join(".")
        }
    }
}

#[test]
fn random_mutations_never_panic_nor_verify() {
    let token = "tok";
    let expect = Expect {
        access_token: Some(token),
        ..expect()
    };
    let es = Es256::new();
    let valid = [
        ed25519_proof(&SEED, "GET", HTU, NOW, "j-1", Some(&ath(token)), Some("n")),
        es.proof(&with(claims(), "ath", ath(token).into())),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for proof in &valid {
        assert!(verify_proof(proof, &expect).is_ok());
        for round in 0..2500 {
            let mut mutated = mutate(&mut rng, proof);
            if round % 5 == 0 {
                mutated = mutate(&mut rng, &mutated);
            }
            if mutated != *proof {
                assert!(verify_proof(&mutated, &expect).is_err(), "{mutated}");
            }
        }
    }
}
