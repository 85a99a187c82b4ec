//! Tests of `dpop`'s proof checks (RFC 9449 section 4.3) and the helpers
//! they share: keys, headers, signatures and the proof's shape here; the
//! claims in `dpop_tests_claims.rs`, random mutations in
//! `dpop_tests_fuzz.rs`. (The `htu` normalization, key and replay cache
//! tests are beside their code.) Imports anything of `dpop`.

use super::key::PRIVATE_MEMBERS;
use super::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

#[path = "dpop_tests_claims.rs"]
mod claims;
#[path = "dpop_tests_fuzz.rs"]
mod fuzz;

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
    let all = DpopError::ALL;
    let reasons: std::collections::HashSet<_> = all.iter().map(DpopError::reason).collect();
    assert_eq!(reasons.len(), all.len());
    assert!(all.iter().all(|e| !e.to_string().is_empty()));
}
