//! The verifier runtime: public keys from Recall's JWKS, revocations from
//! its feed, folded with the same `RevocationState` Recall uses, and
//! `authenticate` answering from memory. It fails closed: past the
//! staleness bound with no `head` heartbeat, every token is refused with
//! `Stale` (503), as a Recall instance does (G5).
//!
//! It follows `GET /v1/revocations/stream` (SSE), resumes with
//! `Last-Event-ID`, reconnects with backoff across the upstreams it was
//! given, and falls back to polling `GET /v1/revocations` while the stream
//! will not stay up.
//!
//! Bound tokens (a `cnf` or `net` claim) need the request, not only the
//! token: `authenticate_request` checks a DPoP proof (RFC 9449) against
//! the request's method and URI and this process's replay cache, and a
//! network binding against the client address with the binding key that
//! feed pages carry. A use from another network under `on_mismatch =
//! revoke` is reported to Recall (`POST /v1/revocations/mismatch`), which
//! ends the session fleet-wide.
//!
//! Its parts: `config` (what it is told), `feed` (following the feed and
//! folding it), `keys` (JWKS, issuer and audience, the binding key),
//! `mismatch` (reports of uses from another network), `introspect`
//! (RFC 7662 answers) and `metrics` (counters and their Prometheus text).
//! This file holds the verifier itself and the checks every request goes
//! through; the parts reach Recall only through `feed::get` and the
//! verifier's HTTP client.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::binding::BindingKey;
use crate::dpop::{self, Expect, ReplayCache};
use crate::error::{DpopRefusal, Principal, VerifyError};
use crate::request::{DpopHeader, Presented};
use crate::state::RevocationState;
use crate::token::{now_ms, Keyring, TokenError};

mod config;
mod feed;
mod introspect;
mod keys;
mod metrics;
mod mismatch;

pub use config::{Config, DPOP_REPLAY_CAPACITY};
pub use feed::FeedPage;
pub use keys::JWKS_REFRESH_MIN;
pub use metrics::{Counters, Refusals};

struct Inner {
    config: Config,
    http: reqwest::Client,
    keyring: RwLock<Option<Arc<Keyring>>>,
    state: RwLock<RevocationState>,
    /// Unix ms of the last heartbeat that found us caught up.
    fresh_at: AtomicI64,
    cursor: AtomicI64,
    ready: AtomicBool,
    upstream: AtomicUsize,
    last_jwks: Mutex<Option<Instant>>,
    counters: Counters,
    /// The network-binding key, from the feed's pages.
    binding_key: RwLock<Option<Arc<BindingKey>>>,
    last_key_fetch: Mutex<Option<Instant>>,
    /// DPoP proofs seen by this process.
    replay: ReplayCache,
    /// Sessions reported as used from elsewhere -> when (ms).
    reported: quick_cache::sync::Cache<Uuid, i64>,
}

