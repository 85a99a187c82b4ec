//! Access tokens: claims, the keyring (kid -> key material), issue and
//! verify. Verification is pure CPU: header checks, signature, claims.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::{KeyError, MasterKey};
use crate::store::KeyRecord;

/// The JWT `typ` of access tokens (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";
/// Clock leeway for `exp` and `nbf`, seconds.
pub const LEEWAY_SECS: u64 = 10;
/// Longest token we bother to parse.
const MAX_TOKEN_LEN: usize = 4096;
/// Verified tokens remembered (by exact bytes) to skip the signature check.
const VERIFIED_CACHE: usize = 65_536;

/// A token that passed header, signature and claims checks.
pub type Verified = Arc<(Claims, String)>;

/// Access-token claims: ids only (G7).
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

struct KeyMaterial {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    public: Vec<u8>,
}

/// Key material by kid. Statuses live in the revocation state; this only
/// knows bytes.
pub struct Keyring {
    issuer: String,
    audience: String,
    validation: Validation,
    keys: RwLock<HashMap<String, Arc<KeyMaterial>>>,
    /// Exact token -> its verified claims. Only the signature and the static
    /// claim checks are skipped on a hit: expiry is checked again here, and
    /// key status and revocation by the caller on every request.
    verified: quick_cache::sync::Cache<String, Verified>,
}

impl Keyring {
    /// An empty keyring for tokens of `issuer` meant for `audience`.
    pub fn new(issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Keyring {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            validation,
            keys: RwLock::new(HashMap::new()),
            verified: quick_cache::sync::Cache::new(VERIFIED_CACHE),
        }
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The configured audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Loads (or reloads) key rows; private halves are decrypted with `master`.
    pub fn load(&self, records: &[KeyRecord], master: &MasterKey) -> Result<(), KeyError> {
        let mut loaded = Vec::new();
        for rec in records {
            if rec.alg != "EdDSA" || self.keys.read().contains_key(&rec.kid) {
                continue;
            }
            let encoding = if rec.status == crate::domain::KeyStatus::Active {
                let der = master.open(&rec.kid, &rec.private_key_enc)?;
                Some(EncodingKey::from_ed_der(&der))
            } else {
                None
            };
            loaded.push((
                rec.kid.clone(),
                Arc::new(KeyMaterial {
                    decoding: DecodingKey::from_ed_der(&rec.public_key),
                    encoding,
                    public: rec.public_key.clone(),
                }),
            ));
        }
        let mut keys = self.keys.write();
        for (kid, material) in loaded {
            keys.insert(kid, material);
        }
        Ok(())
    }

    /// Whether `kid`'s material is loaded.
    pub fn has(&self, kid: &str) -> bool {
        self.keys.read().contains_key(kid)
    }

    /// Whether `kid` can sign here.
    pub fn can_sign(&self, kid: &str) -> bool {
        self.keys
            .read()
            .get(kid)
            .is_some_and(|k| k.encoding.is_some())
    }

    /// The public key bytes of `kid`.
    pub fn public_key(&self, kid: &str) -> Option<Vec<u8>> {
        self.keys.read().get(kid).map(|k| k.public.clone())
    }

    /// Signs `claims` with `kid`.
    pub fn issue(&self, kid: &str, claims: &Claims) -> Result<String, TokenError> {
        let material = self
            .keys
            .read()
            .get(kid)
            .cloned()
            .ok_or(TokenError::UnknownKid)?;
        let encoding = material.encoding.as_ref().ok_or(TokenError::UnknownKid)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TYP.to_owned());
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, encoding).map_err(|_| TokenError::Malformed)
    }

    /// `verify` through the cache of verified tokens, at `now` (seconds).
    pub fn verify_cached(&self, token: &str, now: i64) -> Result<Verified, TokenError> {
        if let Some(hit) = self.verified.get(token) {
            let leeway = LEEWAY_SECS as i64;
            if hit.0.exp + leeway < now {
                return Err(TokenError::Expired);
            }
            if hit.0.nbf - leeway > now {
                return Err(TokenError::NotYetValid);
            }
            return Ok(hit);
        }
        let verified: Verified = Arc::new(self.verify(token)?);
        if verified.0.exp + (LEEWAY_SECS as i64) >= now {
            self.verified.insert(token.to_owned(), verified.clone());
        }
        Ok(verified)
    }

    /// Verifies header, signature and claims; returns the claims and kid.
    /// Revocation is the caller's next step (`RevocationState::check`).
    pub fn verify(&self, token: &str) -> Result<(Claims, String), TokenError> {
        if token.len() > MAX_TOKEN_LEN || token.split('.').count() != 3 {
            return Err(TokenError::Malformed);
        }
        let header_b64 = token.split('.').next().ok_or(TokenError::Malformed)?;
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| TokenError::Malformed)?;
        let header: RawHeader =
            serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
        // The algorithm is pinned per key (all ours are EdDSA): `none`,
        // HS256-with-the-public-key and friends stop here.
        if header.alg != "EdDSA" {
            return Err(TokenError::BadAlgorithm);
        }
        if header.typ.as_deref() != Some(ACCESS_TYP) {
            return Err(TokenError::BadType);
        }
        // We understand no extensions, so any `crit` must be refused (RFC 7515 4.1.11).
        if header.crit.is_some() {
            return Err(TokenError::Critical);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKid)?;
        let material = self
            .keys
            .read()
            .get(&kid)
            .cloned()
            .ok_or(TokenError::UnknownKid)?;
        let data = jsonwebtoken::decode::<Claims>(token, &material.decoding, &self.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature | K::InvalidEddsaKey => TokenError::BadSignature,
                    K::ExpiredSignature => TokenError::Expired,
                    K::ImmatureSignature => TokenError::NotYetValid,
                    K::InvalidIssuer => TokenError::BadIssuer,
                    K::InvalidAudience => TokenError::BadAudience,
                    K::InvalidAlgorithm => TokenError::BadAlgorithm,
                    K::MissingRequiredClaim(_) | K::Json(_) => TokenError::BadClaims,
                    _ => TokenError::Malformed,
                }
            })?;
        Ok((data.claims, kid))
    }
}

/// Base64url (no padding) of bytes, as in JWKs.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
