//! Prometheus metrics, kept as atomics and rendered as text on `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (ms) of the propagation-lag histogram buckets.
const LAG_BUCKETS_MS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// A fixed-bucket histogram.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LAG_BUCKETS_MS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation in milliseconds.
    pub fn observe_ms(&self, ms: f64) {
        let ms = ms.max(0.0);
        for (i, bound) in LAG_BUCKETS_MS.iter().enumerate() {
            if ms <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((ms * 1000.0) as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, bound) in LAG_BUCKETS_MS.iter().enumerate() {
            let secs = bound / 1000.0;
            let n = self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{secs}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Every counter Recall exports.
#[derive(Default)]
pub struct Metrics {
    pub propagation_lag: Histogram,
    pub notices_received: AtomicU64,
    pub notices_rejected: AtomicU64,
    pub log_regressions: AtomicU64,
    pub gaps_detected: AtomicU64,
    pub catchup_reads: AtomicU64,
    pub catchup_events: AtomicU64,
    pub catchup_failures: AtomicU64,
    pub publish_failures: AtomicU64,
    pub logins_succeeded: AtomicU64,
    pub logins_failed: AtomicU64,
    pub guesses_refused: AtomicU64,
    pub rate_limited: AtomicU64,
    pub notices_dropped: AtomicU64,
    pub refreshes: AtomicU64,
    pub tokens_rejected: AtomicU64,
    pub stale_rejections: AtomicU64,
}

/// Gauges read at render time.
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
}

/// Adds one to a counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        self.propagation_lag.render(
            "recall_propagation_lag_seconds",
            "Time from an event's commit to its apply on this instance.",
            &mut out,
        );
        let counters: [(&str, &str, &AtomicU64); 16] = [
            (
                "recall_notices_received_total",
                "Authenticated bus notices received.",
                &self.notices_received,
            ),
            (
                "recall_notices_rejected_total",
                "Bus notices dropped because they failed authentication (G9).",
                &self.notices_rejected,
            ),
            (
                "recall_log_regressions_total",
                "Times the log's head was found behind the applied state (restore, wrong database).",
                &self.log_regressions,
            ),
            (
                "recall_gaps_detected_total",
                "Sequence gaps seen between notices.",
                &self.gaps_detected,
            ),
            (
                "recall_catchup_reads_total",
                "Reads of the log to catch up.",
                &self.catchup_reads,
            ),
            (
                "recall_catchup_events_total",
                "Events applied from catch-up reads.",
                &self.catchup_events,
            ),
            (
                "recall_catchup_failures_total",
                "Catch-up reads that failed.",
                &self.catchup_failures,
            ),
            (
                "recall_publish_failures_total",
                "Notices that could not be published.",
                &self.publish_failures,
            ),
            (
                "recall_logins_succeeded_total",
                "Successful logins.",
                &self.logins_succeeded,
            ),
            (
                "recall_logins_failed_total",
                "Failed logins.",
                &self.logins_failed,
            ),
            (
                "recall_login_guesses_refused_total",
                "Logins and password checks refused unhashed: the username is locked or its budget is spent (G10).",
                &self.guesses_refused,
            ),
            (
                "recall_rate_limited_total",
                "Requests answered 429 by the per-address rate limit.",
                &self.rate_limited,
            ),
            (
                "recall_notices_dropped_total",
                "Notices dropped from a full publish queue (the log covers them).",
                &self.notices_dropped,
            ),
            (
                "recall_refreshes_total",
                "Successful refreshes.",
                &self.refreshes,
            ),
            (
                "recall_tokens_rejected_total",
                "Bearer tokens rejected.",
                &self.tokens_rejected,
            ),
            (
                "recall_stale_rejections_total",
                "Requests refused while stale (fail closed).",
                &self.stale_rejections,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        for (name, help, v) in [
            (
                "recall_hash_rejected_total",
                "Password-hash jobs refused because the pool's queue was full (answered 503).",
                g.hash_rejected,
            ),
            (
                "recall_hash_abandoned_total",
                "Password-hash jobs skipped because their client had gone.",
                g.hash_abandoned,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let gauges: [(&str, &str, f64); 9] = [
            (
                "recall_hash_running",
                "Password hashes running now (at most recall_hash_workers).",
                g.hash_running as f64,
            ),
            (
                "recall_hash_running_max",
                "The most password hashes seen running at once since start.",
                g.hash_running_max as f64,
            ),
            (
                "recall_hash_admitted",
                "Password-hash jobs admitted and not finished (running or queued).",
                g.hash_admitted as f64,
            ),
            (
                "recall_hash_workers",
                "Password-hash threads (each with one preallocated argon2 memory block).",
                g.hash_workers as f64,
            ),
            (
                "recall_staleness_seconds",
                "Time since this instance last confirmed it is caught up with the log.",
                g.staleness_ms as f64 / 1000.0,
            ),
            (
                "recall_last_seq",
                "Highest event seq applied in order.",
                g.last_seq as f64,
            ),
            (
                "recall_revoked_sessions",
                "Revoked sessions held in memory.",
                g.revoked_sessions as f64,
            ),
            (
                "recall_locked_users",
                "Locked users held in memory.",
                g.locks as f64,
            ),
            (
                "recall_ready",
                "1 when ready (caught up within the staleness bound).",
                if g.ready { 1.0 } else { 0.0 },
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}
