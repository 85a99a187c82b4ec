//! Shared Signals streams (SSF 1.0): receivers register streams with their
//! service credential and manage only their own; SETs are derived from the
//! log by each stream's cursor. This part serves stream management, status
//! and poll delivery (RFC 8936); push delivery comes with its lease.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use crate::events::Stamp;
use std::time::Duration;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::error::{Error, Missing};
use crate::ssf::{
    security_events, set_claims, Delivery, SecurityEvent, StreamConfig, POLL, PUSH, SET_TYP,
    SUPPORTED,
};
use crate::store::{ServiceRecord, StoreError, StreamRecord};

/// Log events scanned per poll at most (the rest waits for the next one).
const SCAN_EVENTS: i64 = 5000;
/// Longest a poll without `returnImmediately` waits for a SET.
pub const LONG_POLL: Duration = Duration::from_secs(10);

core_service!(
    /// The SSF streams.
    Signals
);

/// A poll's answer: SETs by jti, and whether more are waiting.
#[derive(Debug, Clone)]
pub struct PollAnswer {
    pub sets: Map<String, Value>,
    pub more_available: bool,
}

fn invalid(field: &'static str, rule: &'static str) -> Error {
    Error::invalid(field, rule)
}

fn not_found(e: StoreError) -> Error {
    match e {
        StoreError::NotFound => Error::NotFound(Missing::Stream),
        e => e.into(),
    }
}

/// `events_requested` as given, or everything when absent; only known URIs.
fn requested(value: Option<&Value>) -> Result<Vec<String>, Error> {
    let Some(list) = value else {
        return Ok(SUPPORTED.iter().map(|s| s.to_string()).collect());
    };
    let list = list
        .as_array()
        .ok_or_else(|| invalid("events_requested", "an array of event type URIs"))?;
    list.iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| invalid("events_requested", "an array of event type URIs"))
}

impl Signals {
    /// Transmitter configuration metadata (SSF 1.0 section 7.1).
    pub fn metadata(&self) -> Value {
        let base = &self.settings.public_url;
        json!({
            "spec_version": "1_0",
            "issuer": self.settings.issuer,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "delivery_methods_supported": [PUSH, POLL],
            "configuration_endpoint": format!("{base}/ssf/streams"),
            "status_endpoint": format!("{base}/ssf/status"),
            "verification_endpoint": format!("{base}/ssf/verify"),
            "authorization_schemes": [{ "spec_urn": "urn:ietf:rfc:6750" }],
            "default_subjects": "ALL",
        })
    }

