//! Access-token verification rejects every forgery and misuse.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signer, SigningKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use recall::keys::{generate_signing_key, MasterKey};
use recall::tokens::{Claims, Keyring, TokenError};
use serde_json::{json, Value};
use uuid::Uuid;

struct Fixture {
    ring: Keyring,
    kid: String,
    signing: SigningKey,
    public: Vec<u8>,
}

fn fixture() -> Fixture {
    let master = MasterKey::generate();
    let rec = generate_signing_key(&master, recall::clock::Timestamp::EPOCH).unwrap();
    let ring = Keyring::new("recall", &[], "recall-api");
    ring.load(std::slice::from_ref(&rec), &master).unwrap();
    let der = master.open(&rec.kid, &rec.private_key_enc).unwrap();
    Fixture {
        ring,
        kid: rec.kid.clone(),
        signing: SigningKey::from_pkcs8_der(&der).unwrap(),
        public: rec.public_key.clone(),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> Value {
    json!({
        "iss": "recall", "aud": "recall-api", "sub": Uuid::now_v7(), "sid": Uuid::now_v7(),
        "jti": Uuid::now_v7(), "iat": now(), "nbf": now(), "exp": now() + 300, "ctype": "web"
    })
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Signs any header and claims with the real Ed25519 key.
fn sign(f: &Fixture, header: Value, claims: Value) -> String {
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let sig = f.signing.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

fn header(f: &Fixture) -> Value {
    json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": f.kid })
}

#[test]
fn issued_tokens_verify() {
    let f = fixture();
    let c: Claims = serde_json::from_value(claims()).unwrap();
    let token = f.ring.issue(&f.kid, &c).unwrap();
    let (back, kid) = f.ring.verify(&token).unwrap();
    assert_eq!(back, c);
    assert_eq!(kid, f.kid);
    // Our hand-signed form is accepted too, so the rejections below are
    // about the one thing each changes.
    assert!(f.ring.verify(&sign(&f, header(&f), claims())).is_ok());
}

#[test]
fn alg_none_is_rejected() {
    let f = fixture();
    let h = json!({ "alg": "none", "typ": "at+jwt", "kid": f.kid });
    let token = format!("{}.{}.", b64(&h), b64(&claims()));
    assert_eq!(f.ring.verify(&token), Err(TokenError::BadAlgorithm));
}

#[test]
fn hs256_signed_with_the_public_key_is_rejected() {
    let f = fixture();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(f.kid.clone());
    h.typ = Some("at+jwt".into());
    for secret in [
        f.public.clone(),
        URL_SAFE_NO_PAD.encode(&f.public).into_bytes(),
    ] {
        let token =
            jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(&secret).unwrap())
                .unwrap();
        assert_eq!(f.ring.verify(&token), Err(TokenError::BadAlgorithm));
    }
}

#[test]
fn unknown_kid_and_missing_kid_are_rejected() {
    let f = fixture();
    let h = json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": "not-a-key" });
    assert_eq!(
        f.ring.verify(&sign(&f, h, claims())),
        Err(TokenError::UnknownKid)
    );
    let h = json!({ "alg": "EdDSA", "typ": "at+jwt" });
    assert_eq!(
        f.ring.verify(&sign(&f, h, claims())),
        Err(TokenError::UnknownKid)
    );
}

#[test]
fn wrong_typ_iss_or_aud_is_rejected() {
    let f = fixture();
    let h = json!({ "alg": "EdDSA", "typ": "JWT", "kid": f.kid });
    assert_eq!(
        f.ring.verify(&sign(&f, h, claims())),
        Err(TokenError::BadType)
    );
    let h = json!({ "alg": "EdDSA", "kid": f.kid });
    assert_eq!(
        f.ring.verify(&sign(&f, h, claims())),
        Err(TokenError::BadType)
    );
    let mut c = claims();
    c["iss"] = json!("evil");
    assert_eq!(
        f.ring.verify(&sign(&f, header(&f), c)),
        Err(TokenError::BadIssuer)
    );
    let mut c = claims();
    c["aud"] = json!("other-api");
    assert_eq!(
        f.ring.verify(&sign(&f, header(&f), c)),
        Err(TokenError::BadAudience)
    );
}

#[test]
fn expired_and_not_yet_valid_are_rejected() {
    let f = fixture();
    let mut c = claims();
    c["exp"] = json!(now() - 60);
    assert_eq!(
        f.ring.verify(&sign(&f, header(&f), c)),
        Err(TokenError::Expired)
    );
    let mut c = claims();
    c["nbf"] = json!(now() + 60);
    assert_eq!(
        f.ring.verify(&sign(&f, header(&f), c)),
        Err(TokenError::NotYetValid)
    );
    // Within the leeway (<= 30 s) a slightly early nbf is fine.
    let mut c = claims();
    c["nbf"] = json!(now() + 5);
    assert!(f.ring.verify(&sign(&f, header(&f), c)).is_ok());
}

#[test]
fn truncated_or_tampered_tokens_are_rejected() {
    let f = fixture();
    let token = sign(&f, header(&f), claims());
    let truncated = &token[..token.len() - 6];
    assert!(f.ring.verify(truncated).is_err());
    let mut bytes = token.clone().into_bytes();
    let last = bytes.len() - 10;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let tampered_sig = String::from_utf8(bytes).unwrap();
    assert_eq!(f.ring.verify(&tampered_sig), Err(TokenError::BadSignature));
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims();
    c["sub"] = json!(Uuid::now_v7());
    let swapped = format!("{}.{}.{}", parts[0], b64(&c), parts[2]);
    assert_eq!(f.ring.verify(&swapped), Err(TokenError::BadSignature));
    for junk in [
        "",
        "a.b",
        "a.b.c.d",
        "...",
        "\u{0}.\u{1}.\u{2}",
        &"x".repeat(10_000),
    ] {
        assert!(f.ring.verify(junk).is_err(), "{junk:?}");
    }
}

/// A header naming `crit` extensions we don't know is refused. Recall
/// checks `crit` itself (jsonwebtoken 10 ignored it; 12 refuses it too, and
/// the check stays so no upgrade can quietly drop it).
#[test]
fn unknown_crit_header_is_rejected() {
    let f = fixture();
    let h =
        json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": f.kid, "crit": ["exp-v2"], "exp-v2": "1" });
    let token = sign(&f, h, claims());
    assert_eq!(f.ring.verify(&token), Err(TokenError::Critical));
    // An empty or malformed `crit` is refused as well (RFC 7515 4.1.11).
    for crit in [json!([]), json!("exp-v2"), json!([1])] {
        let h = json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": f.kid, "crit": crit });
        let token = sign(&f, h, claims());
        assert!(f.ring.verify(&token).is_err(), "crit {crit}");
    }
}

/// The verified-token cache skips only the signature: an expired token is
/// refused on a hit, and failures are never cached.
#[test]
fn the_verified_cache_still_checks_expiry_and_never_caches_failures() {
    let f = fixture();
    let c: Claims = serde_json::from_value(claims()).unwrap();
    let token = f.ring.issue(&f.kid, &c).unwrap();
    let first = f.ring.verify_cached(&token, now()).unwrap();
    let hit = f.ring.verify_cached(&token, now()).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &hit),
        "second call is a cache hit"
    );
    assert_eq!(
        f.ring.verify_cached(&token, c.exp + 11).err(),
        Some(TokenError::Expired)
    );
    assert_eq!(
        f.ring.verify_cached(&token, c.nbf - 11).err(),
        Some(TokenError::NotYetValid)
    );
    let mut bad = token.clone();
    bad.pop();
    for _ in 0..2 {
        assert!(f.ring.verify_cached(&bad, now()).is_err());
    }
}

/// Found by the `token` fuzz target (fuzz/regressions/token-exp-overflow):
/// a correctly signed token whose `exp` or `nbf` sits at the edge of i64
/// overflowed the leeway arithmetic of the verified-token cache (a panic
/// with overflow checks on). Now it is judged like any other token, on the
/// cache miss and on the cache hit.
#[test]
fn extreme_exp_and_nbf_do_not_overflow_the_cache_checks() {
    let f = fixture();
    let mut far = claims();
    far["exp"] = json!(i64::MAX);
    let token = sign(&f, header(&f), far);
    for _ in 0..2 {
        assert!(f.ring.verify_cached(&token, now()).is_ok());
    }
    let mut early = claims();
    early["nbf"] = json!(i64::MIN);
    early["exp"] = json!(i64::MAX);
    let token = sign(&f, header(&f), early);
    for _ in 0..2 {
        let _ = f.ring.verify_cached(&token, now());
    }
}

/// Found by the soak (bench/SOAK.md): expired tokens stayed in the
/// verified cache until its capacity pushed them out, so a verifier's
/// memory grew for as long as new tokens came. Housekeeping sweeps them.
#[test]
fn housekeeping_sweeps_expired_tokens_out_of_the_cache() {
    let f = fixture();
    let t = now();
    let mut live = Vec::new();
    for i in 0..50 {
        let mut c = claims();
        c["exp"] = json!(t + if i % 2 == 0 { 5 } else { 3600 });
        let token = sign(&f, header(&f), c);
        assert!(f.ring.verify_cached(&token, t).is_ok());
        if i % 2 == 1 {
            live.push(token);
        }
    }
    assert_eq!(f.ring.sweep_expired(t), 50, "nothing has expired yet");
    // A minute on: the 25 short-lived ones (and their leeway) are gone.
    assert_eq!(f.ring.sweep_expired(t + 60), 25);
    // At most every 30 s: a sweep right after does nothing more.
    assert_eq!(f.ring.sweep_expired(t + 61), 25);
    for token in &live {
        assert!(f.ring.verify_cached(token, t + 61).is_ok());
    }
}
