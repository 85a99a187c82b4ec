//! Redis pub/sub bus (fleet). Publishing uses a multiplexed connection that
//! is rebuilt after an error; subscribing runs a reconnect loop with backoff.
//! Every notice is authenticated (G9, `notice`); `rediss://` URLs use TLS
//! (rustls) with the system roots, or only the CA in `RECALL_REDIS_CA_FILE`.
//! A `redis+sentinel://` URL (`sentinel`) makes every connect, publisher,
//! subscriber and DPoP replay alike, ask the sentinels for the master first.
//!
//! May import: what `bus` may (its top comment).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncConnectionConfig;
use tokio::sync::{mpsc, Mutex};

use super::notice::NoticeAuth;
use super::sentinel::{is_sentinel_url, SentinelUrl, Sentinels};
use super::{Bus, BusError, BusMessage};
use crate::events::Envelope;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where the Redis server is.
#[derive(Clone)]
enum Server {
    /// One fixed address.
    Fixed(Arc<redis::Client>),
    /// Whichever master the sentinels name at each connect.
    Sentinel(Arc<Sentinels>),
}

impl Server {
    /// A client for the server to connect to now.
    async fn client(&self) -> Result<redis::Client, BusError> {
        match self {
            Server::Fixed(client) => Ok(redis::Client::clone(client)),
            Server::Sentinel(sentinels) => sentinels.master().await,
        }
    }

    /// A multiplexed connection to the server (the master, through Sentinel).
    async fn connect(&self) -> Result<redis::aio::MultiplexedConnection, BusError> {
        self.client()
            .await?
            .get_multiplexed_async_connection_with_config(&RedisBus::config())
            .await
            .map_err(|e| BusError(crate::tls::explain(&e, "RECALL_REDIS_CA_FILE")))
    }

    /// A pub/sub connection to the server, within `CONNECT_TIMEOUT`.
    async fn pubsub(&self) -> Result<redis::aio::PubSub, BusError> {
        let client = self.client().await?;
        match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => Ok(pubsub),
            Ok(Err(e)) => Err(BusError(crate::tls::explain(&e, "RECALL_REDIS_CA_FILE"))),
            Err(_) => Err(BusError("connect timed out".into())),
        }
    }
}

/// Notices over one Redis channel.
pub struct RedisBus {
    server: Server,
    channel: String,
    auth: NoticeAuth,
    publisher: Mutex<Option<redis::aio::MultiplexedConnection>>,
    /// For DPoP replay checks (many at once: the connection is cloned out).
    replay: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl RedisBus {
    /// A bus on `channel` of the server at `url` (connects lazily), its
    /// notices authenticated by `auth`. With `ca_file`, a `rediss://` server
    /// must present a certificate from that CA (instead of the system roots).
    pub fn new(
        url: &str,
        channel: &str,
        auth: NoticeAuth,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, BusError> {
        crate::tls::install_crypto_provider();
        let server = if is_sentinel_url(url) {
            Self::sentinels(url, ca_file)?
        } else {
            Server::Fixed(Arc::new(Self::fixed(url, ca_file)?))
        };
        Ok(RedisBus {
            server,
            channel: channel.to_owned(),
            auth,
            publisher: Mutex::new(None),
            replay: Mutex::new(None),
        })
    }

    /// The client of a `redis://` or `rediss://` URL.
    fn fixed(url: &str, ca_file: Option<&std::path::Path>) -> Result<redis::Client, BusError> {
        let client = match ca_file {
            Some(path) => {
                if !url.starts_with("rediss://") {
                    return Err(BusError(
                        "RECALL_REDIS_CA_FILE is set but RECALL_REDIS_URL is not rediss://".into(),
                    ));
                }
                let pem = std::fs::read(path).map_err(|e| {
                    BusError(format!("RECALL_REDIS_CA_FILE {}: {e}", path.display()))
                })?;
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            None => redis::Client::open(url),
        }
        .map_err(|e| BusError(format!("RECALL_REDIS_URL: {e}")))?;
        if !url.starts_with("rediss://") && !crate::tls::url_host_is_loopback(url) {
            tracing::warn!(
                "RECALL_REDIS_URL is plaintext to a non-loopback host; use rediss:// across a network"
            );
        }
        Ok(client)
    }

    /// The sentinels of a `redis+sentinel://` URL.
    fn sentinels(url: &str, ca_file: Option<&std::path::Path>) -> Result<Server, BusError> {
        let parsed =
            SentinelUrl::parse(url).map_err(|e| BusError(format!("RECALL_REDIS_URL: {e}")))?;
        if ca_file.is_some() {
            return Err(BusError(
                "RECALL_REDIS_CA_FILE is set but RECALL_REDIS_URL is redis+sentinel:// (no TLS)"
                    .into(),
            ));
        }
        if !parsed.all_loopback() {
            tracing::warn!(
                "RECALL_REDIS_URL is plaintext Sentinel to non-loopback hosts; keep it on a trusted network"
            );
        }
        Ok(Server::Sentinel(Arc::new(Sentinels::new(&parsed)?)))
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
            *guard = Some(self.server.connect().await?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(BusError("no connection".into()));
        };
        let payload = self.auth.seal(env);
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
        let server = self.server.clone();
        let channel = self.channel.clone();
        let auth = self.auth.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            // The first failure in a row is a warning; the retries are debug.
            let mut failing = false;
            loop {
                if out.is_closed() {
                    return;
                }
                match server.pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            backoff = Duration::from_millis(50);
                            failing = false;
                            // Subscribed first; the receiver now reads the log (G4).
                            if out.send(BusMessage::Connected).await.is_err() {
                                return;
                            }
                            let mut stream = pubsub.on_message();
                            while let Some(msg) = stream.next().await {
                                let msg = match auth.open(msg.get_payload_bytes()) {
                                    Ok(env) => BusMessage::Notice(Box::new(env)),
                                    Err(why) => BusMessage::Rejected(why),
                                };
                                if out.send(msg).await.is_err() {
                                    return;
                                }
                            }
                            tracing::warn!(channel = %channel, "redis subscription dropped");
                            if out.send(BusMessage::Disconnected).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "redis subscribe failed"),
                    },
                    Err(BusError(error)) => {
                        if failing {
                            tracing::debug!(%error, "redis connect failed");
                        } else {
                            tracing::warn!(%error, "redis connect failed; retrying with backoff");
                        }
                        failing = true;
                    }
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

    async fn first_use(&self, key: &str, ttl_ms: u64) -> Result<Option<bool>, BusError> {
        let mut conn = {
            let mut guard = self.replay.lock().await;
            match guard.as_ref() {
                Some(conn) => conn.clone(),
                None => {
                    let conn = self.server.connect().await?;
                    *guard = Some(conn.clone());
                    conn
                }
            }
        };
        // SET NX: only the first SET of a key answers OK.
        let result: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(format!("recall:dpop:{}:{key}", self.channel))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut conn)
            .await;
        match result {
            Ok(answer) => Ok(Some(answer.is_some())),
            Err(e) => {
                *self.replay.lock().await = None;
                Err(BusError(e.to_string()))
            }
        }
    }
}
