//! What the verifier counts and how it shows it: the counters behind the
//! sidecar's `/metrics`, a counter per refusal reason, `record` (which
//! counts every answer `authenticate` and its kin give) and the Prometheus
//! text. Imports `error` (the answers and their reasons); the rest it
//! reads through the verifier.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Verifier;
use crate::error::{Principal, VerifyError, REASONS};

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

impl Verifier {
    pub(super) fn record(
        &self,
        result: Result<Principal, VerifyError>,
    ) -> Result<Principal, VerifyError> {
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
}
