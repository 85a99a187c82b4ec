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

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ipnet::IpNet;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use uuid::Uuid;

use crate::binding::BindingKey;
use crate::dpop::{self, Expect, ReplayCache};
use crate::error::{DpopRefusal, Principal, VerifyError, REASONS};
use crate::request::{DpopHeader, Presented};
use crate::sse::SseParser;
use crate::state::{Kind, Revocation, RevocationState};
use crate::token::{now_ms, Jwks, Keyring, TokenError};

/// Shortest time between two JWKS fetches caused by an unknown `kid`
/// (and between two fetches of the binding key while there is none).
pub const JWKS_REFRESH_MIN: Duration = Duration::from_secs(3);
/// DPoP proofs remembered by default (each for its 60 s window).
pub const DPOP_REPLAY_CAPACITY: usize = 65_536;
/// A session's mismatch is reported at most once this often (ms).
const REPORT_AGAIN_AFTER_MS: i64 = 10_000;

/// How to reach Recall, and how strict to be.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URLs of Recall instances, tried in turn (`http://recall:8080`).
    pub upstreams: Vec<String>,
    /// A service credential (`POST /v1/admin/services`).
    pub service_token: String,
    /// Accepted `iss` values; empty: what Recall's metadata announces.
    pub issuers: Vec<String>,
    /// Required `aud`; empty: what Recall's metadata announces.
    pub audience: String,
    /// Refuse every token once no heartbeat came for this long.
    pub max_staleness: Duration,
    /// Polling interval while the stream is down.
    pub poll_interval: Duration,
    /// The address clients reach the protected API at
    /// (`https://api.example.com`): a DPoP proof's `htu` must be this and
    /// the request's path. `None`: DPoP-bound tokens are refused
    /// (`invalid_dpop_proof`) rather than checked against a guess from
    /// `Host`, unless the request names an absolute URI (forward auth).
    pub public_url: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed: the client address is
    /// the rightmost entry not in them. Default `127.0.0.0/8`, `::1`.
    pub trusted_proxies: Vec<IpNet>,
    /// Most DPoP proofs remembered at once for replay detection; when full
    /// of unexpired ones, new proofs are refused (fail closed).
    pub dpop_replay_capacity: usize,
}

impl Config {
    /// Defaults: 5 s staleness bound, 1 s polling, issuer and audience from
    /// the upstream's metadata.
    pub fn new(upstreams: Vec<String>, service_token: impl Into<String>) -> Self {
        Config {
            upstreams: upstreams
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            service_token: service_token.into(),
            issuers: Vec::new(),
            audience: String::new(),
            max_staleness: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            public_url: None,
            trusted_proxies: crate::request::default_trusted_proxies(),
            dpop_replay_capacity: DPOP_REPLAY_CAPACITY,
        }
    }
}

/// A page of `GET /v1/revocations`.
#[derive(Debug, Deserialize)]
pub struct FeedPage {
    pub items: Vec<Revocation>,
    pub head_seq: i64,
    pub next_after: i64,
    #[serde(default)]
    pub retention_ms: Option<i64>,
    /// The key of network-bound tokens' digests (base64url, 32 bytes);
    /// absent from Recall versions before bound tokens.
    #[serde(default)]
    pub binding_key: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    #[serde(default)]
    recall_accepted_issuers: Vec<String>,
    #[serde(default)]
    recall_audience: Option<String>,
}

#[derive(Deserialize)]
struct Head {
    head_seq: i64,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub items: AtomicU64,
    pub heads: AtomicU64,
    pub reconnects: AtomicU64,
    pub polls: AtomicU64,
    pub jwks_fetches: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    /// Refused with 503: stale, or no binding key for a network-bound token.
    pub stale: AtomicU64,
    /// Refusals by reason (`VerifyError::reason`).
    pub refusals: Refusals,
    /// Mismatch reports Recall took (2xx).
    pub mismatch_reports_sent: AtomicU64,
    /// Mismatch reports that failed on every attempt, or Recall refused.
    pub mismatch_reports_failed: AtomicU64,
    /// Mismatches not reported again: the session was reported just before.
    pub mismatch_reports_skipped: AtomicU64,
}

