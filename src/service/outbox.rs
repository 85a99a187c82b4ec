//! The bounded queue of notices waiting to be published.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::events::Envelope;
use crate::metrics::{inc, Metrics};

/// Notices waiting to be published: bounded, dropping the oldest when full
/// (the log covers a dropped notice, G4), so a stalled Redis cannot grow
/// memory without end.
pub(super) struct Outbox {
    pub(super) queue: parking_lot::Mutex<VecDeque<Envelope>>,
    pub(super) capacity: usize,
    pub(super) ready: tokio::sync::Notify,
    /// Queued plus being sent.
    pub(super) unpublished: AtomicUsize,
}

impl Outbox {
    /// An empty outbox holding at most `capacity` notices (at least one).
    pub(super) fn new(capacity: usize) -> Self {
        Outbox {
            queue: parking_lot::Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: tokio::sync::Notify::new(),
            unpublished: AtomicUsize::new(0),
        }
    }

    pub(super) fn push(&self, env: Envelope, metrics: &Metrics) {
        {
            let mut queue = self.queue.lock();
            if queue.len() >= self.capacity && queue.pop_front().is_some() {
                self.unpublished.fetch_sub(1, Ordering::AcqRel);
                inc(&metrics.notices_dropped);
            }
            queue.push_back(env);
            self.unpublished.fetch_add(1, Ordering::AcqRel);
        }
        self.ready.notify_one();
    }

    pub(super) async fn next(&self) -> Envelope {
        loop {
            if let Some(env) = self.queue.lock().pop_front() {
                return env;
            }
            self.ready.notified().await;
        }
    }
}
