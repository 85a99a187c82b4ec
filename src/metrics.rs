//! Prometheus metrics through `prometheus-client`: counters, gauges and
//! histograms in one registry, labelled by outcome, reason and route, and
//! rendered as OpenMetrics text on `/metrics`.
//!
//! May import: nothing of Recall's. The layers: docs/DESIGN.md, "Parts".

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// Upper bounds (s) of the propagation-lag histogram buckets.
const LAG_BUCKETS_S: [f64; 13] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds (s) of the HTTP request-duration buckets.
const HTTP_BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// How a login ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

/// Why a bearer token was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

/// One HTTP request: its route pattern, method and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub route: String,
    pub method: String,
    pub status: u16,
}

/// The build this process runs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: &'static str,
}

/// One SSF stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    pub stream: String,
}

/// Every metric Recall exports, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    pub propagation_lag: Histogram,
    pub http_requests: Family<Route, Histogram>,
    pub notices_received: Counter,
    pub notices_rejected: Counter,
    pub log_regressions: Counter,
    pub gaps_detected: Counter,
    pub catchup_reads: Counter,
    pub catchup_events: Counter,
    pub catchup_failures: Counter,
    pub publish_failures: Counter,
    pub logins: Family<Outcome, Counter>,
    pub guesses_refused: Counter,
    pub rate_limited: Counter,
    pub notices_dropped: Counter,
    pub refreshes: Counter,
    pub tokens_rejected: Family<Reason, Counter>,
    pub stale_rejections: Counter,
    /// DPoP proofs refused as used before (fleet-wide).
    pub dpop_replays: Counter,
    /// SSF: SETs a receiver accepted (push 2xx, or acknowledged by poll).
    pub ssf_delivered: Family<StreamLabel, Counter>,
    /// SSF: push attempts that failed (to be retried) or were rejected.
    pub ssf_failed: Family<StreamLabel, Counter>,
    /// SSF: log events the stream's cursor is behind the head.
    pub ssf_lag_events: Family<StreamLabel, Gauge>,
    /// SSF: age (s) of the oldest SET waiting for the stream.
    pub ssf_lag_seconds: Family<StreamLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    // Gauges, set from their sources when `/metrics` is read.
    staleness_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_seq: Gauge,
    revoked_sessions: Gauge,
    locked_users: Gauge,
    ready: Gauge,
    hash_running: Gauge,
    hash_running_max: Gauge,
    hash_admitted: Gauge,
    hash_workers: Gauge,
    hash_rejected: Counter,
    hash_abandoned: Counter,
    followers: Gauge,
    write_batches: Counter,
    write_units: Counter,
}

/// Values read from their sources at render time.
pub struct Gauges {
    pub staleness_ms: i64,
    pub last_seq: i64,
    pub revoked_sessions: usize,
    pub locks: usize,
    pub ready: bool,
    /// The password-hash pool (G10).
    pub hash_running: usize,
    pub hash_running_max: usize,
    pub hash_admitted: usize,
    pub hash_workers: usize,
    pub hash_rejected: u64,
    pub hash_abandoned: u64,
    /// Open followers of applied events: SSE streams and push delivery.
    pub followers: usize,
    /// Write transactions (group commits) and the store calls they carried.
    pub write_batches: u64,
    pub write_units: u64,
}

/// Adds one to a counter.
pub fn inc(counter: &Counter) {
    counter.inc();
}

fn histogram(buckets: &'static [f64]) -> Histogram {
    Histogram::new(buckets.iter().copied())
}

/// Registers `metric` as `name` and hands it back, to be updated.
fn register<M: Metric + Clone>(r: &mut Registry, name: &str, help: &str, metric: M) -> M {
    r.register(name, help, metric.clone());
    metric
}

/// `register` for a metric that starts from its default.
fn metric<M: Metric + Clone + Default>(r: &mut Registry, name: &str, help: &str) -> M {
    register(r, name, help, M::default())
}

