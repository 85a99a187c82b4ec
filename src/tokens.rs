//! Access tokens on Recall's side: the verifier crate's keyring (public
//! keys, header, signature and claim checks, the verified-token cache),
//! plus the signing halves of the keys this instance may sign with. One
//! verification path serves Recall and every verifier alike.
//!
//! May import: keys, domain, events, clock. The layers: docs/DESIGN.md,
//! "Parts".

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::RwLock;

use crate::keys::KeyRecord;
use crate::keys::{KeyError, MasterKey};

pub use recall_verifier::token::{
    Claims, Confirmation, TokenError, Verified, ACCESS_TYP, LEEWAY_SECS,
};

/// Key material by kid: public keys for verification (shared with the
/// verifier crate), private keys for signing where this instance may sign.
/// Statuses live in the revocation state; this only knows bytes.
pub struct Keyring {
    issuer: String,
    audience: String,
    public: recall_verifier::Keyring,
    signing: RwLock<HashMap<String, EncodingKey>>,
}

impl Keyring {
    /// An empty keyring signing as `issuer` for `audience`; tokens of any
    /// of `also_accepted` issuers verify too (a changed issuer's tokens
    /// keep working until they expire).
    pub fn new(issuer: &str, also_accepted: &[&str], audience: &str) -> Self {
        let mut issuers = vec![issuer];
        issuers.extend(also_accepted.iter().filter(|i| **i != issuer));
        Keyring {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            public: recall_verifier::Keyring::new(&issuers, audience),
            signing: RwLock::new(HashMap::new()),
        }
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Every issuer whose tokens verify here, the configured one first.
    pub fn accepted_issuers(&self) -> Vec<String> {
        self.public.issuers()
    }

    /// Accepts `issuer`'s tokens too from now on: the fleet changed its
    /// issuer while this instance runs, and a rolling restart must not
    /// split it (G13). Returns whether it was new here.
    pub fn accept_issuer(&self, issuer: &str) -> bool {
        self.public.accept_issuer(issuer)
    }

    /// The configured audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Loads (or reloads) key rows; private halves of active keys are
    /// decrypted with `master`.
    pub fn load(&self, records: &[KeyRecord], master: &MasterKey) -> Result<(), KeyError> {
        for rec in records {
            if rec.alg != "EdDSA" {
                continue;
            }
            let sign = rec.status == crate::domain::KeyStatus::Active
                && !self.signing.read().contains_key(&rec.kid);
            if sign {
                let der = master.open(&rec.kid, &rec.private_key_enc)?;
                self.signing
                    .write()
                    .insert(rec.kid.clone(), EncodingKey::from_ed_der(&der));
            }
            self.public.insert(&rec.kid, &rec.public_key);
        }
        Ok(())
    }

    /// Whether `kid`'s public key is loaded.
    pub fn has(&self, kid: &str) -> bool {
        self.public.has(kid)
    }

    /// Whether `kid` can sign here.
    pub fn can_sign(&self, kid: &str) -> bool {
        self.signing.read().contains_key(kid)
    }

    /// Drops expired tokens from the verified cache (at most every 30 s).
    pub fn sweep_expired(&self, now_secs: i64) -> usize {
        self.public.sweep_expired(now_secs)
    }

    /// The public key bytes of `kid`.
    pub fn public_key(&self, kid: &str) -> Option<Vec<u8>> {
        self.public.public_key(kid)
    }

    /// Signs `claims` with `kid`.
    pub fn issue(&self, kid: &str, claims: &Claims) -> Result<String, TokenError> {
        self.sign_json(kid, ACCESS_TYP, claims)
    }

    /// Signs any claims with `kid` under the JWT `typ` given (`at+jwt` for
    /// access tokens, `secevent+jwt` for Security Event Tokens).
    pub fn sign_json(
        &self,
        kid: &str,
        typ: &str,
        claims: &impl serde::Serialize,
    ) -> Result<String, TokenError> {
        let signing = self.signing.read();
        let encoding = signing.get(kid).ok_or(TokenError::UnknownKid)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(typ.to_owned());
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, encoding).map_err(|_| TokenError::Malformed)
    }

    /// `verify` through the cache of verified tokens, at `now` (seconds).
    pub fn verify_cached(&self, token: &str, now: i64) -> Result<Verified, TokenError> {
        self.public.verify_cached(token, now)
    }

    /// Verifies header, signature and claims; returns the claims and kid.
    /// Revocation is the caller's next step (`RevocationState::check`).
    pub fn verify(&self, token: &str) -> Result<(Claims, String), TokenError> {
        self.public.verify(token)
    }
}

/// Base64url (no padding) of bytes, as in JWKs (the verifier crate's).
pub use recall_verifier::token::b64url;

/// Which of `records` signed `token`, whenever it was valid: the header
/// and signature checks of verification and the claims' shape, but no
/// clock, issuer or audience (forensics asks about any past moment, and
/// only this fleet's keys sign). Every key counts, retired ones too.
pub fn signed_by(records: &[KeyRecord], token: &str) -> Result<(Claims, String), TokenError> {
    let ring = recall_verifier::Keyring::new(&[], "");
    for rec in records.iter().filter(|r| r.alg == "EdDSA") {
        ring.insert(&rec.kid, &rec.public_key);
    }
    ring.verify_signature(token)
}
