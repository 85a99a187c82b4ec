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

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::{Principal, VerifyError};
use crate::sse::SseParser;
use crate::state::{Kind, Revocation, RevocationState};
use crate::token::{now_ms, Jwks, Keyring, TokenError};

/// Shortest time between two JWKS fetches caused by an unknown `kid`.
pub const JWKS_REFRESH_MIN: Duration = Duration::from_secs(3);

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
    pub stale: AtomicU64,
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
            }),
        })
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

    /// Resolves a bearer token from memory, no I/O: staleness, signature,
    /// claims, revocation.
    pub fn authenticate(&self, token: &str) -> Result<Principal, VerifyError> {
        let c = &self.inner.counters;
        let result = self.check(token);
        match &result {
            Ok(_) => c.accepted.fetch_add(1, Ordering::Relaxed),
            Err(VerifyError::Stale) => c.stale.fetch_add(1, Ordering::Relaxed),
            Err(_) => c.rejected.fetch_add(1, Ordering::Relaxed),
        };
        result
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
        match self.authenticate(token) {
            Err(VerifyError::Token(TokenError::UnknownKid)) if self.jwks_due() => {
                self.fetch_jwks().await;
                self.authenticate(token)
            }
            other => other,
        }
    }

    /// Parses `Authorization: Bearer <token>` and verifies it.
    pub async fn verify_header(
        &self,
        authorization: Option<&str>,
    ) -> Result<Principal, VerifyError> {
        let value = authorization.ok_or(VerifyError::Missing)?;
        let (scheme, token) = value.split_once(' ').ok_or(VerifyError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(VerifyError::Missing);
        }
        self.verify(token.trim()).await
    }

    /// Prometheus text for the sidecar's `/metrics`.
    pub fn metrics_text(&self) -> String {
        let c = &self.inner.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
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
        )
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