impl Default for Metrics {
    fn default() -> Self {
        // Registered in this order, and listed by `/metrics` in it.
        let mut r = Registry::default();
        let propagation_lag = register(
            &mut r,
            "recall_propagation_lag_seconds",
            "Time from an event's commit to its apply on this instance",
            histogram(&LAG_BUCKETS_S),
        );
        let http_requests = register(
            &mut r,
            "recall_http_request_duration_seconds",
            "HTTP requests by route pattern, method and status",
            Family::<Route, Histogram>::new_with_constructor(|| histogram(&HTTP_BUCKETS_S)),
        );
        let logins = metric(&mut r, "recall_logins", "Logins by outcome: succeeded, failed (a checked wrong password), locked (refused by a lock)");
        let tokens_rejected = metric(
            &mut r,
            "recall_tokens_rejected",
            "Bearer tokens rejected, by reason",
        );
        let ssf_delivered = metric(
            &mut r,
            "recall_ssf_sets_delivered",
            "SSF Security Event Tokens a receiver accepted, by stream",
        );
        let ssf_failed = metric(
            &mut r,
            "recall_ssf_sets_failed",
            "SSF push attempts that failed or were rejected, by stream",
        );
        let ssf_lag_events = metric(
            &mut r,
            "recall_ssf_lag_events",
            "Log events between an SSF stream's cursor and the head, by stream",
        );
        let ssf_lag_seconds = metric(
            &mut r,
            "recall_ssf_lag_seconds",
            "Age of the oldest SET waiting for an SSF stream, by stream",
        );
        let staleness_seconds = metric(
            &mut r,
            "recall_staleness_seconds",
            "Time since this instance last confirmed it is caught up with the log",
        );
        let build = Family::<Build, Gauge>::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("recall_build_info", "The running build (always 1)", build);
        Metrics {
            propagation_lag,
            http_requests,
            notices_received: metric(&mut r, "recall_notices_received", "Authenticated bus notices received"),
            notices_rejected: metric(
                &mut r,
                "recall_notices_rejected",
                "Bus notices dropped because they failed authentication (G9)",
            ),
            log_regressions: metric(
                &mut r,
                "recall_log_regressions",
                "Times the log's head was found behind the applied state (restore, wrong database)",
            ),
            gaps_detected: metric(&mut r, "recall_gaps_detected", "Sequence gaps seen between notices"),
            catchup_reads: metric(&mut r, "recall_catchup_reads", "Reads of the log to catch up"),
            catchup_events: metric(&mut r, "recall_catchup_events", "Events applied from catch-up reads"),
            catchup_failures: metric(&mut r, "recall_catchup_failures", "Catch-up reads that failed"),
            publish_failures: metric(&mut r, "recall_publish_failures", "Notices that could not be published"),
            logins,
            guesses_refused: metric(
                &mut r,
                "recall_login_guesses_refused",
                "Logins and password checks refused unhashed: the username is locked or its budget is spent (G10)",
            ),
            rate_limited: metric(
                &mut r,
                "recall_rate_limited",
                "Requests answered 429 by the per-address rate limit",
            ),
            notices_dropped: metric(
                &mut r,
                "recall_notices_dropped",
                "Notices dropped from a full publish queue (the log covers them)",
            ),
            refreshes: metric(&mut r, "recall_refreshes", "Successful refreshes"),
            tokens_rejected,
            ssf_delivered,
            ssf_failed,
            ssf_lag_events,
            ssf_lag_seconds,
            dpop_replays: metric(
                &mut r,
                "recall_dpop_replays",
                "DPoP proofs refused because an instance of the fleet saw them before",
            ),
            stale_rejections: metric(
                &mut r,
                "recall_stale_rejections",
                "Requests refused while stale (fail closed)",
            ),
            staleness_seconds,
            last_seq: metric(&mut r, "recall_last_seq", "Highest event seq applied in order"),
            revoked_sessions: metric(&mut r, "recall_revoked_sessions", "Revoked sessions held in memory"),
            locked_users: metric(&mut r, "recall_locked_users", "Locked users held in memory"),
            ready: metric(
                &mut r,
                "recall_ready",
                "1 when ready (caught up within the staleness bound)",
            ),
            hash_running: metric(
                &mut r,
                "recall_hash_running",
                "Password hashes running now (at most recall_hash_workers)",
            ),
            hash_running_max: metric(
                &mut r,
                "recall_hash_running_max",
                "The most password hashes seen running at once since start",
            ),
            hash_admitted: metric(
                &mut r,
                "recall_hash_admitted",
                "Password-hash jobs admitted and not finished (running or queued)",
            ),
            hash_workers: metric(
                &mut r,
                "recall_hash_workers",
                "Password-hash threads (each with one preallocated argon2 memory block)",
            ),
            hash_rejected: metric(
                &mut r,
                "recall_hash_rejected",
                "Password-hash jobs refused because the pool's queue was full (answered 503)",
            ),
            hash_abandoned: metric(
                &mut r,
                "recall_hash_abandoned",
                "Password-hash jobs skipped because their client had gone",
            ),
            followers: metric(
                &mut r,
                "recall_event_followers",
                "Open followers of this instance's applied events: SSE streams \
                 (revocation feed, audit log) and SSF push delivery",
            ),
            write_batches: metric(
                &mut r,
                "recall_store_write_batches",
                "Write transactions committed (or tried) by this instance: each one \
                 commit for the store calls it carried (group commit)",
            ),
            write_units: metric(
                &mut r,
                "recall_store_write_units",
                "Write store calls run inside those transactions (units per batch: \
                 this over recall_store_write_batches)",
            ),
            registry: r,
        }
    }
}

