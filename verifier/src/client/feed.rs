//! Following Recall's revocation feed: the first contact (the revocation
//! window, not the whole log), the SSE stream resumed with
//! `Last-Event-ID`, the reconnect loop with backoff across the upstreams,
//! polling while the stream will not stay up, and folding what arrives
//! into the shared state; also `get`, the one authenticated GET every
//! fetch goes through. Imports `state`, `sse` and `token`; keys are the
//! `keys` module's.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;

use super::Verifier;
use crate::sse::SseParser;
use crate::state::{Kind, Revocation, RevocationState};
use crate::token::now_ms;

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
struct Head {
    head_seq: i64,
}

impl Verifier {
    fn base(&self) -> String {
        self.upstream().to_owned()
    }

    fn next_upstream(&self) {
        self.inner.upstream.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) async fn get(&self, path: &str) -> Result<reqwest::Response, String> {
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

    pub(super) async fn follow(&self) {
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
