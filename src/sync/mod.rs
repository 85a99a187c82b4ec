//! Keeps the revocation state current: applies notices in seq order, fills
//! gaps from the log, catches up on every (re)connect and on a poll timer
//! (G4), and keeps the staleness clock that makes an instance fail closed (G5).
//! Only the log and authenticated notices move `last_seq`; a log whose head
//! is behind what was applied makes the instance fail closed and rebuild (G9).
//!
//! Split by job: this module is the handle the request path reads (state,
//! keyring, freshness; no I/O); `follower` keeps it current from notices and
//! the log; `maintenance` prunes and retires keys; `evidence` signs
//! checkpoints of the log and applies its retention.
//!
//! May import: store, bus, state, tokens, keys, metrics, events, clock. The
//! layers: docs/DESIGN.md, "Parts".

pub mod evidence;
mod follower;
mod maintenance;
pub mod rebuild;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::bus::notice::NoticeRejected;
use crate::bus::BusMessage;
use crate::clock::Timestamp;
use crate::events::{Envelope, Event, Meta};
use crate::keys::MasterKey;
use crate::metrics::{inc, Metrics};
use crate::state::{EventFold, RevocationState};
use crate::store::{Store, StoreError};
use crate::tokens::Keyring;

/// Events read per catch-up query.
const PAGE: i64 = 1000;
/// How often spent refresh tokens of ended sessions are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Refresh-token hashes of sessions that ended this long ago are deleted.
const PRUNE_AFTER: Duration = Duration::from_secs(86_400);
/// A log read that takes longer than this counts as failed.
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Rejected notices are logged at most this often (a flood must not flood the log).
const REJECTION_LOG_EVERY_MS: i64 = 60_000;

fn regression_reason(head: i64, applied: i64) -> String {
    format!(
        "the log's head ({head}) is behind what this instance applied ({applied}): \
         a restored backup or a wrong RECALL_DATABASE_URL; rebuilding from the log"
    )
}

/// The state, its keyring and the machinery that keeps them current.
pub struct StateSync {
    state: RwLock<RevocationState>,
    store: Store,
    keyring: Arc<Keyring>,
    master: MasterKey,
    metrics: Arc<Metrics>,
    /// When the log last confirmed we had everything (ms).
    confirmed_at: AtomicI64,
    max_staleness_ms: i64,
    bus_connected: AtomicBool,
    catch_up_lock: tokio::sync::Mutex<()>,
    applied: broadcast::Sender<Envelope>,
    /// Set while the log is behind the state: fail closed until rebuilt (G9).
    regression: parking_lot::Mutex<Option<String>>,
    /// `regression.is_some()`, readable on the request path without a lock.
    regressed: AtomicBool,
    /// When a rejected notice was last logged (ms), and how many since.
    rejection_logged_at: AtomicI64,
    rejections_unlogged: AtomicI64,
}

impl StateSync {
    /// Wraps a state rebuilt at `confirmed_at`.
    pub fn new(
        state: RevocationState,
        store: Store,
        keyring: Arc<Keyring>,
        master: MasterKey,
        metrics: Arc<Metrics>,
        max_staleness_ms: i64,
        confirmed_at: Timestamp,
    ) -> Self {
        StateSync {
            state: RwLock::new(state),
            store,
            keyring,
            master,
            metrics,
            confirmed_at: AtomicI64::new(confirmed_at.ms()),
            max_staleness_ms,
            bus_connected: AtomicBool::new(false),
            catch_up_lock: tokio::sync::Mutex::new(()),
            applied: broadcast::channel(1024).0,
            regression: parking_lot::Mutex::new(None),
            regressed: AtomicBool::new(false),
            rejection_logged_at: AtomicI64::new(i64::MIN / 2),
            rejections_unlogged: AtomicI64::new(0),
        }
    }

    /// Read access to the state (the request path; no I/O).
    pub fn state(&self) -> parking_lot::RwLockReadGuard<'_, RevocationState> {
        self.state.read()
    }

    /// The keyring.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// Events as they are applied in order (feeds the SSE stream).
    pub fn applied(&self) -> broadcast::Receiver<Envelope> {
        self.applied.subscribe()
    }

    /// How many followers of applied events are open (`recall_event_followers`).
    pub fn followers(&self) -> usize {
        self.applied.receiver_count()
    }

    /// Time since the log last confirmed we are caught up.
    pub fn staleness_ms(&self, now: Timestamp) -> i64 {
        (now.ms() - self.confirmed_at.load(Ordering::Acquire)).max(0)
    }

    /// Whether this instance may answer protected requests (G5, G9).
    pub fn is_fresh(&self, now: Timestamp) -> bool {
        self.staleness_ms(now) <= self.max_staleness_ms && !self.regressed.load(Ordering::Acquire)
    }

    /// Why the state cannot be trusted right now: the log went backwards.
    pub fn regression(&self) -> Option<String> {
        self.regression.lock().clone()
    }

    /// Whether the bus subscription is up.
    pub fn bus_connected(&self) -> bool {
        self.bus_connected.load(Ordering::Relaxed)
    }

    /// Applies events this instance just committed, before it answers (G2).
    /// Returns true when they were next in order; otherwise the caller
    /// should catch up so earlier events get applied too.
    pub fn apply_local(&self, envs: &[Envelope]) -> bool {
        let mut in_order = true;
        {
            let mut state = self.state.write();
            for env in envs {
                let expected = env.seq == state.last_seq() + 1;
                state.apply_event(env);
                self.note_fleet_change(env);
                if expected {
                    let _ = self.applied.send(env.clone());
                } else if env.seq > state.last_seq() {
                    in_order = false;
                }
            }
        }
        in_order
    }

    /// What an applied event changes outside the revocation state: after
    /// the fleet's issuer changed, this instance accepts the new issuer's
    /// tokens at once, so instances restarted with it are not refused by
    /// those still running (G13).
    fn note_fleet_change(&self, env: &Envelope) {
        if let Event::IssuerChanged { issuer, .. } = &env.event {
            if self.keyring.accept_issuer(issuer) {
                tracing::info!(%issuer, seq = env.seq, "the fleet's issuer changed: its tokens verify here now");
            }
        }
    }

    /// Starts the follower (notices and the log poll) and the maintenance
    /// task (pruning, key retirement, checkpoints, the log's retention:
    /// `log_retention`, none to keep everything); they stop when aborted.
    pub fn start(
        self: &Arc<Self>,
        notices: mpsc::Receiver<BusMessage>,
        poll: Duration,
        log_retention: Option<Duration>,
    ) -> Vec<JoinHandle<()>> {
        vec![
            follower::listen(self.clone(), notices),
            follower::poll(self.clone(), poll),
            maintenance::run(self.clone(), poll, log_retention),
        ]
    }
}
