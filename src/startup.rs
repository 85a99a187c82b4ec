//! Starting a Recall process: open and migrate the store, pick the bus,
//! join the fleet (G13), make sure a signing key exists, rebuild the state
//! from the revocation window, then start the background tasks (sync,
//! notice publishing, rate-limit sweeping, SSF push delivery) around the
//! assembled services. The one place processes are wired; `service` holds
//! behaviour only.
//!
//! May import: config, service, sync, store, bus, keys, tokens, metrics,
//! events.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::bus::{redis::RedisBus, Bus, LocalBus};
use crate::clock::Timestamp;
use crate::config::Settings;
use crate::events::{Meta, Stamp};
use crate::keys::generate_signing_key;
use crate::metrics::Metrics;
use crate::service::{fleet::join_fleet, push::instance_id, Recall};
use crate::store::Store;
use crate::sync::{rebuild, StateSync};
use crate::tokens::Keyring;

/// A started instance and its background tasks.
pub type Started = (Arc<Recall>, Vec<JoinHandle<()>>);

/// Migrates the store, makes sure a signing key exists, rebuilds the
/// state from the revocation window and starts sync and publishing.
pub async fn start(settings: Settings) -> anyhow::Result<Started> {
    let store = settings.open_store()?;
    store.migrate().await?;
    let bus: Arc<dyn Bus> = match &settings.redis_url {
        Some(url) => Arc::new(RedisBus::new(
            url,
            &settings.redis_channel,
            settings.notice_auth(),
            settings.redis_ca_file.as_deref(),
        )?),
        None => Arc::new(LocalBus::default()),
    };
    start_with(settings, store, bus).await
}

/// `start` with a given store and bus (tests share a `LocalBus`).
pub async fn start_with(
    settings: Settings,
    store: Store,
    bus: Arc<dyn Bus>,
) -> anyhow::Result<Started> {
    // G13 first: an instance that would split the fleet generates no key
    // and builds no state.
    let (settings, previous_issuers) = join_fleet(settings, &store).await?;
    let now = Timestamp::now();
    let first_key = generate_signing_key(&settings.master_key, now)?;
    if let Some(env) = store
        .ensure_active_key(&first_key, &Stamp::new(&Meta::system(), now))
        .await?
    {
        tracing::info!(kid = %first_key.kid, seq = env.seq, "generated the first signing key");
    }
    // Subscribe before reading, so nothing committed in between is missed (G4).
    let notices = bus.subscribe();
    let started = Timestamp::now();
    let (state, standing, window_events) =
        rebuild::from_window(&store, settings.retention_ms(), started).await?;
    tracing::info!(
        head = standing.head,
        window_events,
        store = store.kind(),
        bus = bus.kind(),
        "state rebuilt from the revocation window"
    );
    let mut accepted = settings.accepted_issuers();
    accepted.extend(previous_issuers.iter().map(String::as_str));
    let keyring = Arc::new(Keyring::new(
        &settings.issuer,
        &accepted,
        &settings.audience,
    ));
    keyring.load(&standing.keys, &settings.master_key)?;
    let metrics = Arc::new(Metrics::default());
    let sync = Arc::new(StateSync::new(
        state,
        store.clone(),
        keyring,
        settings.master_key.clone(),
        metrics.clone(),
        settings.max_staleness_ms,
        started,
    ));
    let mut tasks = sync.start(
        notices,
        Duration::from_millis(settings.poll_interval_ms),
        settings.log_retention(),
    );
    let recall = Recall::new(settings, store, sync, metrics, bus);
    let spawn = |job: fn(Arc<Recall>) -> futures_util::future::BoxFuture<'static, ()>| {
        tokio::spawn(job(recall.clone()))
    };
    tasks.push(spawn(|r| {
        Box::pin(async move { r.publish_notices().await })
    }));
    tasks.push(spawn(|r| {
        Box::pin(async move { r.sweep_rate_limits().await })
    }));
    // SSF push delivery (RFC 8935), off the write path; a lease in the
    // store picks one instance per stream.
    tasks.push(spawn(|r| {
        Box::pin(async move { r.signals().run_push(instance_id()).await })
    }));
    Ok((recall, tasks))
}
