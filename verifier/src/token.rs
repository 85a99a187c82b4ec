//! Access tokens as a verifier sees them: the claims, the public keys by
//! kid (from Recall's JWKS, or loaded by Recall itself), and verification:
//! strict header checks, the EdDSA signature, the registered claims. Pure
//! CPU; a cache of verified tokens skips the signature on a repeat.
//!
//! The signature is checked here with ed25519-dalek against a key parsed
//! once at insert, not through jsonwebtoken's `decode`, which rebuilds the
//! key (an Edwards point decompression) and parses the claims twice on every
//! call: about 6 µs of a 38 µs verify (bench/RESULTS.md, measure 2).

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The JWT `typ` of access tokens (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";
/// Clock leeway for `exp` and `nbf`, seconds.
pub const LEEWAY_SECS: u64 = 10;
/// Longest token worth parsing.
const MAX_TOKEN_LEN: usize = 4096;
/// Verified tokens remembered (by exact bytes) to skip the signature check.
const VERIFIED_CACHE: usize = 65_536;

/// A token that passed header, signature and claims checks, and its kid.
pub type Verified = Arc<(Claims, String)>;

/// Access-token claims: ids only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// User id.
    pub sub: Uuid,
    /// Session id.
    pub sid: Uuid,
    pub jti: Uuid,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Client type: web, mobile or service.
    pub ctype: String,
    /// Confirmation (RFC 7800): `jkt`, the thumbprint of the DPoP key the
    /// token is bound to (RFC 9449). Such a token needs a fresh proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// Network binding: a keyed digest of the login's network, never the
    /// address (`binding`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<crate::binding::NetBinding>,
}

/// The `cnf` claim of a DPoP-bound token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 7638 SHA-256 thumbprint of the client's public key, base64url.
    pub jkt: String,
}

impl Claims {
    /// Whether this token is bound (to a key or a network): a verifier
    /// must then see the request, not only the token.
    pub fn is_bound(&self) -> bool {
        self.cnf.is_some() || self.net.is_some()
    }
}

/// Why a token failed verification (all answer 401 invalid_token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not allowed")]
    BadAlgorithm,
    #[error("wrong token type")]
    BadType,
    #[error("unknown key id")]
    UnknownKid,
    #[error("unsupported critical header")]
    Critical,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    BadIssuer,
    #[error("wrong audience")]
    BadAudience,
    #[error("invalid claims")]
    BadClaims,
}

impl TokenError {
    /// A metric label for the failure.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Expired => "expired",
            TokenError::UnknownKid => "unknown_kid",
            TokenError::BadSignature => "bad_signature",
            TokenError::BadAlgorithm => "bad_algorithm",
            TokenError::BadType => "bad_type",
            TokenError::Critical => "critical_header",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::BadIssuer => "bad_issuer",
            TokenError::BadAudience => "bad_audience",
            TokenError::BadClaims => "bad_claims",
            TokenError::Malformed => "malformed",
        }
    }
}

/// The raw JOSE header, read strictly before any signature work.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// One key of a JSON Web Key Set (RFC 7517; OKP/Ed25519, RFC 8037).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
}

/// A JSON Web Key Set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

struct PublicKey {
    /// Parsed once. `None` when the bytes are not a usable Ed25519 point
    /// (not 32 bytes, not on the curve, or of small order): every token
    /// under that kid then fails its signature check.
    key: Option<VerifyingKey>,
    raw: Vec<u8>,
}

/// Public keys by kid, and token verification against them.
pub struct Keyring {
    /// Growable: a fleet that changes its issuer tells running instances,
    /// which then accept the new one's tokens too. Read only on a cache miss.
    issuers: RwLock<Vec<String>>,
    audience: String,
    keys: RwLock<HashMap<String, Arc<PublicKey>>>,
    /// Exact token -> its verified claims. Only the signature and the
    /// static claim checks are skipped on a hit: expiry is checked again,
    /// and key status and revocation by the caller on every request.
    verified: quick_cache::sync::Cache<String, Verified>,
    /// When expired entries were last swept out of `verified` (seconds).
    swept_at: std::sync::atomic::AtomicI64,
}

