//! DPoP proofs (RFC 9449): verification of the `DPoP` header a client
//! sends to prove it holds the private key an access token is bound to.
//!
//! Pure CPU code, no I/O: Recall itself, the actix extractor, the tower
//! layer and the `recall verifier` sidecar all call [`verify_proof`] with
//! what they know of the request ([`Expect`]), then do the checks that are
//! theirs:
//!
//! - refuse a request with no `DPoP` header or more than one (RFC 9449 4.3
//!   point 1), and pass the single header value here;
//! - compare [`Proof::jkt`] with the `cnf.jkt` of the access token, if the
//!   token is bound (RFC 9449 6.1; for a token request the `jkt` is what
//!   the new token is bound to);
//! - refuse a replay with [`ReplayCache::first_use`] (keyed on `jkt` and
//!   `jti`), after `verify_proof` succeeded;
//! - check [`Proof::nonce`] when server nonces are in use.
//!
//! The checks here follow RFC 9449 section 4.3. Proofs are signed with
//! EdDSA (Ed25519, ed25519-dalek, strict verification) or ES256 (P-256,
//! ring, fixed-width `r || s` signatures); `none` and symmetric algorithms
//! never verify. Duplicate JSON member names resolve to the last one, as
//! RFC 7515 section 5.2 allows.

#![warn(missing_docs)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Map, Value};

use key::{sha256, thumbprint_ec, thumbprint_okp, Alg, PublicKey};

#[path = "dpop_htu.rs"]
mod htu;
#[path = "dpop_key.rs"]
mod key;
#[path = "dpop_p256.rs"]
mod p256;
#[path = "dpop_replay.rs"]
mod replay;

pub use htu::normalize_htu;
pub use replay::ReplayCache;

/// The JWT `typ` of DPoP proofs, compared exactly.
pub const DPOP_TYP: &str = "dpop+jwt";
/// Proofs older or newer than this (seconds, against `now`) are refused.
pub const PROOF_WINDOW_SECS: i64 = 60;
/// Algorithms accepted, as listed in discovery (`dpop_signing_alg_values_supported`).
pub const ALGS: &[&str] = &["EdDSA", "ES256"];
/// Longest proof worth parsing (bytes); longer ones are refused unread.
pub const MAX_PROOF_LEN: usize = 8192;
/// Longest `jti` accepted, in characters.
pub const MAX_JTI_CHARS: usize = 256;

/// What the request a proof came with looks like, as the server sees it.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The request's method, e.g. `"GET"`; compared case-sensitively with `htm`.
    pub htm: &'a str,
    /// The request's URI as the server is reached by clients:
    /// `scheme://host[:port]/path` (a query or fragment may be left on, it is
    /// ignored). Both sides go through [`normalize_htu`] before comparing.
    pub htu: &'a str,
    /// The access token presented with the request (the value after
    /// `DPoP ` in `Authorization`), if any: the proof must then carry an
    /// `ath` equal to [`ath`] of it. With `None`, an `ath` claim is ignored.
    pub access_token: Option<&'a str>,
    /// The current time, Unix seconds.
    pub now: i64,
}

/// A proof that passed every check of [`verify_proof`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's public key,
    /// base64url without padding: what `cnf.jkt` of a bound token holds.
    pub jkt: String,
    /// The proof's unique id (non-empty, at most [`MAX_JTI_CHARS`] characters).
    pub jti: String,
    /// When the proof was made, Unix seconds (within [`PROOF_WINDOW_SECS`] of `now`).
    pub iat: i64,
    /// The `nonce` claim, as sent, if it is a string. Checking it is the
    /// caller's business (server nonces are Recall's).
    pub nonce: Option<String>,
}

