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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use parking_lot::Mutex;
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

/// A bounded in-process replay cache of DPoP proofs seen, keyed on the
/// proof's `jkt` and `jti`, each kept until `iat` + [`PROOF_WINDOW_SECS`]
/// (after which [`verify_proof`] refuses the proof as stale anyway).
///
/// Thread-safe. Expired entries are evicted as calls come; when the cache
/// is full of unexpired entries a new proof is refused rather than an old
/// one forgotten, so it fails closed. Per process: instances behind a load
/// balancer each keep their own, so a replay sent to another instance is
/// caught only within the window there (use server nonces to do better).
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<ReplayInner>,
}

struct ReplayInner {
    /// Key -> when it expires (unix seconds, inclusive).
    seen: HashMap<Arc<str>, i64>,
    /// The same keys by expiry, soonest first.
    by_expiry: BinaryHeap<Reverse<(i64, Arc<str>)>>,
}

impl ReplayCache {
    /// A cache holding at most `capacity` unexpired proofs.
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity,
            inner: Mutex::new(ReplayInner {
                seen: HashMap::new(),
                by_expiry: BinaryHeap::new(),
            }),
        }
    }

    /// Records the proof `(jkt, jti)` made at `iat`, and returns whether it
    /// is its first use: `false` for a repeat within the window, and also
    /// (failing closed) when the cache is full of unexpired proofs or when
    /// `iat` is outside [`PROOF_WINDOW_SECS`] of `now` (such a proof does
    /// not verify anyway). Call it after [`verify_proof`] succeeded, with
    /// the [`Proof`]'s `jkt`, `jti` and `iat`.
    pub fn first_use(&self, jkt: &str, jti: &str, iat: i64, now: i64) -> bool {
        if iat.abs_diff(now) > PROOF_WINDOW_SECS.unsigned_abs() {
            return false;
        }
        let expires = iat.saturating_add(PROOF_WINDOW_SECS);
        // Length-prefixed, so no two (jkt, jti) pairs share a key.
        let key = format!("{}:{jkt}{jti}", jkt.len());
        let mut inner = self.inner.lock();
        inner.evict(now);
        if inner.seen.contains_key(key.as_str()) || inner.seen.len() >= self.capacity {
            return false;
        }
        let key: Arc<str> = key.into();
        inner.seen.insert(key.clone(), expires);
        inner.by_expiry.push(Reverse((expires, key)));
        true
    }

    /// How many proofs are remembered (expired ones included until the next
    /// call to `first_use` evicts them).
    pub fn len(&self) -> usize {
        self.inner.lock().seen.len()
    }

    /// Whether no proof is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most unexpired proofs held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl ReplayInner {
    /// Forgets the proofs that expired before `now`.
    fn evict(&mut self, now: i64) {
        while let Some(Reverse((expires, _))) = self.by_expiry.peek() {
            if *expires >= now {
                break;
            }
            if let Some(Reverse((_, key))) = self.by_expiry.pop() {
                self.seen.remove(&key);
            }
        }
    }
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

/// Whether a point is on NIST P-256 (y² = x³ - 3x + b mod p, x and y < p),
/// with plain (not constant-time: public keys only) 256-bit arithmetic.
mod p256 {
    /// A field element, 64-bit limbs, least significant first.
    type Fe = [u64; 4];

    /// p = 2^256 - 2^224 + 2^192 + 2^96 - 1.
    const P: Fe = [
        0xffff_ffff_ffff_ffff,
        0x0000_0000_ffff_ffff,
        0x0000_0000_0000_0000,
        0xffff_ffff_0000_0001,
    ];
    /// The curve's b.
    const B: Fe = [
        0x3bce_3c3e_27d2_604b,
        0x651d_06b0_cc53_b0f6,
        0xb3eb_bd55_7698_86bc,
        0x5ac6_35d8_aa3a_93e7,
    ];