/// Expired entries are swept out of the cache at most this often (seconds).
const SWEEP_EVERY_SECS: i64 = 30;

impl Keyring {
    /// An empty keyring for tokens of any of `issuers` meant for `audience`.
    pub fn new(issuers: &[&str], audience: &str) -> Self {
        Keyring {
            issuers: RwLock::new(issuers.iter().map(|s| s.to_string()).collect()),
            audience: audience.to_owned(),
            keys: RwLock::new(HashMap::new()),
            verified: quick_cache::sync::Cache::new(VERIFIED_CACHE),
            swept_at: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Drops cached tokens that have expired, at most every 30 s (call it
    /// from housekeeping, off the request path). Without it the cache keeps
    /// dead tokens until its capacity pushes them out, so memory grows for
    /// as long as new tokens arrive. Returns how many entries remain.
    pub fn sweep_expired(&self, now: i64) -> usize {
        use std::sync::atomic::Ordering;
        let last = self.swept_at.load(Ordering::Relaxed);
        if now - last >= SWEEP_EVERY_SECS
            && self
                .swept_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let leeway = LEEWAY_SECS as i64;
            self.verified
                .retain(|_, v| v.0.exp.saturating_add(leeway) >= now);
        }
        self.verified.len()
    }

    /// The issuers accepted (the first is the current one).
    pub fn issuers(&self) -> Vec<String> {
        self.issuers.read().clone()
    }

    /// Accepts tokens of `issuer` too, from now on (an issuer change the
    /// fleet made while this keyring runs); returns whether it was new.
    pub fn accept_issuer(&self, issuer: &str) -> bool {
        let mut issuers = self.issuers.write();
        if issuers.iter().any(|i| i == issuer) {
            return false;
        }
        issuers.push(issuer.to_owned());
        true
    }

    /// The audience required.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Adds an Ed25519 public key (its 32 raw bytes, the JWK `x`); a kid
    /// already known keeps its key (kids are never reused).
    pub fn insert(&self, kid: &str, public: &[u8]) {
        if self.keys.read().contains_key(kid) {
            return;
        }
        let key = <[u8; 32]>::try_from(public)
            .ok()
            .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
            .filter(|key| !key.is_weak());
        let raw = public.to_vec();
        self.keys
            .write()
            .insert(kid.to_owned(), Arc::new(PublicKey { key, raw }));
    }

    /// Adds every Ed25519 key of a JWKS; returns how many were new.
    pub fn load_jwks(&self, jwks: &Jwks) -> usize {
        let mut added = 0;
        for jwk in &jwks.keys {
            let (Some(kid), Some(x)) = (&jwk.kid, &jwk.x) else {
                continue;
            };
            if jwk.kty != "OKP" || jwk.crv.as_deref() != Some("Ed25519") {
                continue;
            }
            if jwk.alg.as_deref().is_some_and(|a| a != "EdDSA") {
                continue;
            }
            let Ok(raw) = URL_SAFE_NO_PAD.decode(x) else {
                continue;
            };
            if raw.len() != 32 || self.has(kid) {
                continue;
            }
            self.insert(kid, &raw);
            added += 1;
        }
        added
    }

    /// Whether `kid`'s key is here.
    pub fn has(&self, kid: &str) -> bool {
        self.keys.read().contains_key(kid)
    }

    /// The public key bytes of `kid`, as inserted.
    pub fn public_key(&self, kid: &str) -> Option<Vec<u8>> {
        self.keys.read().get(kid).map(|k| k.raw.clone())
    }

    /// `verify` through the cache of verified tokens, at `now` (seconds).
    pub fn verify_cached(&self, token: &str, now: i64) -> Result<Verified, TokenError> {
        let leeway = LEEWAY_SECS as i64;
        if let Some(hit) = self.verified.get(token) {
            // Saturating: a signed token may carry any i64.
            if hit.0.exp.saturating_add(leeway) < now {
                return Err(TokenError::Expired);
            }
            if hit.0.nbf.saturating_sub(leeway) > now {
                return Err(TokenError::NotYetValid);
            }
            return Ok(hit);
        }
        let verified: Verified = Arc::new(self.verify_at(token, now)?);
        if verified.0.exp.saturating_add(leeway) >= now {
            self.verified.insert(token.to_owned(), verified.clone());
        }
        Ok(verified)
    }

    /// The kid a token names, read from its header alone (no trust).
    pub fn kid_of(token: &str) -> Option<String> {
        let header_b64 = token.split('.').next()?;
        let json = URL_SAFE_NO_PAD.decode(header_b64).ok()?;
        serde_json::from_slice::<RawHeader>(&json).ok()?.kid
    }

    /// Verifies header, signature and claims; returns the claims and kid.
    /// Revocation is the caller's next step (`RevocationState::check`).
    pub fn verify(&self, token: &str) -> Result<(Claims, String), TokenError> {
        self.verify_at(token, now_ms() / 1000)
    }

    /// `verify` with the clock read by the caller (seconds).
    pub fn verify_at(&self, token: &str, now: i64) -> Result<(Claims, String), TokenError> {
        let (claims, kid) = self.verify_signature(token)?;
        let leeway = LEEWAY_SECS as i64;
        // Saturating: a signed token may carry any i64.
        if claims.exp.saturating_add(leeway) < now {
            return Err(TokenError::Expired);
        }
        if claims.nbf.saturating_sub(leeway) > now {
            return Err(TokenError::NotYetValid);
        }
        if !self.issuers.read().contains(&claims.iss) {
            return Err(TokenError::BadIssuer);
        }
        if claims.aud != self.audience {
            return Err(TokenError::BadAudience);
        }
        Ok((claims, kid))
    }

    /// The header and signature checks of `verify` and the claims' shape,
    /// but no clock, issuer or audience: whether one of these keys signed
    /// this access token, whenever it was valid (forensics asks about any
    /// past moment).
    pub fn verify_signature(&self, token: &str) -> Result<(Claims, String), TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| TokenError::Malformed)?;
        let header: RawHeader =
            serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
        // The algorithm is pinned (every Recall key is EdDSA): `none`,
        // HS256-with-the-public-key and friends stop here.
        if header.alg != "EdDSA" {
            return Err(TokenError::BadAlgorithm);
        }
        if header.typ.as_deref() != Some(ACCESS_TYP) {
            return Err(TokenError::BadType);
        }
        // No extensions are understood, so any `crit` is refused (RFC 7515 4.1.11).
        if header.crit.is_some() {
            return Err(TokenError::Critical);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKid)?;
        // One look under the lock (a second read lock taken while this one
        // is held can deadlock behind a waiting writer).
        let known = self.keys.read().get(&kid).map(|k| k.key);
        let key = match known {
            None => return Err(TokenError::UnknownKid),
            Some(None) => return Err(TokenError::BadSignature),
            Some(Some(key)) => key,
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| TokenError::Malformed)?;
        let signature = Signature::from_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        // The signing input is the first two parts as sent (RFC 7515 5.2).
        let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
        // RFC 8032 verification, as jsonwebtoken did: S must be canonical,
        // and weak keys never got in (`insert`). `verify_strict` would also
        // refuse a small-order R, at the cost of two point decompressions
        // (+14 µs): an R with a torsion part lets someone who holds a valid
        // token write a second encoding of it, never a token of their own,
        // and a copy carries the same session, so revocation still ends it.
        key.verify(signed.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError::Malformed)?;
        // Every claim is required (exp, nbf, iss, aud, sub among them).
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::BadClaims)?;
        Ok((claims, kid))
    }
}

