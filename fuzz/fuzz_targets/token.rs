//! The access-token path: strict JOSE header parsing, the EdDSA signature and
//! the registered claims, through Recall's keyring (`recall::tokens::Keyring`,
//! loaded from a key row like the store's) and the verifier crate's keyring
//! (loaded from a JWKS), plus the verified-token cache.
//!
//! The first input byte picks a mode:
//! - `0x00`: the rest is an edit script applied to a token Recall signed;
//!   the edited token must be refused unless it is byte for byte the original.
//! - `0x01`: the rest is `header JSON \n claims JSON`, signed here with the
//!   real key, so the claim checks behind the signature are reached.
//! - anything else: the whole input is the token (a seed is a real token).
//!
//! Whatever the mode, an accepted token must carry a valid Ed25519 signature
//! by the named key over its exact bytes, checked independently with
//! `verify_strict` (else it is a forgery: panic), and claims that pass every
//! rule; both keyrings must agree, and a cached token must not outlive `exp`.
#![no_main]

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{Signature, Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use recall::keys::MasterKey;
use recall::keys::KeyRecord;
use recall::tokens::{Claims, Keyring, TokenError, ACCESS_TYP, LEEWAY_SECS};
use recall_verifier::token::{Jwk, Jwks};
use uuid::Uuid;

/// The key that signs (active), and one that only verifies (a previous key).
/// Fixed, so the committed seed tokens (fuzz/gen_seeds.py) verify.
const SIGNING_SEED: &[u8; 32] = b"recall-fuzz-token-signing-key-01";
const OTHER_SEED: &[u8; 32] = b"recall-fuzz-token-signing-key-02";
const KID: &str = "fuzz-kid-1";
const OTHER_KID: &str = "fuzz-kid-2";
const ISSUER: &str = "recall";
const OLD_ISSUER: &str = "recall-old";
const AUDIENCE: &str = "recall-api";
/// Seconds of slack for the clock moving between the check and the oracle.
const SLACK: i128 = 5;

struct Fixture {
    recall: Keyring,
    verifier: recall_verifier::Keyring,
    keys: Vec<(&'static str, SigningKey)>,
    /// A token Recall signed (kid `KID`).
    token: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let master = MasterKey::parse(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
            .expect("master key");
        let keys = vec![
            (KID, SigningKey::from_bytes(SIGNING_SEED)),
            (OTHER_KID, SigningKey::from_bytes(OTHER_SEED)),
        ];
        let records: Vec<KeyRecord> = keys
            .iter()
            .enumerate()
            .map(|(i, (kid, key))| {
                let der = key.to_pkcs8_der().expect("pkcs8");
                KeyRecord {
                    kid: kid.to_string(),
                    alg: "EdDSA".into(),
                    public_key: key.verifying_key().to_bytes().to_vec(),
                    private_key_enc: master.seal(kid, der.as_bytes()),
                    status: if i == 0 {
                        recall::domain::KeyStatus::Active
                    } else {
                        recall::domain::KeyStatus::Verifying
                    },
                    created_at: recall::clock::Timestamp::EPOCH,
                    retire_after: None,
                }
            })
            .collect();
        let recall = Keyring::new(ISSUER, &[OLD_ISSUER], AUDIENCE);
        recall.load(&records, &master).expect("load keys");
        let verifier = recall_verifier::Keyring::new(&[ISSUER, OLD_ISSUER], AUDIENCE);
        let jwks = Jwks {
            keys: keys
                .iter()
                .map(|(kid, key)| Jwk {
                    kty: "OKP".into(),
                    crv: Some("Ed25519".into()),
                    x: Some(recall::tokens::b64url(&key.verifying_key().to_bytes())),
                    kid: Some(kid.to_string()),
                    alg: Some("EdDSA".into()),
                })
                .collect(),
        };
        assert_eq!(verifier.load_jwks(&jwks), 2);
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            sid: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002),
            jti: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0003),
            iat: 1_700_000_000,
            nbf: 1_700_000_000,
            // 2100-01-01: the fixture outlives any CI run.
            exp: 4_102_444_800,
            ctype: "web".into(),
            cnf: None,
            net: None,
        };
        let token = recall.issue(KID, &claims).expect("Recall signs");
        assert!(recall.verify(&token).is_ok(), "Recall's own token verifies");
        Fixture {
            recall,
            verifier,
            keys,
            token,
        }
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Signs `header.claims` (raw JSON bytes) with the key of `kid`.
fn sign(key: &SigningKey, header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

/// Applies `(op, pos_lo, pos_hi, byte)` edits to the token's bytes.
fn edit(token: &str, script: &[u8]) -> Vec<u8> {
    let mut t = token.as_bytes().to_vec();
    for op in script.chunks_exact(4) {
        let pos = u16::from_le_bytes([op[1], op[2]]) as usize;
        let b = op[3];
        match op[0] % 5 {
            0 if !t.is_empty() => {
                let i = pos % t.len();
                t[i] = b;
            }
            1 => {
                let i = pos % (t.len() + 1);
                t.insert(i, b);
            }
            2 if !t.is_empty() => {
                let i = pos % t.len();
                t.remove(i);
            }
            3 => {
                let i = pos % (t.len() + 1);
                t.truncate(i);
            }
            4 if !t.is_empty() => {
                // Flip one bit: the smallest change a signature must catch.
                let i = pos % t.len();
                t[i] ^= 1 << (b % 8);
            }
            _ => {}
        }
    }
    t
}

/// An accepted token: everything that must hold of it, checked without
/// Recall's code.
fn check_accepted(f: &Fixture, token: &str, claims: &Claims, kid: &str, now: i64) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted a token without three parts: {token:?}");
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(parts[0])
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .unwrap_or_else(|| panic!("accepted a token whose header does not parse: {token:?}"));
    assert_eq!(header["alg"], "EdDSA", "accepted alg: {token:?}");
    assert_eq!(header["typ"], ACCESS_TYP, "accepted typ: {token:?}");
    assert!(header.get("crit").is_none(), "accepted crit: {token:?}");
    assert_eq!(header["kid"], kid, "kid reported is not the header's: {token:?}");
    let key = f
        .keys
        .iter()
        .find(|(k, _)| *k == kid)
        .map(|(_, key)| key.verifying_key())
        .unwrap_or_else(|| panic!("accepted an unknown kid {kid:?}: {token:?}"));
    let sig = URL_SAFE_NO_PAD
        .decode(parts[2])
        .ok()
        .and_then(|s| Signature::from_slice(&s).ok());
    let signed_input = &token[..parts[0].len() + 1 + parts[1].len()];
    let genuine = sig.is_some_and(|sig| key.verify_strict(signed_input.as_bytes(), &sig).is_ok());
    if !genuine {
        panic!("FORGERY ACCEPTED: no valid signature by {kid}: {token:?}");
    }
    assert!(
        claims.iss == ISSUER || claims.iss == OLD_ISSUER,
        "accepted issuer {:?}",
        claims.iss
    );
    assert_eq!(claims.aud, AUDIENCE, "accepted audience");
    let (leeway, now) = (LEEWAY_SECS as i128, now as i128);
    assert!(
        claims.exp as i128 + leeway + SLACK >= now,
        "accepted an expired token: {claims:?}"
    );
    assert!(
        claims.nbf as i128 - leeway - SLACK <= now,
        "accepted a token not yet valid: {claims:?}"
    );
}

/// Verifies `token` with both keyrings; returns whether it was accepted.
fn verify(f: &Fixture, token: &str) -> bool {
    let _ = recall_verifier::Keyring::kid_of(token);
    let t = now();
    let by_recall = f.recall.verify(token);
    let by_verifier = f.verifier.verify(token);
    assert_eq!(
        by_recall, by_verifier,
        "Recall's keyring and the verifier's (from JWKS) disagree on {token:?}"
    );
    let Ok((claims, kid)) = by_recall else {
        // A refused token is refused by the cache path too.
        let cached = f.recall.verify_cached(token, t);
        assert!(cached.is_err(), "verify refused, verify_cached accepted: {token:?}");
        return false;
    };
    check_accepted(f, token, &claims, &kid, t);
    let leeway = LEEWAY_SECS as i64;
    // The cache path: accepted now, and (on the cache hit) refused once
    // `exp` plus leeway has passed and before `nbf` minus leeway.
    let cached = f
        .recall
        .verify_cached(token, t)
        .unwrap_or_else(|e| panic!("verify accepted, verify_cached refused ({e:?}): {token:?}"));
    assert_eq!(cached.0, claims);
    if let Some(after) = claims.exp.checked_add(leeway + 1) {
        if after > t {
            assert_eq!(
                f.recall.verify_cached(token, after).map(|_| ()),
                Err(TokenError::Expired),
                "a cached token outlived exp: {token:?}"
            );
        }
    }
    if let Some(before) = claims.nbf.checked_sub(leeway + 1) {
        if before < t {
            assert_eq!(
                f.recall.verify_cached(token, before).map(|_| ()),
                Err(TokenError::NotYetValid),
                "a cached token was valid before nbf: {token:?}"
            );
        }
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    match data.first() {
        Some(0x00) => {
            let edited = edit(&f.token, &data[1..]);
            let Ok(token) = std::str::from_utf8(&edited) else {
                return;
            };
            if verify(f, token) && token != f.token {
                panic!("MALLEABLE: an edited token verified: {token:?} (signed: {:?})", f.token);
            }
        }
        Some(0x01) => {
            let rest = &data[1..];
            let (header, claims) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b""[..]),
            };
            // Half the time with the key the header's kid does not name.
            let key = &f.keys[(claims.len() + header.len()) % 2].1;
            let token = sign(key, header, claims);
            verify(f, &token);
        }
        _ => {
            if let Ok(token) = std::str::from_utf8(data) {
                verify(f, token);
            } else {
                verify(f, &String::from_utf8_lossy(data));
            }
        }
    }
});
