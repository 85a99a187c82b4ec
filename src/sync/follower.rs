//! The follower: applies authenticated notices in order, fills gaps from
//! the log, polls it (G4), keeps the staleness clock (G5), and rebuilds when
//! the log goes backwards (G9).
//!
//! May import: what `sync` may (its top comment).

use super::*;
use crate::clock::Timestamp;

/// Runs the notice listener until the subscription ends.
pub(super) fn listen(
    sync: Arc<StateSync>,
    mut notices: mpsc::Receiver<BusMessage>,
) -> JoinHandle<()> {
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
}

/// Reads the log every `poll`, whatever the bus does (G4).
pub(super) fn poll(sync: Arc<StateSync>, poll: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sync.catch_up().await {
                tracing::warn!(error = %e, "poll of the log failed");
            }
        }
    })
}

impl StateSync {
    /// Records that a read of the log (readiness, say) found its head
    /// behind the state: fail closed now; the next catch-up rebuilds.
    pub fn note_regression(&self, head: i64, applied: i64) {
        let mut slot = self.regression.lock();
        if slot.is_none() {
            inc(&self.metrics.log_regressions);
            let reason = regression_reason(head, applied);
            tracing::error!(head, applied, "recall_log_regressions_total: {reason}");
            *slot = Some(reason);
            self.regressed.store(true, Ordering::Release);
        }
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
        let now = Timestamp::now().ms();
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
        let now = Timestamp::now();
        let mut key_event = false;
        let mut state = self.state.write();
        for env in envs {
            if env.seq != state.last_seq() + 1 {
                continue;
            }
            state.apply_event(env);
            self.note_fleet_change(env);
            self.metrics.observe_lag_ms((now.ms() - env.at.ms()) as f64);
            key_event |= matches!(env.event, Event::KeyRotated { .. });
            let _ = self.applied.send(env.clone());
        }
        key_event
    }

    /// Reads every event after our last seq and applies them in order; on
    /// success the log has confirmed we are caught up as of the read's start.
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.catch_up_lock.lock().await;
        let started = Timestamp::now();
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
        if head < applied || self.regressed.load(Ordering::Acquire) {
            self.rebuild(head, applied).await?;
            return Ok(());
        }
        if key_event || self.missing_key_material() {
            self.reload_keys().await?;
        }
        self.confirmed_at.fetch_max(started.ms(), Ordering::AcqRel);
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
        let started = Timestamp::now();
        let retention_ms = self.state.read().retention_ms();
        let (rebuilt, standing, window_events) = self
            .timed(super::rebuild::from_window(
                &self.store,
                retention_ms,
                started,
            ))
            .await?;
        self.keyring
            .load(&standing.keys, &self.master)
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
        self.confirmed_at.fetch_max(started.ms(), Ordering::AcqRel);
        let mut slot = self.regression.lock();
        *slot = None;
        self.regressed.store(false, Ordering::Release);
        drop(slot);
        tracing::info!(
            head = standing.head,
            window_events,
            "state rebuilt after the log went backwards; serving again"
        );
        Ok(())
    }

    fn missing_key_material(&self) -> bool {
        let now = Timestamp::now();
        let keys = self.state.read().keys(now.ms());
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
}
