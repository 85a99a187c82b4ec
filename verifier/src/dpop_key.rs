//! A DPoP proof's public key: the `jwk` header checked usable for the
//! proof's `alg` (no private members, the right `kty` and `crv`, on the
//! curve, not small order, one encoding per key), signatures checked with
//! it, and RFC 7638 thumbprints. Imports only `dpop` itself (its errors)
//! and `p256` (the curve check); no I/O.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;

use super::p256;
use super::DpopError;

/// Ed25519 proof keys already checked (by their 32 bytes), and whether usable.
static ED25519_KEYS: std::sync::OnceLock<quick_cache::sync::Cache<[u8; 32], Option<VerifyingKey>>> =
    std::sync::OnceLock::new();
const KEYS_CACHED: usize = 16_384;

/// JWK members that only a private (or symmetric) key has. A proof whose
/// `jwk` carries any of them is refused, whatever its `kty`.
pub(super) const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The algorithms of [`ALGS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alg {
    EdDsa,
    Es256,
}

impl Alg {
    pub(super) fn from_name(name: &str) -> Option<Alg> {
        match name {
            "EdDSA" => Some(Alg::EdDsa),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }
}

/// A proof's public key, checked usable.
pub(super) enum PublicKey {
    Ed25519(VerifyingKey),
    /// The uncompressed SEC1 point, 0x04 || x || y, on the curve.
    P256([u8; 65]),
}

impl PublicKey {
    /// The key of a `jwk` header for `alg`.
    pub(super) fn from_jwk(alg: Alg, jwk: &Value) -> Result<PublicKey, DpopError> {
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

    pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), DpopError> {
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

    pub(super) fn thumbprint(&self) -> String {
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

pub(super) fn thumbprint_okp(crv: &str, x: &str) -> String {
    let json = format!(
        r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
        json_str(crv),
        json_str(x)
    );
    URL_SAFE_NO_PAD.encode(sha256(json.as_bytes()))
}

pub(super) fn thumbprint_ec(crv: &str, x: &str, y: &str) -> String {
    let json = format!(
        r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
        json_str(crv),
        json_str(x),
        json_str(y)
    );
    URL_SAFE_NO_PAD.encode(sha256(json.as_bytes()))
}

pub(super) fn sha256(bytes: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            let jwk = |x: [u8; 32]| json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(x)});
            assert!(PublicKey::from_jwk(Alg::EdDsa, &jwk(canonical)).is_ok());
            assert!(matches!(
                PublicKey::from_jwk(Alg::EdDsa, &jwk(shifted)),
                Err(DpopError::BadKey)
            ));
            found += 1;
        }
        assert!(found > 0);
    }
}