/// A counter per refusal reason ([`REASONS`]).
pub struct Refusals(Box<[AtomicU64]>);

impl Default for Refusals {
    fn default() -> Self {
        Refusals(REASONS.iter().map(|_| AtomicU64::new(0)).collect())
    }
}

impl Refusals {
    fn add(&self, reason: &str) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many requests were refused for `reason`.
    pub fn get(&self, reason: &str) -> u64 {
        REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.0[i].load(Ordering::Relaxed))
    }
}

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

    fn record(&self, result: Result<Principal, VerifyError>) -> Result<Principal, VerifyError> {
        let c = &self.inner.counters;
        match &result {
            Ok(_) => {
                c.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                if e.status() == 503 {
                    c.stale.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.rejected.fetch_add(1, Ordering::Relaxed);
                }
                c.refusals.add(e.reason());
            }
        }
        result
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
            let key = self
                .inner
                .binding_key
                .read()
                .clone()
                .ok_or(VerifyError::NoBindingKey)?;
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

    /// Tells Recall, in the background, that session `sid`'s token was
    /// used from `ip`, outside its network: Recall checks it again and
    /// revokes the session fleet-wide. At most once per session every
    /// 10 s; the refusal never waits for it.
    fn report_mismatch(&self, token: &str, sid: Uuid, ip: IpAddr) {
        let now = now_ms();
        if self
            .inner
            .reported
            .get(&sid)
            .is_some_and(|at| now.saturating_sub(at) < REPORT_AGAIN_AFTER_MS)
        {
            self.inner
                .counters
                .mismatch_reports_skipped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.reported.insert(sid, now);
        let me = self.clone();
        let token = token.to_owned();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { me.send_mismatch(&token, sid, ip, None).await });
            }
            Err(_) => {
                // Called outside a runtime: a thread of its own, and a
                // client of its own (pooled connections belong to the
                // runtime that opened them).
                let spawned = std::thread::Builder::new()
                    .name("recall-mismatch".into())
                    .spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build();
                        let http = reqwest::Client::builder()
                            .connect_timeout(Duration::from_secs(2))
                            .build();
                        match (rt, http) {
                            (Ok(rt), Ok(http)) => {
                                rt.block_on(me.send_mismatch(&token, sid, ip, Some(http)))
                            }
                            _ => me.mismatch_failed(sid, "no runtime for the report"),
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "verifier: could not start a mismatch report");
                }
            }
        }
    }

    /// `POST /v1/revocations/mismatch` on the upstream followed now, and
    /// once more on the next one when that fails (transport error, 5xx).
    async fn send_mismatch(
        &self,
        token: &str,
        sid: Uuid,
        ip: IpAddr,
        http: Option<reqwest::Client>,
    ) {
        let http = http.as_ref().unwrap_or(&self.inner.http);
        let upstreams = &self.inner.config.upstreams;
        if upstreams.is_empty() {
            return self.mismatch_failed(sid, "no upstream");
        }
        let body = serde_json::json!({ "token": token, "client_ip": ip.to_string() });
        let first = self.inner.upstream.load(Ordering::Relaxed);
        let mut why = String::new();
        for attempt in 0..2 {
            let url = format!(
                "{}/v1/revocations/mismatch",
                upstreams[(first + attempt) % upstreams.len()]
            );
            let sent = http
                .post(&url)
                .bearer_auth(&self.inner.config.service_token)
                .json(&body)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            match sent {
                Ok(res) if res.status().is_success() => {
                    self.inner
                        .counters
                        .mismatch_reports_sent
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(session_id = %sid, "verifier: token used from another network; Recall told to revoke the session");
                    return;
                }
                Ok(res) if res.status().is_client_error() && res.status().as_u16() != 429 => {
                    // Recall checked and said no (or does not know the
                    // route): asking again would not change its mind.
                    self.inner
                        .counters
                        .mismatch_reports_failed
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(session_id = %sid, %url, status = %res.status(), "verifier: Recall refused a mismatch report");
                    return;
                }
                Ok(res) => why = format!("{url}: HTTP {}", res.status()),
                Err(e) => why = format!("{url}: {e}"),
            }
        }
        self.mismatch_failed(sid, &why);
    }

    /// A report that never reached Recall: counted, and the session may
    /// be reported again at its next mismatch.
    fn mismatch_failed(&self, sid: Uuid, why: &str) {
        self.inner
            .counters
            .mismatch_reports_failed
            .fetch_add(1, Ordering::Relaxed);
        self.inner.reported.remove(&sid);
        tracing::warn!(session_id = %sid, error = %why, "verifier: mismatch report failed");
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

    /// RFC 7662 introspection from memory: the token's verified claims when
    /// it is good now (signature, claims, revocation; a bound token counts,
    /// its binding is the resource server's to check with `cnf`), `None`
    /// when it is not, and `Stale` when this verifier cannot tell (fail
    /// closed). Fetches the JWKS first for a key not seen yet.
    ///
    /// A network-bound token is active only for a `client_ip` inside its
    /// session's network (without one, the caller could not check the
    /// binding, so it is not active for it).
    pub async fn introspect(
        &self,
        token: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<Option<Principal>, VerifyError> {
        let result = match self.check(token) {
            Err(VerifyError::Token(TokenError::UnknownKid)) if self.jwks_due() => {
                self.fetch_jwks().await;
                self.check(token)
            }
            other => other,
        };
        let p = match result {
            Ok(p) => p,
            Err(VerifyError::Stale) => return Err(VerifyError::Stale),
            Err(_) => return Ok(None),
        };
        let Some(net) = p.verified.0.net.clone() else {
            return Ok(Some(p));
        };
        if !self.has_binding_key() && self.key_fetch_due() {
            self.fetch_binding_key().await;
        }
        let key = self
            .inner
            .binding_key
            .read()
            .clone()
            .ok_or(VerifyError::NoBindingKey)?;
        let inside = client_ip.is_some_and(|ip| key.matches(p.session_id, &net, ip));
        Ok(inside.then_some(p))
    }

    /// `authenticate`, fetching the JWKS first when the token names a key
    /// not seen yet (at most once per `JWKS_REFRESH_MIN`).
    pub async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        let result = match self.token_only(token) {
            Err(VerifyError::Token(TokenError::UnknownKid)) if self.jwks_due() => {
                self.fetch_jwks().await;
                self.token_only(token)
            }
            other => other,
        };
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

    /// Prometheus text for the sidecar's `/metrics`.
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        let c = &self.inner.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut text = format!(
            "# TYPE recall_verifier_items_total counter\nrecall_verifier_items_total {}\n\
             # TYPE recall_verifier_heads_total counter\nrecall_verifier_heads_total {}\n\
             # TYPE recall_verifier_reconnects_total counter\nrecall_verifier_reconnects_total {}\n\
             # TYPE recall_verifier_polls_total counter\nrecall_verifier_polls_total {}\n\
             # TYPE recall_verifier_jwks_fetches_total counter\nrecall_verifier_jwks_fetches_total {}\n\
             # TYPE recall_verifier_requests_total counter\n\
             recall_verifier_requests_total{{outcome=\"accepted\"}} {}\n\
             recall_verifier_requests_total{{outcome=\"rejected\"}} {}\n\
             recall_verifier_requests_total{{outcome=\"stale\"}} {}\n\
             # TYPE recall_verifier_cursor gauge\nrecall_verifier_cursor {}\n\
             # TYPE recall_verifier_staleness_seconds gauge\nrecall_verifier_staleness_seconds {:.3}\n",
            g(&c.items),
            g(&c.heads),
            g(&c.reconnects),
            g(&c.polls),
            g(&c.jwks_fetches),
            g(&c.accepted),
            g(&c.rejected),
            g(&c.stale),
            self.cursor(),
            self.staleness_ms().max(0) as f64 / 1000.0,
        );
        text.push_str("# TYPE recall_verifier_refusals_total counter\n");
        for reason in REASONS {
            let _ = writeln!(
                text,
                "recall_verifier_refusals_total{{reason=\"{reason}\"}} {}",
                c.refusals.get(reason)
            );
        }
        let _ = write!(
            text,
            "# TYPE recall_verifier_mismatch_reports_total counter\n\
             recall_verifier_mismatch_reports_total{{outcome=\"sent\"}} {}\n\
             recall_verifier_mismatch_reports_total{{outcome=\"failed\"}} {}\n\
             recall_verifier_mismatch_reports_total{{outcome=\"skipped\"}} {}\n\
             # TYPE recall_verifier_binding_key gauge\nrecall_verifier_binding_key {}\n\
             # TYPE recall_verifier_dpop_proofs_remembered gauge\nrecall_verifier_dpop_proofs_remembered {}\n",
            g(&c.mismatch_reports_sent),
            g(&c.mismatch_reports_failed),
            g(&c.mismatch_reports_skipped),
            u8::from(self.has_binding_key()),
            self.inner.replay.len(),
        );
        text
    }

    fn key_fetch_due(&self) -> bool {
        let mut last = self.inner.last_key_fetch.lock();
        if last.is_some_and(|t| t.elapsed() < JWKS_REFRESH_MIN) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Keeps the binding key a feed page carries (an absent one changes
    /// nothing: an older upstream in the list does not drop it).
    fn keep_binding_key(&self, page: &FeedPage) {
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
    async fn fetch_binding_key(&self) {
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

    fn jwks_due(&self) -> bool {
        let last = *self.inner.last_jwks.lock();
        last.is_none_or(|t| t.elapsed() >= JWKS_REFRESH_MIN)
    }

    fn base(&self) -> String {
        self.upstream().to_owned()
    }

    fn next_upstream(&self) {
        self.inner.upstream.fetch_add(1, Ordering::Relaxed);
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, String> {
        let url = format!("{}{path}", self.base());
        let res = self
            .inner
            .http
            .get(&url)
            .bearer_auth(&self.inner.config.service_token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("{url}: HTTP {}", res.status()));
        }
        Ok(res)
    }

    async fn fetch_jwks(&self) {
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
    async fn discover(&self) -> Result<(), String> {
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

    /// Folds the items of log event `seq`, fetching keys the state names
    /// that the keyring lacks.
    fn fold(&self, seq: i64, items: &[Revocation]) -> bool {
        let mut new_key = false;
        {
            let keyring = self.inner.keyring.read().clone();
            let mut state = self.inner.state.write();
            for item in items {
                if item.kind == Kind::KeyStatus {
                    if let (Some(kid), Some(k)) = (&item.kid, &keyring) {
                        new_key |= !k.has(kid);
                    }
                }
                state.apply_item(item);
            }
            state.advance_to(seq);
        }
        self.inner
            .counters
            .items
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        self.inner.cursor.fetch_max(seq, Ordering::AcqRel);
        new_key
    }

    fn heard_head(&self, head: i64) {
        self.inner.counters.heads.fetch_add(1, Ordering::Relaxed);
        if self.cursor() >= head {
            self.inner.fresh_at.store(now_ms(), Ordering::Release);
            self.inner.state.write().prune(now_ms());
            if let Some(keyring) = self.inner.keyring.read().clone() {
                keyring.sweep_expired(now_ms() / 1000);
            }
        }
    }

    /// First contact: the revocation window, not the whole log.
    async fn load_window(&self) -> Result<(), String> {
        let page: FeedPage = self
            .get("/v1/revocations?after=0")
            .await?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let retention = page.retention_ms.unwrap_or(3_600_000);
        let state = RevocationState::from_window(&page.items, page.head_seq, retention, now_ms());
        *self.inner.state.write() = state;
        self.keep_binding_key(&page);
        self.inner.cursor.store(page.head_seq, Ordering::Release);
        self.inner.ready.store(true, Ordering::Release);
        self.fetch_jwks().await;
        self.heard_head(page.head_seq);
        tracing::info!(
            head = page.head_seq,
            items = page.items.len(),
            "verifier: window loaded"
        );
        Ok(())
    }

    /// Polls `GET /v1/revocations` from the cursor until caught up.
    async fn poll(&self) -> Result<(), String> {
        self.inner.counters.polls.fetch_add(1, Ordering::Relaxed);
        loop {
            let after = self.cursor();
            let page: FeedPage = self
                .get(&format!("/v1/revocations?after={after}&limit=1000"))
                .await?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            self.keep_binding_key(&page);
            let mut new_key = false;
            let mut i = 0;
            while i < page.items.len() {
                let seq = page.items[i].seq;
                let j = page.items[i..]
                    .iter()
                    .position(|x| x.seq != seq)
                    .map_or(page.items.len(), |p| i + p);
                new_key |= self.fold(seq, &page.items[i..j]);
                i = j;
            }
            self.inner
                .cursor
                .fetch_max(page.next_after, Ordering::AcqRel);
            if new_key {
                self.fetch_jwks().await;
            }
            if page.next_after >= page.head_seq {
                self.heard_head(page.head_seq);
                return Ok(());
            }
        }
    }

    /// Follows the SSE stream until it ends or goes quiet.
    async fn stream(&self) -> Result<(), String> {
        let url = format!("{}/v1/revocations/stream", self.base());
        let res = self
            .inner
            .http
            .get(&url)
            .bearer_auth(&self.inner.config.service_token)
            .header("Last-Event-ID", self.cursor().to_string())
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("{url}: HTTP {}", res.status()));
        }
        let mut body = res.bytes_stream();
        let mut parser = SseParser::default();
        // The server beats every second; silence this long means it is gone.
        let quiet = Duration::from_millis(2500).min(self.inner.config.max_staleness);
        loop {
            let chunk = match tokio::time::timeout(quiet, body.next()).await {
                Err(_) => return Err(format!("{url}: no heartbeat for {quiet:?}")),
                Ok(None) => return Err(format!("{url}: stream ended")),
                Ok(Some(Err(e))) => return Err(format!("{url}: {e}")),
                Ok(Some(Ok(chunk))) => chunk,
            };
            for msg in parser.feed(&chunk) {
                match msg.event.as_str() {
                    "revocations" => {
                        let seq = msg.id.as_deref().and_then(|s| s.parse::<i64>().ok());
                        let items: Vec<Revocation> = serde_json::from_str(&msg.data)
                            .map_err(|e| format!("{url}: bad revocations message: {e}"))?;
                        let Some(seq) = seq else {
                            return Err(format!("{url}: revocations message without id"));
                        };
                        if self.fold(seq, &items) {
                            self.fetch_jwks().await;
                        }
                    }
                    "head" => {
                        let head: Head = serde_json::from_str(&msg.data)
                            .map_err(|e| format!("{url}: bad head message: {e}"))?;
                        // The stream sends a head only after every item up
                        // to it: events with no items (logins, refreshes)
                        // move the cursor too, or a quiet stretch of them
                        // would read as staleness.
                        self.inner.cursor.fetch_max(head.head_seq, Ordering::AcqRel);
                        self.heard_head(head.head_seq);
                    }
                    "end" => return Err(format!("{url}: stream ended: {}", msg.data)),
                    _ => {}
                }
            }
        }
    }

    async fn follow(&self) {
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0u32;
        loop {
            let step = async {
                self.discover().await?;
                if !self.inner.ready.load(Ordering::Acquire) {
                    self.load_window().await?;
                }
                self.stream().await
            };
            if let Err(e) = step.await {
                failures += 1;
                self.inner
                    .counters
                    .reconnects
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, upstream = %self.base(), failures, "verifier: feed interrupted");
                self.next_upstream();
                if failures >= 2 && self.inner.ready.load(Ordering::Acquire) {
                    // The stream will not stay up: poll meanwhile.
                    match self.poll().await {
                        Ok(()) => backoff = Duration::from_millis(100),
                        Err(e) => tracing::warn!(error = %e, "verifier: poll failed"),
                    }
                    tokio::time::sleep(self.inner.config.poll_interval.min(backoff)).await;
                } else {
                    tokio::time::sleep(backoff).await;
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            } else {
                failures = 0;
                backoff = Duration::from_millis(100);
            }
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