    pub(super) fn is_on_curve(x: &[u8; 32], y: &[u8; 32]) -> bool {
        let (x, y) = (from_be(x), from_be(y));
        if !less_than(&x, &P) || !less_than(&y, &P) {
            return false;
        }
        let y2 = mul(&y, &y);
        let x3 = mul(&mul(&x, &x), &x);
        let three_x = add(&add(&x, &x), &x);
        y2 == add(&sub(&x3, &three_x), &B)
    }

    fn from_be(bytes: &[u8; 32]) -> Fe {
        let mut fe = [0u64; 4];
        for (limb, chunk) in fe.iter_mut().zip(bytes.rchunks_exact(8)) {
            let mut be = [0u8; 8];
            be.copy_from_slice(chunk);
            *limb = u64::from_be_bytes(be);
        }
        fe
    }

    fn less_than(a: &Fe, b: &Fe) -> bool {
        a.iter().rev().cmp(b.iter().rev()).is_lt()
    }

    /// a - b and whether it borrowed.
    fn sub_raw(a: &Fe, b: &Fe) -> (Fe, bool) {
        let mut out = [0u64; 4];
        let mut borrow = false;
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            let (d, b1) = a.overflowing_sub(b);
            let (d, b2) = d.overflowing_sub(u64::from(borrow));
            *o = d;
            borrow = b1 || b2;
        }
        (out, borrow)
    }

    /// a + b and whether it carried.
    fn add_raw(a: &Fe, b: &Fe) -> (Fe, bool) {
        let mut out = [0u64; 4];
        let mut carry = false;
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            let (s, c1) = a.overflowing_add(b);
            let (s, c2) = s.overflowing_add(u64::from(carry));
            *o = s;
            carry = c1 || c2;
        }
        (out, carry)
    }

    /// a + b mod p, for a, b < p.
    fn add(a: &Fe, b: &Fe) -> Fe {
        let (sum, carry) = add_raw(a, b);
        if carry || !less_than(&sum, &P) {
            sub_raw(&sum, &P).0
        } else {
            sum
        }
    }

    /// a - b mod p, for a, b < p.
    fn sub(a: &Fe, b: &Fe) -> Fe {
        let (diff, borrow) = sub_raw(a, b);
        if borrow {
            add_raw(&diff, &P).0
        } else {
            diff
        }
    }

    /// a * b mod p, for a, b < p (double and add over the bits of a).
    fn mul(a: &Fe, b: &Fe) -> Fe {
        let mut acc = [0u64; 4];
        for limb in a.iter().rev() {
            for bit in (0..64).rev() {
                acc = add(&acc, &acc);
                if (limb >> bit) & 1 == 1 {
                    acc = add(&acc, b);
                }
            }
        }
        acc
    }

    #[cfg(test)]
    mod tests {
        fn hex32(s: &str) -> [u8; 32] {
            let mut out = [0u8; 32];
            for (o, i) in out.iter_mut().zip((0..64).step_by(2)) {
                *o = u8::from_str_radix(&s[i..i + 2], 16).expect("hex");
            }
            out
        }

        #[test]
        fn generator_is_on_the_curve_and_neighbours_are_not() {
            let gx = hex32("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296");
            let gy = hex32("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
            assert!(super::is_on_curve(&gx, &gy));
            // -G = (x, p - y) is on the curve too.
            let neg = super::sub(&[0; 4], &super::from_be(&gy));
            let mut neg_y = [0u8; 32];
            for (chunk, limb) in neg_y.rchunks_exact_mut(8).zip(neg) {
                chunk.copy_from_slice(&limb.to_be_bytes());
            }
            assert!(super::is_on_curve(&gx, &neg_y));
            let mut off = gy;
            off[31] ^= 1;
            assert!(!super::is_on_curve(&gx, &off));
            assert!(!super::is_on_curve(&[0; 32], &[0; 32]));
            // x >= p is refused even where x - p would be on the curve.
            assert!(!super::is_on_curve(&[0xff; 32], &gy));
        }
    }
}

#[cfg(test)]
mod tests {
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
            let key =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
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
        let cache = Arc::new(ReplayCache::new(1000));
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
}