/// Sets a counter mirrored from another source to that source's value.
fn mirror(counter: &Counter, value: u64) {
    let now = counter.get();
    if value > now {
        counter.inc_by(value - now);
    }
}

impl Metrics {
    /// The label of one SSF stream.
    pub fn stream(id: uuid::Uuid) -> StreamLabel {
        StreamLabel {
            stream: id.to_string(),
        }
    }

    /// Counts one login outcome.
    pub fn login(&self, outcome: &'static str) {
        self.logins.get_or_create(&Outcome { outcome }).inc();
    }

    /// Counts one refused bearer token.
    pub fn token_rejected(&self, reason: &'static str) {
        self.tokens_rejected.get_or_create(&Reason { reason }).inc();
    }

    /// Records a propagation lag in milliseconds.
    pub fn observe_lag_ms(&self, ms: f64) {
        self.propagation_lag.observe(ms.max(0.0) / 1000.0);
    }

    /// The OpenMetrics text exposition, gauges first set from `g`.
    pub fn render(&self, g: &Gauges) -> String {
        self.staleness_seconds.set(g.staleness_ms as f64 / 1000.0);
        self.last_seq.set(g.last_seq);
        self.revoked_sessions.set(g.revoked_sessions as i64);
        self.locked_users.set(g.locks as i64);
        self.ready.set(i64::from(g.ready));
        self.hash_running.set(g.hash_running as i64);
        self.hash_running_max.set(g.hash_running_max as i64);
        self.hash_admitted.set(g.hash_admitted as i64);
        self.hash_workers.set(g.hash_workers as i64);
        mirror(&self.hash_rejected, g.hash_rejected);
        mirror(&self.hash_abandoned, g.hash_abandoned);
        self.followers.set(g.followers as i64);
        mirror(&self.write_batches, g.write_batches);
        mirror(&self.write_units, g.write_units);
        let mut out = String::with_capacity(8192);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges {
        Gauges {
            staleness_ms: 1500,
            last_seq: 42,
            revoked_sessions: 3,
            locks: 1,
            ready: true,
            hash_running: 1,
            hash_running_max: 2,
            hash_admitted: 1,
            hash_workers: 2,
            hash_rejected: 7,
            hash_abandoned: 0,
            followers: 0,
            write_batches: 3,
            write_units: 9,
        }
    }

    #[test]
    fn renders_labelled_counters_gauges_and_histograms() {
        let m = Metrics::default();
        m.login("failed");
        m.login("failed");
        m.login("succeeded");
        m.token_rejected("revoked");
        inc(&m.notices_rejected);
        m.observe_lag_ms(3.0);
        m.http_requests
            .get_or_create(&Route {
                route: "/v1/me".into(),
                method: "GET".into(),
                status: 200,
            })
            .observe(0.002);
        let text = m.render(&gauges());
        for line in [
            "recall_logins_total{outcome=\"failed\"} 2",
            "recall_logins_total{outcome=\"succeeded\"} 1",
            "recall_tokens_rejected_total{reason=\"revoked\"} 1",
            "recall_notices_rejected_total 1",
            "recall_hash_rejected_total 7",
            "recall_last_seq 42",
            "recall_ready 1",
            "recall_staleness_seconds 1.5",
            "recall_propagation_lag_seconds_count 1",
            "recall_build_info{version=\"",
            "recall_http_request_duration_seconds_count{route=\"/v1/me\",method=\"GET\",status=\"200\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // Mirrored counters never go down or double count.
        let text = m.render(&gauges());
        assert!(text.contains("recall_hash_rejected_total 7"));
        assert!(text.contains("recall_store_write_batches_total 3"));
        assert!(text.contains("recall_store_write_units_total 9"));
    }
}