/// The verifier: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl Verifier {
    /// A verifier that has heard nothing yet (so it refuses everything
    /// until `start`'s first heartbeat).
    pub fn new(config: Config) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        let replay = ReplayCache::new(config.dpop_replay_capacity);
        Ok(Verifier {
            inner: Arc::new(Inner {
                config,
                http,
                keyring: RwLock::new(None),
                state: RwLock::new(RevocationState::new(0)),
                fresh_at: AtomicI64::new(i64::MIN / 2),
                cursor: AtomicI64::new(0),
                ready: AtomicBool::new(false),
                upstream: AtomicUsize::new(0),
                last_jwks: Mutex::new(None),
                counters: Counters::default(),
                binding_key: RwLock::new(None),
                last_key_fetch: Mutex::new(None),
                replay,
                reported: quick_cache::sync::Cache::new(4096),
            }),
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Starts following Recall on the current tokio runtime.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.follow().await })
    }

    /// Whether a heartbeat found the state caught up within the bound.
    pub fn is_fresh(&self) -> bool {
        let age = now_ms().saturating_sub(self.inner.fresh_at.load(Ordering::Acquire));
        age <= self.inner.config.max_staleness.as_millis() as i64
    }

    /// Milliseconds since the last heartbeat that found us caught up.
    pub fn staleness_ms(&self) -> i64 {
        now_ms().saturating_sub(self.inner.fresh_at.load(Ordering::Acquire))
    }

    /// The last log seq folded in.
    pub fn cursor(&self) -> i64 {
        self.inner.cursor.load(Ordering::Acquire)
    }

    /// The upstream followed now.
    pub fn upstream(&self) -> &str {
        let list = &self.inner.config.upstreams;
        &list[self.inner.upstream.load(Ordering::Relaxed) % list.len().max(1)]
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Whether `sid` is revoked in the state (for tests and tools).
    pub fn is_session_revoked(&self, sid: Uuid) -> bool {
        self.inner.state.read().is_session_revoked(sid)
    }

    /// Whether it holds the network-binding key (from the feed).
    pub fn has_binding_key(&self) -> bool {
        self.inner.binding_key.read().is_some()
    }

    /// The client address of a request from `peer` with these
    /// `X-Forwarded-For` values, under `Config::trusted_proxies`.
    pub fn client_addr(&self, peer: Option<IpAddr>, forwarded_for: &[&str]) -> Option<IpAddr> {
        crate::request::client_addr(peer, forwarded_for, &self.inner.config.trusted_proxies)
    }

    /// The `htu` a proof sent with a request for `uri` (a path, or an
    /// absolute URI) must name; `None` for a path with no public URL.
    pub fn htu(&self, uri: &str) -> Option<String> {
        crate::request::resolve_htu(self.inner.config.public_url.as_deref(), uri)
    }

    /// Resolves a bearer token from memory, no I/O: staleness, signature,
    /// claims, revocation. A bound token (`cnf` or `net`) is refused: its
    /// binding needs the request (`authenticate_request`).
    pub fn authenticate(&self, token: &str) -> Result<Principal, VerifyError> {
        self.record(self.token_only(token))
    }

    /// Resolves a token with the request it came with, from memory (no
    /// I/O but the mismatch report, spawned): the checks of
    /// `authenticate`, then the token's bindings. A DPoP-bound token
    /// (`cnf`) needs the `DPoP` scheme and one fresh proof of its key for
    /// this method and URI, not seen before by this verifier; a
    /// network-bound one (`net`) needs a client address inside its
    /// session's network, and when it is not and the token says `rv`,
    /// Recall is told (best effort, in the background) and revokes the
    /// session fleet-wide. The `DPoP` scheme with an unbound token is
    /// refused too.
    pub fn authenticate_request(&self, p: &Presented<'_>) -> Result<Principal, VerifyError> {
        self.record(self.resolve(p))
    }

    /// `authenticate_request`, fetching the JWKS first when the token
    /// names a key not seen yet, or the binding key when a network-bound
    /// token finds none (each at most once per `JWKS_REFRESH_MIN`).
    pub async fn verify_request(&self, p: &Presented<'_>) -> Result<Principal, VerifyError> {
        let result = match self.resolve(p) {
            Err(VerifyError::Token(TokenError::UnknownKid)) if self.jwks_due() => {
                self.fetch_jwks().await;
                self.resolve(p)
            }
            Err(VerifyError::NoBindingKey) if self.key_fetch_due() => {
                self.fetch_binding_key().await;
                self.resolve(p)
            }
            other => other,
        };
        self.record(result)
    }

    /// `check`, refusing bound tokens.
    fn token_only(&self, token: &str) -> Result<Principal, VerifyError> {
        let principal = self.check(token)?;
        let claims = &principal.verified.0;
        if claims.cnf.is_some() {
            return Err(VerifyError::Dpop(DpopRefusal::BoundAsBearer));
        }
        if claims.is_bound() {
            return Err(VerifyError::NeedsRequest);
        }
        Ok(principal)
    }

    /// `check`, then the bindings.
    fn resolve(&self, p: &Presented<'_>) -> Result<Principal, VerifyError> {
        let principal = self.check(p.token)?;
        self.check_binding(&principal, p)?;
        Ok(principal)
    }

    /// Whether the request may use this (already verified) token: the
    /// network first (a use from elsewhere is reported whatever the
    /// proof), then the DPoP key; the replay cache last, so only a proof
    /// that passed everything else is remembered.
    fn check_binding(&self, principal: &Principal, p: &Presented<'_>) -> Result<(), VerifyError> {
        let claims = &principal.verified.0;
        if let Some(net) = &claims.net {
            let key = self.binding_key()?;
            let inside = p
                .client_ip
                .is_some_and(|ip| key.matches(claims.sid, net, ip));
            if !inside {
                // No address (a wiring fault): refused, but nothing to
                // report that Recall could check.
                if let (true, Some(ip)) = (net.rv, p.client_ip) {
                    self.report_mismatch(p.token, claims.sid, ip);
                }
                return Err(VerifyError::OtherNetwork);
            }
        }
        let refuse = |r| Err(VerifyError::Dpop(r));
        match (&claims.cnf, p.dpop_scheme) {
            (None, false) => Ok(()),
            (None, true) => refuse(DpopRefusal::NotBound),
            (Some(_), false) => refuse(DpopRefusal::BoundAsBearer),
            (Some(cnf), true) => {
                let proof = match p.proof {
                    DpopHeader::Absent => return refuse(DpopRefusal::Missing),
                    DpopHeader::Invalid => return refuse(DpopRefusal::Several),
                    DpopHeader::One(proof) => proof,
                };
                let Some(htu) = self.htu(p.uri) else {
                    return refuse(DpopRefusal::NoPublicUrl);
                };
                let now = now_ms() / 1000;
                let expect = Expect {
                    htm: p.htm,
                    htu: &htu,
                    access_token: Some(p.token),
                    now,
                };
                let proof = dpop::verify_proof(proof, &expect)
                    .map_err(|e| VerifyError::Dpop(DpopRefusal::Invalid(e)))?;
                if proof.jkt != cnf.jkt {
                    return refuse(DpopRefusal::WrongKey);
                }
                if !self
                    .inner
                    .replay
                    .first_use(&proof.jkt, &proof.jti, proof.iat, now)
                {
                    return refuse(DpopRefusal::Replayed);
                }
                Ok(())
            }
        }
    }

    fn check(&self, token: &str) -> Result<Principal, VerifyError> {
        let now = now_ms();
        if !self.is_fresh() {
            return Err(VerifyError::Stale);
        }
        let keyring = self
            .inner
            .keyring
            .read()
            .clone()
            .ok_or(VerifyError::Stale)?;
        let verified = keyring
            .verify_cached(token, now / 1000)
            .map_err(VerifyError::Token)?;
        let (claims, kid) = (&verified.0, &verified.1);
        self.inner
            .state
            .read()
            .check(kid, claims.sub, claims.sid, claims.iat, now)
            .map_err(VerifyError::Revoked)?;
        Ok(Principal {
            user_id: claims.sub,
            session_id: claims.sid,
            verified,
        })
    }

    /// `authenticate`, fetching the JWKS first when the token names a key
    /// not seen yet (at most once per `JWKS_REFRESH_MIN`).
    pub async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        let result = self.with_new_jwks(|| self.token_only(token)).await;
        self.record(result)
    }

    /// Parses `Authorization: Bearer <token>` and verifies it (bound
    /// tokens are refused: use `verify_request` with the request).
    pub async fn verify_header(
        &self,
        authorization: Option<&str>,
    ) -> Result<Principal, VerifyError> {
        match crate::request::parse_authorization(authorization) {
            Ok((token, false)) => self.verify(token).await,
            Ok((_, true)) | Err(_) => Err(VerifyError::Missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_verifier_refuses_everything_until_it_has_heard_recall() {
        let v = Verifier::new(Config::new(vec!["http://127.0.0.1:9".into()], "t")).unwrap();
        assert!(!v.is_fresh());
        assert_eq!(v.authenticate("a.b.c").unwrap_err(), VerifyError::Stale);
    }
}
