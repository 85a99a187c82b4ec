//! Keeps the revocation state current: applies notices in seq order, fills
//! gaps from the log, catches up on every (re)connect and on a poll timer
//! (G4), and keeps the staleness clock that makes an instance fail closed (G5).
//! Only the log and authenticated notices move `last_seq`; a log whose head
//! is behind what was applied makes the instance fail closed and rebuild (G9).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::bus::notice::NoticeRejected;
use crate::bus::BusMessage;
use crate::events::{Envelope, Event, Meta};
use crate::keys::MasterKey;
use crate::metrics::{inc, Metrics};
use crate::state::RevocationState;
use crate::store::{Store, StoreError};
use crate::tokens::Keyring;

/// Events read per catch-up query.
const PAGE: i64 = 1000;
/// How often spent refresh tokens of ended sessions are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Refresh-token hashes of sessions that ended this long ago are deleted.
const PRUNE_AFTER_MS: i64 = 86_400_000;
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

pub use crate::time::now_ms;

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
        confirmed_at: i64,
    ) -> Self {
        StateSync {
            state: RwLock::new(state),
            store,
            keyring,
            master,
            metrics,
            confirmed_at: AtomicI64::new(confirmed_at),
            max_staleness_ms,
            bus_connected: AtomicBool::new(false),
            catch_up_lock: tokio::sync::Mutex::new(()),
            applied: broadcast::channel(1024).0,
            regression: parking_lot::Mutex::new(None),
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

    /// Time since the log last confirmed we are caught up.
    pub fn staleness_ms(&self, now: i64) -> i64 {
        (now - self.confirmed_at.load(Ordering::Acquire)).max(0)
    }

    /// Whether this instance may answer protected requests (G5, G9).
    pub fn is_fresh(&self, now: i64) -> bool {
        self.staleness_ms(now) <= self.max_staleness_ms && self.regression.lock().is_none()
    }

    /// Why the state cannot be trusted right now: the log went backwards.
    pub fn regression(&self) -> Option<String> {
        self.regression.lock().clone()
    }

    /// Records that a read of the log (readiness, say) found its head
    /// behind the state: fail closed now; the next catch-up rebuilds.
    pub fn note_regression(&self, head: i64, applied: i64) {
        let mut slot = self.regression.lock();
        if slot.is_none() {
            inc(&self.metrics.log_regressions);
            let reason = regression_reason(head, applied);
            tracing::error!(head, applied, "recall_log_regressions_total: {reason}");
            *slot = Some(reason);
        }
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
                state.apply(env);
                if expected {
                    let _ = self.applied.send(env.clone());
                } else if env.seq > state.last_seq() {
                    in_order = false;
                }
            }
        }
        in_order
    }

    /// Handles one bus notice: in order, apply; behind, fill the gap from the log.
    pub async fn on_notice(&self, env: Envelope) {
        inc(&self.metrics.notices_received);
        let last = self.state.read().last_seq();
        if env.seq <= last {
            return; // duplicate or our own
        }
        if env.seq == last + 1 {
            // A new signing key: load its material now, so its tokens verify
            // here as soon as the notice lands.
            if self.apply_in_order(std::slice::from_ref(&env)) {
                if let Err(e) = self.reload_keys().await {
                    tracing::warn!(error = %e, "key reload failed; the poller will retry");
                }
            }
            return;
        }
        inc(&self.metrics.gaps_detected);
        tracing::info!(last, seq = env.seq, "gap between notices; reading the log");
        if let Err(e) = self.catch_up().await {
            tracing::warn!(error = %e, "gap fill failed; the poller will retry");
        }
    }

    /// Counts a notice that failed authentication and drops it: it moves
    /// nothing and reads nothing, so forged notices cannot load the database.
    pub fn on_rejected(&self, why: NoticeRejected) {
        inc(&self.metrics.notices_rejected);
        let now = now_ms();
        let last = self.rejection_logged_at.load(Ordering::Relaxed);
        if now - last >= REJECTION_LOG_EVERY_MS
            && self
                .rejection_logged_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let since = self.rejections_unlogged.swap(0, Ordering::AcqRel);
            tracing::warn!(
                reason = %why,
                unlogged_since_last = since,
                "dropped a notice that failed authentication: someone without this \
                 deployment's master key publishes on the channel (logged at most once a minute; \
                 see recall_notices_rejected_total)"
            );
        } else {
            self.rejections_unlogged.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn apply_in_order(&self, envs: &[Envelope]) -> bool {
        let now = now_ms();
        let mut key_event = false;
        let mut state = self.state.write();
        for env in envs {
            if env.seq != state.last_seq() + 1 {
                continue;
            }
            state.apply(env);
            self.metrics.observe_lag_ms((now - env.at) as f64);
            key_event |= matches!(env.event, Event::KeyRotated { .. });
            let _ = self.applied.send(env.clone());
        }
        key_event
    }

    /// Reads every event after our last seq and applies them in order; on
    /// success the log has confirmed we are caught up as of the read's start.
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.catch_up_lock.lock().await;
        let started = now_ms();
        inc(&self.metrics.catchup_reads);
        let mut key_event = false;
        loop {
            let after = self.state.read().last_seq();
            let page = self.timed(self.store.read_after(after, PAGE)).await?;
            let n = page.len() as i64;
            self.metrics.catchup_events.inc_by(n as u64);
            key_event |= self.apply_in_order(&page);
            if n < PAGE {
                break;
            }
        }
        // Everything applied so far was committed before this read of the
        // head, so a sane log's head is at least `applied` (G9).
        let applied = self.state.read().last_seq();
        let head = self.timed(self.store.head()).await?;
        if head < applied || self.regression.lock().is_some() {
            self.rebuild(head, applied).await?;
            return Ok(());
        }
        if key_event || self.missing_key_material() {
            self.reload_keys().await?;
        }
        self.confirmed_at.fetch_max(started, Ordering::AcqRel);
        Ok(())
    }

    async fn timed<T>(
        &self,
        read: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("log read timed out".into())));
        if result.is_err() {
            inc(&self.metrics.catchup_failures);
        }
        result
    }

    /// The log is behind the state (a restored backup, a wrong database):
    /// fail closed, rebuild from the log's revocation window, and serve
    /// again once the rebuilt state matches the log. Called under the
    /// catch-up lock.
    async fn rebuild(&self, head: i64, applied: i64) -> Result<(), StoreError> {
        if head < applied {
            self.note_regression(head, applied);
        }
        let started = now_ms();
        let retention_ms = self.state.read().retention_ms();
        let snapshot = self
            .timed(self.store.snapshot(started - retention_ms, started))
            .await?;
        let rebuilt = RevocationState::from_snapshot(&snapshot, retention_ms, started);
        self.keyring
            .load(&snapshot.keys, &self.master)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        *self.state.write() = rebuilt;
        // Events committed since the snapshot (this instance's own, say)
        // are read before serving again, so none is forgotten (G2).
        loop {
            let after = self.state.read().last_seq();
            let page = self.timed(self.store.read_after(after, PAGE)).await?;
            self.apply_in_order(&page);
            if (page.len() as i64) < PAGE {
                break;
            }
        }
        self.confirmed_at.fetch_max(started, Ordering::AcqRel);
        *self.regression.lock() = None;
        tracing::info!(
            head = snapshot.head,
            window_events = snapshot.events.len(),
            "state rebuilt after the log went backwards; serving again"
        );
        Ok(())
    }

    fn missing_key_material(&self) -> bool {
        let now = now_ms();
        let keys = self.state.read().keys(now);
        keys.iter().any(|(kid, status)| {
            use crate::state::KeyStatus::*;
            matches!(status, Active | Verifying) && !self.keyring.has(kid)
        })
    }

    /// Loads key material for keys the state knows but the keyring lacks.
    pub async fn reload_keys(&self) -> Result<(), StoreError> {
        let records = self.store.keys().await?;
        self.keyring
            .load(&records, &self.master)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Prunes the state and retires keys whose tokens have all expired.
    pub async fn housekeeping(&self) {
        let now = now_ms();
        self.state.write().prune(now);
        let due = self.state.read().retirement_due(now);
        if due {
            match self.store.retire_keys(&Meta::system(), now).await {
                Ok(envs) if !envs.is_empty() => {
                    tracing::info!(count = envs.len(), "retired signing keys");
                    let _ = self.catch_up().await;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "key retirement failed"),
            }
        }
    }

    /// Starts the notice listener and the poller; they stop when aborted.
    pub fn start(
        self: &Arc<Self>,
        mut notices: mpsc::Receiver<BusMessage>,
        poll: Duration,
    ) -> Vec<JoinHandle<()>> {
        let listener = {
            let sync = self.clone();
            tokio::spawn(async move {
                while let Some(msg) = notices.recv().await {
                    match msg {
                        BusMessage::Connected => {
                            sync.bus_connected.store(true, Ordering::Relaxed);
                            tracing::info!("bus subscribed; catching up from the log");
                            if let Err(e) = sync.catch_up().await {
                                tracing::warn!(error = %e, "catch-up after subscribe failed");
                            }
                        }
                        BusMessage::Notice(env) => sync.on_notice(*env).await,
                        BusMessage::Rejected(why) => sync.on_rejected(why),
                        BusMessage::Disconnected => {
                            sync.bus_connected.store(false, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        let poller = {
            let sync = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(poll);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut last_prune = std::time::Instant::now();
                loop {
                    tick.tick().await;
                    if let Err(e) = sync.catch_up().await {
                        tracing::warn!(error = %e, "poll of the log failed");
                    }
                    sync.housekeeping().await;
                    if last_prune.elapsed() >= PRUNE_EVERY {
                        last_prune = std::time::Instant::now();
                        match sync
                            .store
                            .prune_refresh_tokens(now_ms() - PRUNE_AFTER_MS)
                            .await
                        {
                            Ok(n) if n > 0 => tracing::info!(
                                deleted = n,
                                "pruned refresh tokens of ended sessions"
                            ),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "refresh-token pruning failed"),
                        }
                    }
                }
            })
        };
        vec![listener, poller]
    }
}
