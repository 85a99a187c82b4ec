//! Keeps the revocation state current: applies notices in seq order, fills
//! gaps from the log, catches up on every (re)connect and on a poll timer
//! (G4), and keeps the staleness clock that makes an instance fail closed (G5).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

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
/// A log read that takes longer than this counts as failed.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
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

    /// Whether this instance may answer protected requests (G5).
    pub fn is_fresh(&self, now: i64) -> bool {
        self.staleness_ms(now) <= self.max_staleness_ms
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

    fn apply_in_order(&self, envs: &[Envelope]) -> bool {
        let now = now_ms();
        let mut key_event = false;
        let mut state = self.state.write();
        for env in envs {
            if env.seq != state.last_seq() + 1 {
                continue;
            }
            state.apply(env);
            self.metrics
                .propagation_lag
                .observe_ms((now - env.at) as f64);
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
            let read = tokio::time::timeout(READ_TIMEOUT, self.store.read_after(after, PAGE)).await;
            let page = match read
                .unwrap_or_else(|_| Err(StoreError::Unavailable("log read timed out".into())))
            {
                Ok(p) => p,
                Err(e) => {
                    inc(&self.metrics.catchup_failures);
                    return Err(e);
                }
            };
            let n = page.len() as i64;
            self.metrics
                .catchup_events
                .fetch_add(n as u64, Ordering::Relaxed);
            key_event |= self.apply_in_order(&page);
            if n < PAGE {
                break;
            }
        }
        if key_event || self.missing_key_material() {
            self.reload_keys().await?;
        }
        self.confirmed_at.fetch_max(started, Ordering::AcqRel);
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
                        match sync.store.prune_refresh_tokens(now_ms() - 86_400_000).await {
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