/// The wall clock in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Base64url (no padding) of bytes, as in JWKs.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    const NOW: i64 = 1_800_000_000;

    fn claims() -> Claims {
        Claims {
            iss: "https://auth.example.com".into(),
            aud: "recall-api".into(),
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            jti: Uuid::now_v7(),
            iat: NOW,
            nbf: NOW,
            exp: NOW + 300,
            ctype: "web".into(),
            cnf: None,
            net: None,
        }
    }

    /// A token over `kid`, and its three parts (the signature as bytes).
    fn token(key: &SigningKey, kid: &str, claims: &Claims) -> (String, String, Vec<u8>) {
        let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}"}}"#);
        let signed = format!(
            "{}.{}",
            b64url(header.as_bytes()),
            b64url(&serde_json::to_vec(claims).expect("claims"))
        );
        let signature = key.sign(signed.as_bytes()).to_bytes().to_vec();
        (
            format!("{signed}.{}", b64url(&signature)),
            signed,
            signature,
        )
    }

    fn ring(key: &SigningKey) -> Keyring {
        let ring = Keyring::new(&["https://auth.example.com", "recall"], "recall-api");
        ring.insert("k1", key.verifying_key().as_bytes());
        ring
    }

    #[test]
    fn the_signature_is_checked_against_the_parsed_key() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let ring = ring(&key);
        let (good, signed, signature) = token(&key, "k1", &claims());
        assert_eq!(ring.verify_at(&good, NOW).map(|v| v.1), Ok("k1".into()));
        // Another key's signature, a short one, and one that is not base64url.
        let other = SigningKey::from_bytes(&[8; 32]);
        let (forged, _, _) = token(&other, "k1", &claims());
        assert_eq!(ring.verify_at(&forged, NOW), Err(TokenError::BadSignature));
        let short = format!("{signed}.{}", b64url(&signature[..63]));
        assert_eq!(ring.verify_at(&short, NOW), Err(TokenError::BadSignature));
        let junk = format!("{signed}.!!!");
        assert_eq!(ring.verify_at(&junk, NOW), Err(TokenError::Malformed));
        // S + l: the same signature written a second way is refused.
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut malleated = signature.clone();
        let mut carry = 0u16;
        for (i, byte) in l.iter().enumerate() {
            let sum = malleated[32 + i] as u16 + *byte as u16 + carry;
            malleated[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        let malleated = format!("{signed}.{}", b64url(&malleated));
        assert_eq!(
            ring.verify_at(&malleated, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_key_that_is_no_usable_point_fails_every_token() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let ring = ring(&key);
        // 31 bytes, and the identity point (a weak key any signature fits).
        ring.insert("short", &[1; 31]);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        ring.insert("weak", &identity);
        for kid in ["short", "weak"] {
            assert!(ring.has(kid));
            let (t, _, _) = token(&key, kid, &claims());
            assert_eq!(
                ring.verify_at(&t, NOW),
                Err(TokenError::BadSignature),
                "{kid}"
            );
        }
        let (t, _, _) = token(&key, "nobody", &claims());
        assert_eq!(ring.verify_at(&t, NOW), Err(TokenError::UnknownKid));
    }

    #[test]
    fn claims_are_checked_at_the_callers_clock() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let ring = ring(&key);
        let (t, _, _) = token(&key, "k1", &claims());
        let leeway = LEEWAY_SECS as i64;
        assert!(ring.verify_at(&t, NOW + 300 + leeway).is_ok());
        assert_eq!(
            ring.verify_at(&t, NOW + 301 + leeway),
            Err(TokenError::Expired)
        );
        assert!(ring.verify_at(&t, NOW - leeway).is_ok());
        assert_eq!(
            ring.verify_at(&t, NOW - leeway - 1),
            Err(TokenError::NotYetValid)
        );
        let old_issuer = Claims {
            iss: "recall".into(),
            ..claims()
        };
        assert!(ring
            .verify_at(&token(&key, "k1", &old_issuer).0, NOW)
            .is_ok());
        for (c, e) in [
            (
                Claims {
                    iss: "https://evil.example".into(),
                    ..claims()
                },
                TokenError::BadIssuer,
            ),
            (
                Claims {
                    aud: "another-api".into(),
                    ..claims()
                },
                TokenError::BadAudience,
            ),
            (
                Claims {
                    exp: i64::MIN,
                    nbf: i64::MAX,
                    ..claims()
                },
                TokenError::Expired,
            ),
        ] {
            assert_eq!(ring.verify_at(&token(&key, "k1", &c).0, NOW), Err(e));
        }
        // A signed payload that is not the claims: refused as claims.
        let signed = format!(
            "{}.{}",
            b64url(br#"{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}"#),
            b64url(br#"{"sub":"x"}"#)
        );
        let sig = key.sign(signed.as_bytes()).to_bytes();
        let t = format!("{signed}.{}", b64url(&sig));
        assert_eq!(ring.verify_at(&t, NOW), Err(TokenError::BadClaims));
    }
}
