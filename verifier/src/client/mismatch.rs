//! Mismatch reports: when a network-bound token that says `rv` is used
//! from outside its session's network, Recall is told in the background
//! (`POST /v1/revocations/mismatch`) and revokes the session fleet-wide.
//! At most one report per session every 10 s; a refusal never waits for
//! its report. Imports nothing of the crate but `token::now_ms`; reaches
//! Recall with the verifier's client and upstream list.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use uuid::Uuid;

use super::Verifier;
use crate::token::now_ms;

/// A session's mismatch is reported at most once this often (ms).
const REPORT_AGAIN_AFTER_MS: i64 = 10_000;

impl Verifier {
    /// Tells Recall, in the background, that session `sid`'s token was
    /// used from `ip`, outside its network: Recall checks it again and
    /// revokes the session fleet-wide. At most once per session every
    /// 10 s; the refusal never waits for it.
    pub(super) fn report_mismatch(&self, token: &str, sid: Uuid, ip: IpAddr) {
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
}
