//! RFC 8935 push delivery of SSF streams. Every instance runs the loop;
//! a lease in the store makes exactly one of them deliver a given stream at
//! a time, and another takes over when the holder dies (its lease lapses).
//! SETs go out in log order from the stream's cursor, which moves only past
//! a SET the receiver accepted (202) or rejected for good (400 with an
//! RFC 8935 error): at least once. Anything else (5xx, 401, 403, 404,
//! 429, a timeout, a refused connection) is retried with backoff, and a
//! slow receiver holds up only its own stream.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use std::time::Duration;

use futures_util::future::join_all;
use uuid::Uuid;

use super::signals::{wait_for_signal, Signals};
use crate::clock::Timestamp;
use crate::error::Error;
use crate::ssf::{Delivery, PUSH};
use crate::store::StreamRecord;

/// How long a lease lasts; the loop renews it well before.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often the loop looks for work when nothing wakes it.
pub const TICK: Duration = Duration::from_millis(250);
/// One POST's time limit.
const TIMEOUT: Duration = Duration::from_secs(5);
/// SETs sent per stream per round.
const BATCH: usize = 50;

/// Backoff after `failures` failed rounds in a row: 250 ms doubling, at
/// most 30 s.
pub fn backoff(failures: i64) -> Duration {
    let doublings = failures.clamp(1, 8) as u32 - 1;
    (Duration::from_millis(250) * (1 << doublings)).min(Duration::from_secs(30))
}

/// What one POST of a SET came to.
enum Sent {
    /// 202 (or another 2xx): delivered.
    Accepted,
    /// 400 with an RFC 8935 error: the receiver will never take it.
    Rejected(String),
    /// Anything else: try again later.
    Retry(String),
}

impl Signals {
    /// Runs push delivery until the task is dropped.
    pub async fn run_push(&self, owner: String) {
        let http = match reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "SSF push: no HTTP client; push delivery is off");
                return;
            }
        };
        let mut wake = self.sync.applied();
        loop {
            if let Err(e) = self.push_round(&http, &owner).await {
                tracing::warn!(error = %e, "SSF push round failed");
            }
            wait_for_signal(&mut wake, TICK).await;
        }
    }

    /// One round: every due push stream whose lease this instance holds or
    /// can take, concurrently.
    pub async fn push_round(&self, http: &reqwest::Client, owner: &str) -> Result<usize, Error> {
        let now = Timestamp::now();
        let due = self.store.due_streams(PUSH, now).await?;
        let until = now.plus(LEASE);
        let mut mine = Vec::new();
        for s in due {
            if self.store.take_lease(s.id, owner, now, until).await? {
                mine.push(s);
            }
        }
        let sent = join_all(mine.iter().map(|s| self.push_stream(http, s))).await;
        Ok(sent.into_iter().map(|r| r.unwrap_or(0)).sum())
    }

    async fn post(&self, http: &reqwest::Client, stream: &StreamRecord, set: String) -> Sent {
        let Delivery::Push {
            endpoint_url,
            authorization_header,
        } = &stream.config.delivery
        else {
            return Sent::Retry("not a push stream".into());
        };
        let mut req = http
            .post(endpoint_url)
            .header("content-type", "application/secevent+jwt")
            .header("accept", "application/json")
            .body(set);
        if let Some(auth) = authorization_header {
            req = req.header("authorization", auth);
        }
        match req.send().await {
            Ok(res) if res.status().is_success() => Sent::Accepted,
            Ok(res) if res.status().as_u16() == 400 => {
                let body: serde_json::Value = res.json().await.unwrap_or_default();
                match body["err"].as_str() {
                    // RFC 8935 2.4: the SET itself is at fault; sending it
                    // again cannot help.
                    Some(err) => Sent::Rejected(format!(
                        "{err}: {}",
                        body["description"].as_str().unwrap_or("")
                    )),
                    None => Sent::Retry("400 without an RFC 8935 error".into()),
                }
            }
            Ok(res) => Sent::Retry(format!("HTTP {}", res.status())),
            Err(e) => Sent::Retry(e.to_string()),
        }
    }

    /// Sends what a stream has after its cursor, in order, until a failure.
    async fn push_stream(
        &self,
        http: &reqwest::Client,
        stream: &StreamRecord,
    ) -> Result<usize, Error> {
        if !matches!(stream.config.delivery, Delivery::Push { .. }) {
            return Ok(0);
        }
        let (pending, _, scanned_to) = self.pending_for(stream, BATCH).await?;
        self.record_lag(stream, pending.first()).await;
        if pending.is_empty() {
            if scanned_to > stream.cursor.0 {
                self.store
                    .advance_stream(stream.id, (scanned_to, i64::MAX), Timestamp::now())
                    .await?;
            }
            return Ok(0);
        }
        let mut sent = 0;
        for e in &pending {
            let (jti, set) = self.sign(stream, e)?;
            let label = crate::metrics::Metrics::stream(stream.id);
            match self.post(http, stream, set).await {
                Sent::Accepted => {
                    self.metrics.ssf_delivered.get_or_create(&label).inc();
                }
                Sent::Rejected(why) => {
                    self.metrics.ssf_failed.get_or_create(&label).inc();
                    tracing::warn!(stream = %stream.id, %jti, %why, "SSF push: the receiver rejected a SET for good");
                }
                Sent::Retry(why) => {
                    self.metrics.ssf_failed.get_or_create(&label).inc();
                    let failures = self.store.delivery_failures(stream.id).await? + 1;
                    let next = Timestamp::now().plus(backoff(failures));
                    self.store
                        .delivery_outcome(stream.id, failures, next)
                        .await?;
                    tracing::info!(stream = %stream.id, %jti, %why, failures, "SSF push: will retry");
                    return Ok(sent);
                }
            }
            self.store
                .advance_stream(stream.id, (e.seq, e.index as i64), Timestamp::now())
                .await?;
            sent += 1;
        }
        self.store
            .delivery_outcome(stream.id, 0, Timestamp::EPOCH)
            .await?;
        Ok(sent)
    }
}

/// A lease owner id for this process.
pub fn instance_id() -> String {
    format!("recall-{}", Uuid::now_v7())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_quarter_second_to_thirty() {
        let ms = |n| backoff(n).as_millis();
        assert_eq!((ms(1), ms(2), ms(3)), (250, 500, 1000));
        assert_eq!(ms(8), 30_000);
        assert_eq!(ms(1000), 30_000);
    }
}