/// Why a DPoP proof was refused (all answer 401 `invalid_dpop_proof`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// Longer than [`MAX_PROOF_LEN`].
    #[error("DPoP proof too long")]
    TooLong,
    /// Not three base64url parts, or a header or claims set that is not a JSON object.
    #[error("malformed DPoP proof")]
    Malformed,
    /// `typ` missing or not exactly `dpop+jwt`.
    #[error("DPoP proof typ is not dpop+jwt")]
    BadType,
    /// `alg` missing, `none`, symmetric or not in [`ALGS`].
    #[error("DPoP proof algorithm not allowed")]
    BadAlgorithm,
    /// A `crit` header: no extension is understood.
    #[error("unsupported critical header in DPoP proof")]
    Critical,
    /// No `jwk` header.
    #[error("DPoP proof has no jwk header")]
    MissingJwk,
    /// The `jwk` does not fit `alg` or is not a usable public key: wrong
    /// `kty` or `crv`, wrong length, not on the curve, small order, or a
    /// non-canonical encoding.
    #[error("unusable key in DPoP proof")]
    BadKey,
    /// The `jwk` carries private key material (`d`, `k`, ...).
    #[error("DPoP proof jwk contains a private key")]
    PrivateKey,
    /// The signature does not verify with the `jwk`.
    #[error("bad DPoP proof signature")]
    BadSignature,
    /// A required claim (`jti`, `htm`, `htu`, `iat`) is absent.
    #[error("DPoP proof lacks a required claim")]
    MissingClaim,
    /// A claim of the wrong type (`iat` not an integer, `jti` not a
    /// string, empty or too long, `nonce` not a string, ...).
    #[error("invalid claim in DPoP proof")]
    BadClaim,
    /// `htm` is not the request's method.
    #[error("DPoP proof htm does not match the request method")]
    BadMethod,
    /// `htu` is not the request's URI (or either is not an absolute http(s) URI).
    #[error("DPoP proof htu does not match the request URI")]
    BadUri,
    /// `iat` more than [`PROOF_WINDOW_SECS`] away from now.
    #[error("DPoP proof iat outside the acceptable window")]
    Stale,
    /// An access token was presented and the proof has no `ath`.
    #[error("DPoP proof lacks ath")]
    MissingAth,
    /// `ath` is not the hash of the access token presented.
    #[error("DPoP proof ath does not match the access token")]
    BadAth,
}

impl DpopError {
    /// A metric label for the failure.
    pub fn reason(&self) -> &'static str {
        match self {
            DpopError::TooLong => "too_long",
            DpopError::Malformed => "malformed",
            DpopError::BadType => "bad_type",
            DpopError::BadAlgorithm => "bad_algorithm",
            DpopError::Critical => "critical_header",
            DpopError::MissingJwk => "missing_jwk",
            DpopError::BadKey => "bad_key",
            DpopError::PrivateKey => "private_key",
            DpopError::BadSignature => "bad_signature",
            DpopError::MissingClaim => "missing_claim",
            DpopError::BadClaim => "bad_claim",
            DpopError::BadMethod => "bad_method",
            DpopError::BadUri => "bad_uri",
            DpopError::Stale => "stale",
            DpopError::MissingAth => "missing_ath",
            DpopError::BadAth => "bad_ath",
        }
    }
}

