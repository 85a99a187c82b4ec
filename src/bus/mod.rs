//! The notice port: after each commit the serving instance publishes the
//! event, so every other instance applies it at once (G3). Notices are
//! at-most-once; `sync` covers losses from the log (G4).
//!
//! May import: events, keys, tls. The layers: docs/DESIGN.md, "Parts".

pub mod notice;
pub mod redis;
pub mod sentinel;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};

use crate::events::Envelope;

/// What a subscription yields.
#[derive(Debug, Clone)]
pub enum BusMessage {
    /// (Re)subscribed: anything sent while away is lost, read the log.
    Connected,
    /// One authenticated notice: the committed event with its seq.
    Notice(Box<Envelope>),
    /// A notice that failed authentication (G9): dropped, only counted.
    Rejected(notice::NoticeRejected),
    /// The subscription dropped; a reconnect follows.
    Disconnected,
}

/// Errors publishing a notice (never fatal: the log is the truth).
#[derive(Debug, thiserror::Error)]
#[error("bus: {0}")]
pub struct BusError(pub String);

/// A notice channel shared by the fleet.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Sends one notice.
    async fn publish(&self, env: &Envelope) -> Result<(), BusError>;
    /// Starts a subscription that reconnects by itself until the receiver drops.
    fn subscribe(&self) -> mpsc::Receiver<BusMessage>;
    /// "redis" or "local".
    fn kind(&self) -> &'static str;
    /// Records the first use of `key` for `ttl_ms` across the fleet:
    /// `Some(true)` the first time, `Some(false)` after; `None` when this
    /// bus is not shared (in-process). An error when the server does not
    /// answer: the caller fails closed.
    async fn first_use(&self, key: &str, ttl_ms: u64) -> Result<Option<bool>, BusError> {
        let _ = (key, ttl_ms);
        Ok(None)
    }
}

/// In-process bus for a single instance (or several in one process).
#[derive(Clone)]
pub struct LocalBus {
    tx: broadcast::Sender<Envelope>,
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus {
            tx: broadcast::channel(4096).0,
        }
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, env: &Envelope) -> Result<(), BusError> {
        // No subscriber is not an error: a lone instance applied it already.
        let _ = self.tx.send(env.clone());
        Ok(())
    }

    fn subscribe(&self) -> mpsc::Receiver<BusMessage> {
        let (out, rx) = mpsc::channel(1024);
        let mut sub = self.tx.subscribe();
        tokio::spawn(async move {
            if out.send(BusMessage::Connected).await.is_err() {
                return;
            }
            loop {
                let msg = match sub.recv().await {
                    Ok(env) => BusMessage::Notice(Box::new(env)),
                    // Lagged: notices were dropped; a reconnect makes sync read the log.
                    Err(broadcast::error::RecvError::Lagged(_)) => BusMessage::Connected,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if out.send(msg).await.is_err() {
                    return;
                }
            }
        });
        rx
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}
