//! The keys the verifier checks with: issuer and audience (configured, or
//! from the upstream's metadata), the signing keys of Recall's JWKS
//! (fetched again for an unknown `kid`, at most once per
//! `JWKS_REFRESH_MIN`) and the network-binding key that feed pages carry.
//! Imports `token`, `binding` and `error`; reaches Recall through the
//! feed's `get`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::feed::FeedPage;
use super::Verifier;
use crate::binding::BindingKey;
use crate::error::VerifyError;
use crate::token::{Jwks, Keyring, TokenError};

/// Shortest time between two JWKS fetches caused by an unknown `kid`
/// (and between two fetches of the binding key while there is none).
pub const JWKS_REFRESH_MIN: Duration = Duration::from_secs(3);

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    #[serde(default)]
    recall_accepted_issuers: Vec<String>,
    #[serde(default)]
    recall_audience: Option<String>,
}

impl Verifier {
    pub(super) fn key_fetch_due(&self) -> bool {
        let mut last = self.inner.last_key_fetch.lock();
        if last.is_some_and(|t| t.elapsed() < JWKS_REFRESH_MIN) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Keeps the binding key a feed page carries (an absent one changes
    /// nothing: an older upstream in the list does not drop it).
    pub(super) fn keep_binding_key(&self, page: &FeedPage) {
        let Some(text) = &page.binding_key else {
            return;
        };
        match BindingKey::from_b64(text) {
            Some(key) => *self.inner.binding_key.write() = Some(Arc::new(key)),
            None => tracing::warn!(
                "verifier: the feed's binding_key is not 32 bytes of base64url; ignored"
            ),
        }
    }

    /// The binding key alone, from a page of the feed (the items are the
    /// stream's business).
    pub(super) async fn fetch_binding_key(&self) {
        let page = match self
            .get(&format!("/v1/revocations?after={}&limit=1", self.cursor()))
            .await
        {
            Ok(res) => res.json::<FeedPage>().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match page {
            Ok(page) => self.keep_binding_key(&page),
            Err(e) => tracing::warn!(error = %e, "verifier: binding key fetch failed"),
        }
    }

    /// The network-binding key, or `NoBindingKey` while there is none.
    pub(super) fn binding_key(&self) -> Result<Arc<BindingKey>, VerifyError> {
        self.inner
            .binding_key
            .read()
            .clone()
            .ok_or(VerifyError::NoBindingKey)
    }

    /// `attempt`'s answer; when it names a key not seen yet, and the JWKS
    /// may be fetched (at most once per `JWKS_REFRESH_MIN`), its answer
    /// once the JWKS is fetched.
    pub(super) async fn with_new_jwks<T>(
        &self,
        attempt: impl Fn() -> Result<T, VerifyError>,
    ) -> Result<T, VerifyError> {
        match attempt() {
            Err(VerifyError::Token(TokenError::UnknownKid)) if self.jwks_due() => {
                self.fetch_jwks().await;
                attempt()
            }
            other => other,
        }
    }

    pub(super) fn jwks_due(&self) -> bool {
        let last = *self.inner.last_jwks.lock();
        last.is_none_or(|t| t.elapsed() >= JWKS_REFRESH_MIN)
    }

    pub(super) async fn fetch_jwks(&self) {
        *self.inner.last_jwks.lock() = Some(Instant::now());
        self.inner
            .counters
            .jwks_fetches
            .fetch_add(1, Ordering::Relaxed);
        let jwks = match self.get("/.well-known/jwks.json").await {
            Ok(res) => res.json::<Jwks>().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match (jwks, self.inner.keyring.read().clone()) {
            (Ok(jwks), Some(keyring)) => {
                let added = keyring.load_jwks(&jwks);
                if added > 0 {
                    tracing::info!(added, "verifier: new signing keys from the JWKS");
                }
            }
            (Err(e), _) => tracing::warn!(error = %e, "verifier: JWKS fetch failed"),
            (Ok(_), None) => {}
        }
    }

    /// Issuer and audience: configured, or from the upstream's metadata.
    pub(super) async fn discover(&self) -> Result<(), String> {
        if self.inner.keyring.read().is_some() {
            return Ok(());
        }
        let cfg = &self.inner.config;
        let (issuers, audience) = if cfg.issuers.is_empty() || cfg.audience.is_empty() {
            let meta: Metadata = self
                .get("/.well-known/oauth-authorization-server")
                .await?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let mut issuers = vec![meta.issuer];
            issuers.extend(meta.recall_accepted_issuers);
            issuers.dedup();
            let audience = meta.recall_audience.unwrap_or_else(|| "recall-api".into());
            (
                if cfg.issuers.is_empty() {
                    issuers
                } else {
                    cfg.issuers.clone()
                },
                if cfg.audience.is_empty() {
                    audience
                } else {
                    cfg.audience.clone()
                },
            )
        } else {
            (cfg.issuers.clone(), cfg.audience.clone())
        };
        let refs: Vec<&str> = issuers.iter().map(String::as_str).collect();
        *self.inner.keyring.write() = Some(Arc::new(Keyring::new(&refs, &audience)));
        self.fetch_jwks().await;
        Ok(())
    }
}