#[cfg(test)]
impl DpopError {
    /// Every variant, for the tests that go through them all.
    pub(crate) const ALL: [DpopError; 16] = [
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
}

/// Verifies a DPoP proof (the value of the request's single `DPoP` header)
/// against the request it came with, per RFC 9449 section 4.3.
///
/// Checks, in order: length; three base64url parts; a JSON object header
/// with `typ` exactly `dpop+jwt`, `alg` in [`ALGS`], no `crit`, and a
/// public `jwk` fitting `alg`; the signature over `header.payload`; a JSON
/// object claims set with a string `jti`, `htm` equal to `expect.htm`,
/// `htu` equal to `expect.htu` (both normalized by [`normalize_htu`]), an
/// integer `iat` within [`PROOF_WINDOW_SECS`] of `expect.now`, and, when
/// `expect.access_token` is given, `ath` equal to [`ath`] of it.
///
/// Replay (`jti`), the token binding (`jkt` against `cnf.jkt`) and the
/// nonce are left to the caller: see the module documentation.
pub fn verify_proof(proof: &str, expect: &Expect<'_>) -> Result<Proof, DpopError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(DpopError::TooLong);
    }
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed);
    };
    let header = decode_object(header_b64)?;

    match header.get("typ") {
        None => return Err(DpopError::BadType),
        Some(Value::String(typ)) if typ == DPOP_TYP => {}
        Some(_) => return Err(DpopError::BadType),
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => Alg::from_name(alg).ok_or(DpopError::BadAlgorithm)?,
        _ => return Err(DpopError::BadAlgorithm),
    };
    // No extension is understood, so any `crit` is refused (RFC 7515 4.1.11).
    if header.contains_key("crit") {
        return Err(DpopError::Critical);
    }
    let jwk = header.get("jwk").ok_or(DpopError::MissingJwk)?;
    let key = PublicKey::from_jwk(alg, jwk)?;

    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| DpopError::Malformed)?;
    // The signing input is the first two parts as sent (RFC 7515 5.2).
    let signed = proof
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or(DpopError::Malformed)?;
    key.verify(signed.as_bytes(), &signature)?;

    let claims = decode_object(payload_b64)?;
    let jti = str_claim(&claims, "jti")?.ok_or(DpopError::MissingClaim)?;
    if jti.is_empty() || jti.chars().count() > MAX_JTI_CHARS {
        return Err(DpopError::BadClaim);
    }
    let htm = str_claim(&claims, "htm")?.ok_or(DpopError::MissingClaim)?;
    let htu = str_claim(&claims, "htu")?.ok_or(DpopError::MissingClaim)?;
    let iat = match claims.get("iat") {
        None => return Err(DpopError::MissingClaim),
        Some(iat) => iat.as_i64().ok_or(DpopError::BadClaim)?,
    };
    let nonce = str_claim(&claims, "nonce")?;

    if htm != expect.htm {
        return Err(DpopError::BadMethod);
    }
    let expected_htu = normalize_htu(expect.htu).ok_or(DpopError::BadUri)?;
    if normalize_htu(htu).as_deref() != Some(expected_htu.as_str()) {
        return Err(DpopError::BadUri);
    }
    if iat.abs_diff(expect.now) > PROOF_WINDOW_SECS.unsigned_abs() {
        return Err(DpopError::Stale);
    }
    // `ath` is for requests that present a token (RFC 9449 4.2); without
    // one (a token request) an `ath` claim is ignored, not refused.
    if let Some(token) = expect.access_token {
        let sent = str_claim(&claims, "ath")?.ok_or(DpopError::MissingAth)?;
        if sent != ath(token) {
            return Err(DpopError::BadAth);
        }
    }

    Ok(Proof {
        jkt: key.thumbprint(),
        jti: jti.to_owned(),
        iat,
        nonce: nonce.map(str::to_owned),
    })
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK, base64url without
/// padding: for `kty` `OKP` over `{"crv","kty","x"}`, for `EC` over
/// `{"crv","kty","x","y"}`, members in lexicographic order, no whitespace.
///
/// Only the presence and type (string) of those members is checked, not
/// the key itself ([`verify_proof`] does that). Private members, if any,
/// do not enter the thumbprint (RFC 7638 section 3.2.1). Other key types
/// are [`DpopError::BadKey`].
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, DpopError> {
    let jwk = jwk.as_object().ok_or(DpopError::BadKey)?;
    let member = |name: &str| match jwk.get(name) {
        Some(Value::String(s)) => Ok(s.as_str()),
        _ => Err(DpopError::BadKey),
    };
    match member("kty")? {
        "OKP" => Ok(thumbprint_okp(member("crv")?, member("x")?)),
        "EC" => Ok(thumbprint_ec(member("crv")?, member("x")?, member("y")?)),
        _ => Err(DpopError::BadKey),
    }
}

/// The `ath` of an access token: base64url(SHA-256(token as ASCII)), no padding.
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(access_token.as_bytes()))
}

/// For clients and tests: a DPoP proof signed with the Ed25519 key of the
/// 32-byte `seed`. Header `{typ: dpop+jwt, alg: EdDSA, jwk: {kty: OKP, crv:
/// Ed25519, x}}`, claims `{jti, htm, htu, iat}` plus `ath` and `nonce` when given.
pub fn ed25519_proof(
    seed: &[u8; 32],
    htm: &str,
    htu: &str,
    iat: i64,
    jti: &str,
    ath: Option<&str>,
    nonce: Option<&str>,
) -> String {
    let key = SigningKey::from_bytes(seed);
    let header = serde_json::json!({
        "typ": DPOP_TYP,
        "alg": "EdDSA",
        "jwk": {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        },
    });
    let mut claims = serde_json::json!({
        "jti": jti,
        "htm": htm,
        "htu": htu,
        "iat": iat,
    });
    if let Value::Object(claims) = &mut claims {
        if let Some(ath) = ath {
            claims.insert("ath".into(), ath.into());
        }
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), nonce.into());
        }
    }
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// The thumbprint of the Ed25519 public key of `seed`: the `cnf.jkt` of a
/// token bound to it, and the [`Proof::jkt`] of proofs it signs.
pub fn ed25519_jkt(seed: &[u8; 32]) -> String {
    let key = SigningKey::from_bytes(seed);
    thumbprint_okp(
        "Ed25519",
        &URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
    )
}

/// A base64url part that must decode to a JSON object.
fn decode_object(part: &str) -> Result<Map<String, Value>, DpopError> {
    let json = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| DpopError::Malformed)?;
    match serde_json::from_slice(&json) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(DpopError::Malformed),
    }
}

/// A claim that must be a string when present.
fn str_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, DpopError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DpopError::BadClaim),
    }
}

#[cfg(test)]
#[path = "dpop_tests.rs"]
mod tests;
