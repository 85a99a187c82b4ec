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
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde_json::{Map, Value};

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

/// JWK members that only a private (or symmetric) key has. A proof whose
/// `jwk` carries any of them is refused, whatever its `kty`.
/// Ed25519 proof keys already checked (by their 32 bytes), and whether usable.
static ED25519_KEYS: std::sync::OnceLock<quick_cache::sync::Cache<[u8; 32], Option<VerifyingKey>>> =
    std::sync::OnceLock::new();
const KEYS_CACHED: usize = 16_384;

const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

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

/// Normalizes an `htu` (or the request URI it is compared with) per RFC
/// 3986 sections 6.2.2 and 6.2.3, as RFC 9449 4.3 recommends: drops the
/// query and fragment, lowercases scheme and host, drops the default port
/// (`:443` for https, `:80` for http) and an empty one, makes an empty path
/// `/`, uppercases percent-encodings and decodes those of unreserved
/// characters, and removes `.` and `..` path segments.
///
/// `None` if `uri` is not an absolute `http` or `https` URI with a host,
/// carries userinfo, a bad port or bad percent-encoding, or has characters
/// outside those URIs allow (before its query).
pub fn normalize_htu(uri: &str) -> Option<String> {
    let uri = uri.split(['?', '#']).next().unwrap_or_default();
    if !uri.bytes().all(is_uri_byte) {
        return None;
    }
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return None;
    }
    // The port is after the last ':' that is not inside an IP literal.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port),
        _ => (authority, ""),
    };
    if host.is_empty() {
        return None;
    }
    let host = if let Some(literal) = host.strip_prefix('[') {
        // An IP literal: one pair of brackets around something.
        let inner = literal.strip_suffix(']')?;
        if inner.is_empty() || inner.contains(['[', ']']) {
            return None;
        }
        host.to_ascii_lowercase()
    } else {
        if host.contains(['[', ']', ':']) {
            return None;
        }
        normalize_pct(host)?.to_ascii_lowercase()
    };
    let port = if port.is_empty() {
        None
    } else {
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let port: u16 = port.parse().ok()?;
        (port != default_port).then_some(port)
    };
    if path.contains(['[', ']']) {
        return None;
    }
    let path = remove_dot_segments(&normalize_pct(path)?);

    let mut out = String::with_capacity(uri.len() + 1);
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&host);
    if let Some(port) = port {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(&path);
    Some(out)
}

#[path = "dpop_replay.rs"]
mod replay;
pub use replay::ReplayCache;

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

/// The algorithms of [`ALGS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    EdDsa,
    Es256,
}

