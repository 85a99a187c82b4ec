//! Redis pub/sub bus (fleet). Publishing uses a multiplexed connection that
//! is rebuilt after an error; subscribing runs a reconnect loop with backoff.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncConnectionConfig;
use tokio::sync::{mpsc, Mutex};

use super::{decode_notice, encode_notice, Bus, BusError, BusMessage};
use crate::events::Envelope;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Notices over one Redis channel.
pub struct RedisBus {
    client: redis::Client,
    channel: String,
    publisher: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl RedisBus {
    /// A bus on `channel` of the server at `url` (connects lazily).
    pub fn new(url: &str, channel: &str) -> Result<Self, BusError> {
        let client = redis::Client::open(url).map_err(|e| BusError(e.to_string()))?;
        Ok(RedisBus {
            client,
            channel: channel.to_owned(),
            publisher: Mutex::new(None),
        })
    }

    fn config() -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, env: &Envelope) -> Result<(), BusError> {
        let mut guard = self.publisher.lock().await;
        if guard.is_none() {
            let conn = self
                .client
                .get_multiplexed_async_connection_with_config(&Self::config())
                .await
                .map_err(|e| BusError(e.to_string()))?;
            *guard = Some(conn);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(BusError("no connection".into()));
        };
        let payload = encode_notice(env);
        let result: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .query_async(conn)
            .await;
        if let Err(e) = result {
            *guard = None;
            return Err(BusError(e.to_string()));
        }
        Ok(())
    }

    fn subscribe(&self) -> mpsc::Receiver<BusMessage> {
        let (out, rx) = mpsc::channel(1024);
        let client = self.client.clone();
        let channel = self.channel.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                if out.is_closed() {
                    return;
                }
                match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
                    Ok(Ok(mut pubsub)) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            backoff = Duration::from_millis(50);
                            // Subscribed first; the receiver now reads the log (G4).
                            if out.send(BusMessage::Connected).await.is_err() {
                                return;
                            }
                            let mut stream = pubsub.on_message();
                            while let Some(msg) = stream.next().await {
                                if let Some(env) = decode_notice(msg.get_payload_bytes()) {
                                    if out.send(BusMessage::Notice(Box::new(env))).await.is_err() {
                                        return;
                                    }
                                } else {
                                    tracing::warn!(channel = %channel, "ignored a malformed notice");
                                }
                            }
                            tracing::warn!(channel = %channel, "redis subscription dropped");
                            if out.send(BusMessage::Disconnected).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "redis subscribe failed"),
                    },
                    Ok(Err(e)) => tracing::debug!(error = %e, "redis connect failed"),
                    Err(_) => tracing::debug!("redis connect timed out"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
        rx
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