    /// A stream's configuration from what the receiver wrote (`body`).
    fn config(
        &self,
        id: Uuid,
        body: &Map<String, Value>,
        owner: &ServiceRecord,
    ) -> Result<StreamConfig, Error> {
        let delivery = body.get("delivery").and_then(Value::as_object);
        let field = |name| delivery.and_then(|d| d.get(name));
        let delivery = match field("method").and_then(Value::as_str).unwrap_or(POLL) {
            POLL => Delivery::Poll {
                endpoint_url: format!("{}/ssf/poll/{id}", self.settings.public_url),
            },
            PUSH => Delivery::Push {
                endpoint_url: field("endpoint_url")
                    .and_then(Value::as_str)
                    .filter(|u| {
                        let rest = u
                            .strip_prefix("https://")
                            .or_else(|| u.strip_prefix("http://"));
                        rest.is_some_and(|r| !r.is_empty())
                            && !u.chars().any(char::is_whitespace)
                            && u.chars().count() <= 2048
                    })
                    .ok_or_else(|| {
                        invalid(
                            "delivery.endpoint_url",
                            "an http(s) URL for push, at most 2048 characters",
                        )
                    })?
                    .to_owned(),
                authorization_header: field("authorization_header")
                    .map(|h| {
                        h.as_str()
                            .filter(|h| h.chars().count() <= 4096)
                            .map(str::to_owned)
                            .ok_or_else(|| {
                                invalid("delivery.authorization_header", "at most 4096 characters")
                            })
                    })
                    .transpose()?,
            },
            _ => {
                return Err(invalid(
                    "delivery.method",
                    "urn:ietf:rfc:8935 or urn:ietf:rfc:8936",
                ))
            }
        };
        let wanted = requested(body.get("events_requested"))?;
        let events_delivered = SUPPORTED
            .iter()
            .filter(|s| wanted.iter().any(|w| w == *s))
            .map(|s| s.to_string())
            .collect();
        let aud = match body.get("aud") {
            Some(Value::String(a)) if !a.is_empty() && a.chars().count() <= 512 => a.clone(),
            None => format!("urn:recall:service:{}", owner.id),
            _ => return Err(invalid("aud", "1 to 512 characters")),
        };
        let description = match body.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) if d.chars().count() <= 1024 => Some(d.clone()),
            _ => return Err(invalid("description", "at most 1024 characters")),
        };
        Ok(StreamConfig {
            stream_id: id,
            iss: self.settings.issuer.clone(),
            aud,
            events_supported: SUPPORTED.iter().map(|s| s.to_string()).collect(),
            events_requested: wanted,
            events_delivered,
            delivery,
            description,
        })
    }

    /// Creates a stream for `owner`; it carries what happens from now on.
    pub async fn create(
        &self,
        owner: &ServiceRecord,
        body: &Map<String, Value>,
    ) -> Result<StreamRecord, Error> {
        let id = Uuid::now_v7();
        let config = self.config(id, body, owner)?;
        let now = Timestamp::now();
        let head = self.store.head().await?;
        let record = StreamRecord {
            id,
            service_id: owner.id,
            config,
            status: "enabled".into(),
            reason: None,
            cursor: (head, i64::MAX),
            created_at: now,
            updated_at: now,
        };
        self.store.create_stream(&record).await?;
        Ok(record)
    }

    /// Asks for a verification event on one of `owner`'s streams: it is
    /// appended to the log like any other, and delivered in order.
    pub async fn verify(
        &self,
        owner: &ServiceRecord,
        id: Uuid,
        state: Option<String>,
    ) -> Result<(), Error> {
        let stream = self.get(owner, id).await?;
        if state.as_ref().is_some_and(|s| s.chars().count() > 256) {
            return Err(invalid("state", "at most 256 characters"));
        }
        let event = crate::events::Event::StreamVerification {
            stream_id: stream.id,
            state,
        };
        let meta = crate::events::Meta {
            actor: Some(format!("service:{}", owner.id)),
            ip: None,
        };
        let envs = self
            .store
            .append_raw(vec![event], &Stamp::now(&meta))
            .await?;
        self.committed(&envs).await;
        Ok(())
    }

    /// Every stream (the admin view).
    pub async fn all(&self) -> Result<Vec<StreamRecord>, Error> {
        Ok(self.store.all_streams().await?)
    }

    /// `owner`'s streams.
    pub async fn list(&self, owner: &ServiceRecord) -> Result<Vec<StreamRecord>, Error> {
        Ok(self.store.streams_of(owner.id).await?)
    }

    /// One of `owner`'s streams.
    pub async fn get(&self, owner: &ServiceRecord, id: Uuid) -> Result<StreamRecord, Error> {
        self.store
            .stream_of(owner.id, id)
            .await?
            .ok_or(Error::NotFound(Missing::Stream))
    }

    /// Replaces (PUT) or updates (PATCH: given fields only) a stream's
    /// configuration; the id, issuer and cursor stay.
    pub async fn configure(
        &self,
        owner: &ServiceRecord,
        id: Uuid,
        body: &Map<String, Value>,
        replace: bool,
    ) -> Result<StreamRecord, Error> {
        let mut stream = self.get(owner, id).await?;
        let mut merged = if replace {
            Map::new()
        } else {
            match serde_json::to_value(&stream.config) {
                Ok(Value::Object(fields)) => fields,
                _ => Map::new(),
            }
        };
        for (k, v) in body {
            if k != "stream_id" {
                merged.insert(k.clone(), v.clone());
            }
        }
        stream.config = self.config(id, &merged, owner)?;
        stream.updated_at = Timestamp::now();
        self.store.update_stream(&stream).await.map_err(not_found)?;
        Ok(stream)
    }

    /// Deletes one of `owner`'s streams.
    pub async fn delete(&self, owner: &ServiceRecord, id: Uuid) -> Result<(), Error> {
        self.store
            .delete_stream(owner.id, id)
            .await
            .map_err(not_found)
    }

    /// Sets a stream's status. `paused` holds events for later; `disabled`
    /// drops them: enabling a disabled stream starts from now.
    pub async fn set_status(
        &self,
        owner: &ServiceRecord,
        id: Uuid,
        status: &str,
        reason: Option<String>,
    ) -> Result<StreamRecord, Error> {
        if !matches!(status, "enabled" | "paused" | "disabled") {
            return Err(invalid("status", "enabled, paused or disabled"));
        }
        if reason.as_ref().is_some_and(|r| r.chars().count() > 1024) {
            return Err(invalid("reason", "at most 1024 characters"));
        }
        let mut stream = self.get(owner, id).await?;
        if stream.status == "disabled" && status != "disabled" {
            stream.cursor = (self.store.head().await?, i64::MAX);
        }
        stream.status = status.to_owned();
        stream.reason = reason;
        stream.updated_at = Timestamp::now();
        self.store.update_stream(&stream).await.map_err(not_found)?;
        Ok(stream)
    }

    /// The security events this stream should carry after its cursor, in
    /// order, up to `max` (and whether more wait), scanning a bounded
    /// stretch of the log.
    pub(super) async fn pending_for(
        &self,
        stream: &StreamRecord,
        max: usize,
    ) -> Result<(Vec<SecurityEvent>, bool, i64), Error> {
        let wanted = &stream.config.events_delivered;
        let (cseq, cidx) = stream.cursor;
        // Events of the cursor's own seq may remain; read from just before it.
        let from = if cidx == i64::MAX { cseq } else { cseq - 1 };
        let events = self.store.read_after(from.max(0), SCAN_EVENTS).await?;
        let scanned_to = events.last().map_or(from, |e| e.seq);
        let mut out = Vec::new();
        for env in &events {
            for e in security_events(env) {
                let after = (e.seq, e.index as i64) > (cseq, cidx);
                // A verification event goes to its own stream only.
                let ours = e.stream.is_none_or(|s| s == stream.id);
                if after && ours && wanted.iter().any(|w| w == e.event_type) {
                    if out.len() == max {
                        return Ok((out, true, scanned_to));
                    }
                    out.push(e);
                }
            }
        }
        let more = events.len() as i64 == SCAN_EVENTS;
        Ok((out, more, scanned_to))
    }

    /// Sets a stream's lag gauges: events behind the head, and the age of
    /// its oldest waiting SET.
    pub(super) async fn record_lag(&self, stream: &StreamRecord, oldest: Option<&SecurityEvent>) {
        let label = crate::metrics::Metrics::stream(stream.id);
        let head = self.sync.state().last_seq();
        let behind = match oldest {
            Some(e) => head - e.seq + 1,
            None => 0,
        };
        self.metrics
            .ssf_lag_events
            .get_or_create(&label)
            .set(behind.max(0));
        let age = match oldest {
            Some(e) => match self.store.read_after(e.seq - 1, 1).await {
                Ok(envs) => envs
                    .first()
                    .map_or(0.0, |env| Timestamp::now().since(env.at).as_secs_f64()),
                Err(_) => 0.0,
            },
            None => 0.0,
        };
        self.metrics.ssf_lag_seconds.get_or_create(&label).set(age);
    }

    /// Signs the SET carrying `e` on `stream`.
    pub fn sign(
        &self,
        stream: &StreamRecord,
        e: &SecurityEvent,
    ) -> Result<(String, String), Error> {
        let aud = stream.config.aud.as_str();
        let claims = set_claims(
            e,
            &self.settings.issuer,
            aud,
            stream.id,
            Timestamp::now().unix_secs(),
        );
        let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
        let kid = self
            .sync
            .state()
            .active_kid()
            .map(str::to_owned)
            .ok_or(Error::Unavailable(crate::error::Unavailable::NoSigningKey))?;
        let token = self
            .sync
            .keyring()
            .sign_json(&kid, SET_TYP, &claims)
            .map_err(|e| Error::Internal(format!("SET signing failed: {e}")))?;
        Ok((jti, token))
    }

    /// RFC 8936 poll: acknowledge `acks` (the cursor moves past every SET
    /// acknowledged in order), then return up to `max` SETs. Without
    /// `return_immediately`, waits (up to `LONG_POLL`) for one to exist.
    pub async fn poll(
        &self,
        owner: &ServiceRecord,
        id: Uuid,
        acks: &[String],
        max: usize,
        return_immediately: bool,
    ) -> Result<PollAnswer, Error> {
        let mut stream = self.get(owner, id).await?;
        if !matches!(stream.config.delivery, Delivery::Poll { .. }) {
            return Err(invalid("delivery.method", "this stream is not polled"));
        }
        if !acks.is_empty() {
            let (pending, _, _) = self.pending_for(&stream, acks.len().max(1) * 4).await?;
            let mut cursor = stream.cursor;
            for e in &pending {
                let jti = crate::ssf::set::jti(stream.id, e.seq, e.index);
                if !acks.contains(&jti) {
                    break;
                }
                cursor = (e.seq, e.index as i64);
            }
            if cursor != stream.cursor {
                self.store
                    .advance_stream(stream.id, cursor, Timestamp::now())
                    .await?;
                stream.cursor = cursor;
            }
        }
        let deadline = tokio::time::Instant::now() + LONG_POLL;
        let mut wake = self.sync.applied();
        loop {
            if stream.status != "enabled" {
                return Ok(PollAnswer {
                    sets: Map::new(),
                    more_available: false,
                });
            }
            let (pending, more, scanned_to) = self.pending_for(&stream, max).await?;
            self.record_lag(&stream, pending.first()).await;
            if pending.is_empty() && !more && acks.is_empty() {
                // Nothing for this stream up to here: skip the cursor over it.
                if scanned_to > stream.cursor.0 {
                    self.store
                        .advance_stream(stream.id, (scanned_to, i64::MAX), Timestamp::now())
                        .await?;
                    stream.cursor = (scanned_to, i64::MAX);
                }
            }
            if !pending.is_empty() || return_immediately || max == 0 {
                let mut sets = Map::new();
                for e in &pending {
                    let (jti, token) = self.sign(&stream, e)?;
                    sets.insert(jti, Value::String(token));
                }
                return Ok(PollAnswer {
                    sets,
                    more_available: more,
                });
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(PollAnswer {
                    sets: Map::new(),
                    more_available: false,
                });
            }
            wait_for_signal(&mut wake, left).await;
        }
    }
}

/// Waits until this instance applies an event that means something to a
/// receiver (logins and refreshes do not), or `limit` passes: a busy log
/// of logins costs delivery nothing.
pub async fn wait_for_signal(
    wake: &mut tokio::sync::broadcast::Receiver<crate::events::Envelope>,
    limit: Duration,
) {
    use tokio::sync::broadcast::error::RecvError;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, wake.recv()).await {
            Ok(Ok(env)) if crate::ssf::security_events(&env).is_empty() => continue,
            // No more wake-ups (shutting down): just the tick, never a spin.
            Ok(Err(RecvError::Closed)) => {
                tokio::time::sleep_until(deadline).await;
                return;
            }
            // A signal, a lag (something may have been missed), or the tick.
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) | Err(_) => return,
        }
    }
}