impl Alg {
    fn from_name(name: &str) -> Option<Alg> {
        match name {
            "EdDSA" => Some(Alg::EdDsa),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }
}

/// A proof's public key, checked usable.
enum PublicKey {
    Ed25519(VerifyingKey),
    /// The uncompressed SEC1 point, 0x04 || x || y, on the curve.
    P256([u8; 65]),
}

impl PublicKey {
    /// The key of a `jwk` header for `alg`.
    fn from_jwk(alg: Alg, jwk: &Value) -> Result<PublicKey, DpopError> {
        let jwk = jwk.as_object().ok_or(DpopError::BadKey)?;
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(DpopError::PrivateKey);
        }
        let member = |name: &str| match jwk.get(name) {
            Some(Value::String(s)) => Ok(s.as_str()),
            _ => Err(DpopError::BadKey),
        };
        // An `alg` in the key, if any, must be the proof's.
        match jwk.get("alg") {
            None => {}
            Some(Value::String(a)) if Alg::from_name(a) == Some(alg) => {}
            Some(_) => return Err(DpopError::BadKey),
        }
        // Base64url without padding and with zero trailing bits (the
        // engine's default), so each key has one encoding and one `jkt`.
        let coordinate = |name: &str| -> Result<[u8; 32], DpopError> {
            let bytes = URL_SAFE_NO_PAD
                .decode(member(name)?)
                .map_err(|_| DpopError::BadKey)?;
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| DpopError::BadKey)
        };
        match alg {
            Alg::EdDsa => {
                if member("kty")? != "OKP" || member("crv")? != "Ed25519" {
                    return Err(DpopError::BadKey);
                }
                let x = coordinate("x")?;
                // A client signs every request with one key: its checked
                // form is remembered (parsing costs a decompression, a
                // small-order check and a recompression per proof).
                let cache = ED25519_KEYS.get_or_init(|| quick_cache::sync::Cache::new(KEYS_CACHED));
                if let Some(known) = cache.get(&x) {
                    return known.map(PublicKey::Ed25519).ok_or(DpopError::BadKey);
                }
                let checked = VerifyingKey::from_bytes(&x).ok().filter(|key| {
                    // Small-order keys verify signatures for many messages; a
                    // non-canonical y would give the same key a second `jkt`.
                    !key.is_weak() && key.to_edwards().compress().to_bytes() == x
                });
                cache.insert(x, checked);
                checked.map(PublicKey::Ed25519).ok_or(DpopError::BadKey)
            }
            Alg::Es256 => {
                if member("kty")? != "EC" || member("crv")? != "P-256" {
                    return Err(DpopError::BadKey);
                }
                let (x, y) = (coordinate("x")?, coordinate("y")?);
                if !p256::is_on_curve(&x, &y) {
                    return Err(DpopError::BadKey);
                }
                let mut point = [0u8; 65];
                point[0] = 0x04;
                point[1..33].copy_from_slice(&x);
                point[33..].copy_from_slice(&y);
                Ok(PublicKey::P256(point))
            }
        }
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), DpopError> {
        match self {
            PublicKey::Ed25519(key) => {
                let signature =
                    Signature::from_slice(signature).map_err(|_| DpopError::BadSignature)?;
                // Strict: canonical S and R, no small-order R.
                key.verify_strict(message, &signature)
                    .map_err(|_| DpopError::BadSignature)
            }
            PublicKey::P256(point) => {
                // ECDSA signatures are malleable ((r, s) and (r, n - s) both
                // verify): harmless here, replay is keyed on (jkt, jti).
                ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P256_SHA256_FIXED,
                    point,
                )
                .verify(message, signature)
                .map_err(|_| DpopError::BadSignature)
            }
        }
    }

    fn thumbprint(&self) -> String {
        match self {
            PublicKey::Ed25519(key) => {
                thumbprint_okp("Ed25519", &URL_SAFE_NO_PAD.encode(key.as_bytes()))
            }
            PublicKey::P256(point) => thumbprint_ec(
                "P-256",
                &URL_SAFE_NO_PAD.encode(&point[1..33]),
                &URL_SAFE_NO_PAD.encode(&point[33..]),
            ),
        }
    }
}

/// A JSON string literal (quoted and escaped).
fn json_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn thumbprint_okp(crv: &str, x: &str) -> String {
    let json = format!(
        r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
        json_str(crv),
        json_str(x)
    );
    URL_SAFE_NO_PAD.encode(sha256(json.as_bytes()))
}

fn thumbprint_ec(crv: &str, x: &str, y: &str) -> String {
    let json = format!(
        r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
        json_str(crv),
        json_str(x),
        json_str(y)
    );
    URL_SAFE_NO_PAD.encode(sha256(json.as_bytes()))
}

fn sha256(bytes: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, bytes)
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

/// Bytes an http(s) URI may hold (RFC 3986 2.2, 2.3, and `%`).
fn is_uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// Uppercases percent-encodings and decodes those of unreserved characters
/// (RFC 3986 6.2.2.1, 6.2.2.2); `None` on a `%` not followed by two hex digits.
fn normalize_pct(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(char::from(b));
            continue;
        }
        let (hi, lo) = (bytes.next()?, bytes.next()?);
        let (h, l) = (char::from(hi).to_digit(16)?, char::from(lo).to_digit(16)?);
        // Two hex digits: at most 0xFF.
        let decoded = u8::try_from(h * 16 + l).ok()?;
        if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
            out.push(char::from(decoded));
        } else {
            out.push('%');
            out.push(char::from(hi).to_ascii_uppercase());
            out.push(char::from(lo).to_ascii_uppercase());
        }
    }
    Some(out)
}

/// An absolute path with `.` and `..` segments resolved (RFC 3986 5.2.4,
/// 6.2.2.3); an empty path is `/` (6.2.3).
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.strip_prefix('/').unwrap_or(path).split('/') {
        trailing_slash = false;
        match segment {
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            _ => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    out.push_str(&segments.join("/"));
    if trailing_slash && !out.ends_with('/') {
        out.push('/');
    }
    out
}

#[path = "dpop_p256.rs"]
mod p256;

#[cfg(test)]
#[path = "dpop_tests.rs"]
mod tests;
