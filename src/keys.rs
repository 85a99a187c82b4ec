//! Signing-key material: generation, and encryption of the private half at
//! rest under `RECALL_MASTER_KEY` (ChaCha20-Poly1305, kid as associated data).
//!
//! May import: domain, events, clock, random, files. The layers:
//! docs/DESIGN.md, "Parts".

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;

use crate::clock::Timestamp;
use crate::domain::KeyStatus;

/// A signing key row; the private half is encrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    pub public_key: Vec<u8>,
    pub private_key_enc: Vec<u8>,
    pub status: KeyStatus,
    pub created_at: Timestamp,
    pub retire_after: Option<Timestamp>,
}

/// The fixed label the master-key fingerprint is an HMAC of (versioned, so
/// the fingerprint's form can change without meaning another key).
const FINGERPRINT_LABEL: &[u8] = b"recall fleet fingerprint v1";

/// The 32-byte key that encrypts private signing keys.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Errors of key handling.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("RECALL_MASTER_KEY must be 32 bytes in base64: {0}")]
    BadMasterKey(String),
    #[error("cannot decrypt signing key {0}: wrong master key or corrupt row")]
    Decrypt(String),
    #[error("key file: {0}")]
    Io(String),
    #[error("key encoding: {0}")]
    Encoding(String),
}

impl MasterKey {
    /// Parses the base64 form of `RECALL_MASTER_KEY`.
    pub fn parse(b64: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(b64.trim())
            .map_err(|e| KeyError::BadMasterKey(e.to_string()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|v: Vec<u8>| KeyError::BadMasterKey(format!("got {} bytes", v.len())))?;
        Ok(MasterKey(arr))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        MasterKey(crate::random::bytes())
    }

    /// Reads `dir/master.key`, creating it (mode 0600) on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join("master.key");
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => return MasterKey::parse(&text),
            Ok(_) => {
                // Empty: what a start killed between creating the file and
                // writing it left behind (before the key was written
                // atomically). Nothing can have been sealed with a key that
                // was never written, unless the database holds something.
                let db = dir.join("recall.db");
                if std::fs::metadata(&db).is_ok_and(|m| m.len() > 0) {
                    return Err(KeyError::Io(format!(
                        "{} is empty but {} is not: restore the master key, or set \
                         RECALL_MASTER_KEY",
                        path.display(),
                        db.display()
                    )));
                }
                tracing::warn!(path = %path.display(), "replacing an empty master key file left by an interrupted start");
                std::fs::remove_file(&path).map_err(|e| KeyError::Io(e.to_string()))?;
            }
            Err(_) => {}
        }
        crate::files::private_dir(dir).map_err(|e| KeyError::Io(e.to_string()))?;
        let key = MasterKey::generate();
        match crate::files::write_private(&path, &key.to_base64()) {
            Ok(()) => Ok(key),
            // Another process starting on this directory wrote it first.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text =
                    std::fs::read_to_string(&path).map_err(|e| KeyError::Io(e.to_string()))?;
                MasterKey::parse(&text)
            }
            Err(e) => Err(KeyError::Io(e.to_string())),
        }
    }

    /// The base64 form.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// A 32-byte subkey for one purpose (HKDF-SHA256, RFC 5869): `salt`
    /// names the purpose, `info` binds the context (a channel name, say), so
    /// no two uses ever share a key and the master key itself never leaves.
    pub fn derive(&self, salt: &[u8], info: &[u8]) -> [u8; 32] {
        let mut okm = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 255 * 32 limit: expand cannot fail.
        let _ = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &self.0).expand(info, &mut okm);
        okm
    }

    /// A short public name of this key (16 hex digits): HMAC-SHA256 of a
    /// fixed label under it, so the instances of a fleet can tell whether
    /// they share a key (G13) while the key itself is never stored or shown.
    pub fn fingerprint(&self) -> String {
        use hmac::Mac;
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!());
        mac.update(FINGERPRINT_LABEL);
        let tag = mac.finalize().into_bytes();
        // 64 bits tell a misconfigured key apart; more would only be longer to read.
        tag.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new((&self.0).into())
    }

    /// nonce || ciphertext of `plain`, bound to `kid`.
    pub fn seal(&self, kid: &str, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; 12] = crate::random::bytes();
        let payload = Payload {
            msg: plain,
            aad: kid.as_bytes(),
        };
        let ct = self
            .cipher()
            .encrypt(&Nonce::from(nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(ct);
        out
    }

    /// Opens what `seal` made for `kid`.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < 12 + 16 {
            return Err(KeyError::Decrypt(kid.to_owned()));
        }
        let (nonce, ct) = sealed.split_at(12);
        let nonce = Nonce::try_from(nonce).map_err(|_| KeyError::Decrypt(kid.to_owned()))?;
        self.cipher()
            .decrypt(
                &nonce,
                Payload {
                    msg: ct,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Decrypt(kid.to_owned()))
    }
}

/// A new random key id.
pub fn new_kid() -> String {
    let b: [u8; 12] = crate::random::bytes();
    URL_SAFE_NO_PAD.encode(b)
}

/// Generates an Ed25519 key and returns its row, private half sealed.
pub fn generate_signing_key(master: &MasterKey, now: Timestamp) -> Result<KeyRecord, KeyError> {
    let signing = SigningKey::from_bytes(&crate::random::bytes());
    let der = signing
        .to_pkcs8_der()
        .map_err(|e| KeyError::Encoding(e.to_string()))?;
    let kid = new_kid();
    Ok(KeyRecord {
        private_key_enc: master.seal(&kid, der.as_bytes()),
        public_key: signing.verifying_key().to_bytes().to_vec(),
        kid,
        alg: "EdDSA".to_owned(),
        status: crate::domain::KeyStatus::Active,
        created_at: now,
        retire_after: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_the_same_master_key_and_kid() {
        let master = MasterKey::generate();
        let rec = generate_signing_key(&master, Timestamp::from_ms(1)).unwrap();
        let der = master.open(&rec.kid, &rec.private_key_enc).unwrap();
        assert!(der.len() > 32);
        assert!(MasterKey::generate()
            .open(&rec.kid, &rec.private_key_enc)
            .is_err());
        assert!(master.open("other", &rec.private_key_enc).is_err());
        assert!(master.open(&rec.kid, &rec.private_key_enc[..20]).is_err());
        assert!(MasterKey::parse(&master.to_base64()).is_ok());
        assert!(MasterKey::parse("c2hvcnQ=").is_err());
    }

    #[test]
    fn derived_keys_differ_by_master_salt_and_info() {
        let master = MasterKey::generate();
        let a = master.derive(b"purpose", b"chan-a");
        assert_eq!(a, master.derive(b"purpose", b"chan-a"));
        assert_ne!(a, master.derive(b"purpose", b"chan-b"));
        assert_ne!(a, master.derive(b"other", b"chan-a"));
        assert_ne!(a, MasterKey::generate().derive(b"purpose", b"chan-a"));
        assert_ne!(&a, &master.0);
    }

    #[test]
    fn fingerprints_are_short_stable_and_differ_by_key() {
        let master = MasterKey::generate();
        let print = master.fingerprint();
        assert_eq!(print.len(), 16);
        assert!(print.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            print,
            MasterKey::parse(&master.to_base64()).unwrap().fingerprint()
        );
        assert_ne!(print, MasterKey::generate().fingerprint());
    }
}
