//! Emergency controls over HTTP (admin only), the audit log and its live
//! stream.
//!
//! May import: what `http` may (its top comment).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::body::{JsonBody, RawBody};
use super::errors::ApiError;
use super::extract::{path_id, resolve_admin, AdminCaller};
use super::reply::{no_content, ok, Reply};
use crate::clock::Timestamp;
use crate::events::Envelope;
use crate::service::{Reason, Recall};
use crate::store::EventFilter;

/// `?username=NAME`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// The username (compared lowercased).
    username: String,
}

/// An optional reason, kept in the audit log.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// At most 1000 characters.
    #[schema(max_length = 1000)]
    reason: Option<String>,
}

/// How long to lock, and why.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockBody {
    /// Default a day; at most ten years.
    #[schema(minimum = 1, maximum = 315_360_000)]
    #[serde(default, deserialize_with = "super::body::integer")]
    duration_secs: Option<i64>,
    /// At most 1000 characters.
    #[schema(max_length = 1000)]
    reason: Option<String>,
}

/// A signing key rotation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// Revoke the old key at once (every token it signed dies) instead of
    /// letting it verify until its tokens expire.
    compromised: bool,
    /// At most 1000 characters.
    #[schema(max_length = 1000)]
    reason: Option<String>,
}

/// `?after=&limit=&user_id=&type=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this sequence number (default 0).
    #[serde(default, deserialize_with = "super::body::integer")]
    after: Option<i64>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "super::body::integer")]
    limit: Option<i64>,
    /// Only this user's events.
    user_id: Option<Uuid>,
    /// Only events of this type, e.g. `session_revoked`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
}

/// A user as an admin sees it.
#[derive(Serialize, ToSchema)]
pub struct AdminUser {
    user_id: Uuid,
    username: String,
    roles: Vec<String>,
    /// Set while a lock is in force.
    #[schema(format = DateTime)]
    locked_until: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

/// Sessions ended by an admin.
#[derive(Serialize, ToSchema)]
pub struct RevokedSessions {
    revoked_sessions: usize,
    /// The event's sequence number in the log.
    seq: i64,
}

/// A lock in force.
#[derive(Serialize, ToSchema)]
pub struct Locked {
    #[schema(format = DateTime)]
    locked_until: String,
    /// How many live sessions the lock ended.
    revoked_sessions: usize,
    seq: i64,
}

/// The sequence number of the event an action appended.
#[derive(Serialize, ToSchema)]
pub struct Appended {
    seq: i64,
}

/// A rotation's outcome.
#[derive(Serialize, ToSchema)]
pub struct Rotated {
    /// The new active key.
    kid: String,
    previous_kid: Option<String>,
    seq: i64,
}

/// A signing key's state.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // a schema only
pub enum KeyState {
    Active,
    Verifying,
    Retired,
    Revoked,
}

/// One signing key (public facts only).
#[derive(Serialize, ToSchema)]
pub struct KeyItem {
    kid: String,
    alg: String,
    #[schema(value_type = KeyState)]
    status: &'static str,
    #[schema(format = DateTime)]
    created_at: String,
}

/// Every signing key, newest first.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    keys: Vec<KeyItem>,
}

/// One event of the log in its audit form.
#[derive(Serialize, ToSchema)]
pub struct AuditEvent {
    seq: i64,
    /// The event type, e.g. `session_revoked`.
    #[serde(rename = "type")]
    kind: &'static str,
    #[schema(format = DateTime)]
    at: String,
    actor: Option<String>,
    user_id: Option<Uuid>,
    session_id: Option<Uuid>,
    ip: Option<String>,
    /// The event's own fields.
    #[schema(value_type = Object)]
    data: Value,
}

/// A page of the audit log.
#[derive(Serialize, ToSchema)]
pub struct EventPage {
    events: Vec<AuditEvent>,
    /// Pass as `after` for the next page.
    next_after: i64,
}

fn reason(r: Option<String>) -> Result<Option<Reason>, ApiError> {
    Ok(Reason::parse(r)?)
}

/// Parses an optional JSON body: empty, or `null`, means all defaults.
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        return Ok(T::default());
    }
    super::body::parse_json(body)
}

#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", params(UserQuery),
    responses((status = 200, description = "The user", body = AdminUser)), security(("admin" = [])))]
/// `GET /v1/admin/users?username=NAME`
pub async fn find_user(admin: AdminCaller, q: web::Query<UserQuery>) -> Reply {
    let found = admin.recall.admin().user_named(&q.username).await?;
    let u = found.ok_or_else(|| ApiError::NotFound("no such user".into()))?;
    let now = Timestamp::now();
    ok(AdminUser {
        user_id: u.id,
        locked_until: u.locked_at(now).map(Timestamp::rfc3339),
        created_at: u.created_at.rfc3339(),
        username: u.username,
        roles: u.roles,
    })
}

#[utoipa::path(post, path = "/v1/admin/users/{user_id}/revoke-sessions", tag = "admin", params(("user_id" = Uuid, Path, description = "The user")),
    request_body = Option<ReasonBody>,
    responses((status = 200, description = "Every session of the user ended", body = RevokedSessions)), security(("admin" = [])))]
/// `POST /v1/admin/users/{user_id}/revoke-sessions`
pub async fn revoke_sessions(admin: AdminCaller, path: web::Path<String>, body: RawBody) -> Reply {
    let body: ReasonBody = optional_json(&body.0)?;
    let (user, why) = (path_id(&path, "user")?, reason(body.reason)?);
    let controls = admin.recall.admin();
    let (n, env) = controls
        .admin_revoke_sessions(user, why, &admin.meta)
        .await?;
    ok(RevokedSessions {
        revoked_sessions: n,
        seq: env.seq,
    })
}

#[utoipa::path(post, path = "/v1/admin/users/{user_id}/lock", tag = "admin", params(("user_id" = Uuid, Path, description = "The user")),
    request_body = Option<LockBody>,
    responses((status = 200, description = "Locked; every session ended", body = Locked)), security(("admin" = [])))]
/// `POST /v1/admin/users/{user_id}/lock`
pub async fn lock(admin: AdminCaller, path: web::Path<String>, body: RawBody) -> Reply {
    let body: LockBody = optional_json(&body.0)?;
    let (user, why) = (path_id(&path, "user")?, reason(body.reason)?);
    let controls = admin.recall.admin();
    let env = controls
        .lock_user(user, body.duration_secs, why, &admin.meta)
        .await?;
    let (until, revoked) = match &env.event {
        crate::events::Event::UserLocked {
            until,
            revoked_session_ids,
            ..
        } => (*until, revoked_session_ids.len()),
        _ => (Timestamp::EPOCH, 0),
    };
    ok(Locked {
        locked_until: until.rfc3339(),
        revoked_sessions: revoked,
        seq: env.seq,
    })
}

#[utoipa::path(post, path = "/v1/admin/users/{user_id}/unlock", tag = "admin", params(("user_id" = Uuid, Path, description = "The user")),
    responses((status = 200, description = "Unlocked", body = Appended)), security(("admin" = [])))]
/// `POST /v1/admin/users/{user_id}/unlock`
pub async fn unlock(admin: AdminCaller, path: web::Path<String>) -> Reply {
    let user = path_id(&path, "user")?;
    let env = admin.recall.admin().unlock_user(user, &admin.meta).await?;
    ok(Appended { seq: env.seq })
}

#[utoipa::path(get, path = "/v1/admin/users/{user_id}/sessions", tag = "admin", params(("user_id" = Uuid, Path, description = "The user")),
    responses((status = 200, description = "The user's live sessions", body = super::users::SessionList)), security(("admin" = [])))]
/// `GET /v1/admin/users/{user_id}/sessions`: a user's live sessions.
pub async fn user_sessions(admin: AdminCaller, path: web::Path<String>) -> Reply {
    let id = path_id(&path, "user")?;
    let controls = admin.recall.admin();
    if controls.user(id).await?.is_none() {
        return Err(ApiError::NotFound("no such user".into()));
    }
    let list = controls.user_sessions(id).await?;
    ok(super::users::session_list(&list, None))
}

#[utoipa::path(delete, path = "/v1/admin/sessions/{session_id}", tag = "admin",
    params(("session_id" = Uuid, Path, description = "Any session")),
    responses((status = 204, description = "Ended (or already ended)")), security(("admin" = [])))]
/// `DELETE /v1/admin/sessions/{session_id}`
pub async fn delete_session(admin: AdminCaller, path: web::Path<String>) -> Reply {
    let session = path_id(&path, "session")?;
    let controls = admin.recall.admin();
    controls
        .admin_revoke_session(session, None, &admin.meta)
        .await?;
    no_content()
}

#[utoipa::path(post, path = "/v1/admin/keys/rotate", tag = "admin", request_body = RotateBody,
    responses((status = 200, description = "A new active key", body = Rotated)), security(("admin" = [])))]
/// `POST /v1/admin/keys/rotate`
pub async fn rotate_key(admin: AdminCaller, body: JsonBody<RotateBody>) -> Reply {
    let body = body.0;
    let controls = admin.recall.admin();
    let env = controls
        .rotate_key(body.compromised, reason(body.reason)?, &admin.meta)
        .await?;
    match env.event {
        crate::events::Event::KeyRotated {
            kid, previous_kid, ..
        } => ok(Rotated {
            kid,
            previous_kid,
            seq: env.seq,
        }),
        _ => Err(ApiError::Internal("rotation returned another event".into())),
    }
}

#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin",
    responses((status = 200, description = "Every signing key", body = KeyList)), security(("admin" = [])))]
/// `GET /v1/admin/keys`
pub async fn keys(admin: AdminCaller) -> Reply {
    let list = admin.recall.admin().list_keys().await?;
    let keys = list
        .into_iter()
        .map(|k| KeyItem {
            status: k.status.as_str(),
            created_at: k.created_at.rfc3339(),
            kid: k.kid,
            alg: k.alg,
        })
        .collect();
    ok(KeyList { keys })
}

/// The audit form of an event.
pub fn audit_event(env: &Envelope) -> AuditEvent {
    let mut data = serde_json::to_value(&env.event).unwrap_or(Value::Null);
    if let Some(map) = data.as_object_mut() {
        map.remove("type");
    }
    AuditEvent {
        seq: env.seq,
        kind: env.event.kind(),
        at: env.at.rfc3339(),
        actor: env.actor.clone(),
        user_id: env.event.user_id(),
        session_id: env.event.session_id(),
        ip: env.ip.clone(),
        data,
    }
}

#[utoipa::path(get, path = "/v1/admin/events", tag = "admin", params(EventsQuery),
    responses((status = 200, description = "Events, oldest first", body = EventPage)), security(("admin" = [])))]
/// `GET /v1/admin/events?after=&limit=&user_id=&type=`
pub async fn events(admin: AdminCaller, q: web::Query<EventsQuery>) -> Reply {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidRequest("limit: 1 to 1000".into()));
    }
    let after = q.after.unwrap_or(0).max(0);
    let filter = EventFilter {
        after,
        limit,
        user_id: q.user_id,
        kind: q.kind.clone(),
    };
    let list = admin.recall.admin().list_events(&filter).await?;
    let next_after = list.last().map_or(after, |e| e.seq);
    let events = list.iter().map(audit_event).collect();
    ok(EventPage { events, next_after })
}

fn sse_frame(env: &Envelope) -> Bytes {
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        env.seq,
        env.event.kind(),
        serde_json::to_string(&audit_event(env)).unwrap_or_default()
    ))
}

/// How often a live stream re-checks its caller's rights.
const STREAM_RECHECK: Duration = Duration::from_secs(1);
/// A comment line at least this often keeps proxies from closing the stream.
const STREAM_KEEPALIVE: Duration = Duration::from_secs(15);

struct StreamState {
    rx: broadcast::Receiver<crate::events::Envelope>,
    recall: web::Data<Recall>,
    /// The caller's bearer when it is a user's access token: re-checked
    /// every second, so the stream ends when the token expires, is revoked,
    /// the user is locked or loses the admin role.
    bearer: Option<String>,
    expires_at: Option<Timestamp>,
    checked: tokio::time::Instant,
    last_frame: tokio::time::Instant,
    ended: bool,
}

#[utoipa::path(get, path = "/v1/admin/events/stream", tag = "admin",
    responses((status = 200, description = "Server-sent events: `id` is the sequence number, `event` the type, `data` the audit form; `event: end` when the caller's rights end",
        content_type = "text/event-stream", body = String)), security(("admin" = [])))]
/// `GET /v1/admin/events/stream`: live events as server-sent events.
pub async fn stream(admin: AdminCaller) -> HttpResponse {
    let now = tokio::time::Instant::now();
    let state = StreamState {
        rx: admin.recall.admin().live_events(),
        recall: admin.recall,
        bearer: admin.identity.bearer,
        expires_at: admin.identity.expires_at,
        checked: now,
        last_frame: now,
        ended: false,
    };
    let body = futures_util::stream::unfold(state, |mut st| async move {
        if st.ended {
            return None;
        }
        loop {
            // Expiry is a clock check; rights (revoked, locked, admin role)
            // are asked of the core once a second.
            let expired = st.expires_at.is_some_and(|exp| Timestamp::now() >= exp);
            let mut why = expired.then_some("token_expired");
            if why.is_none() && st.checked.elapsed() >= STREAM_RECHECK {
                st.checked = tokio::time::Instant::now();
                if let Some(token) = &st.bearer {
                    why = resolve_admin(&st.recall, token, None)
                        .await
                        .err()
                        .map(|e| e.code());
                }
            }
            if let Some(why) = why {
                st.ended = true;
                let text = format!("event: end\ndata: {why}\n\n");
                return Some((Ok::<_, actix_web::Error>(Bytes::from(text)), st));
            }
            // Wake at the next recheck or the token's expiry, whichever is first.
            let mut wait = STREAM_RECHECK.saturating_sub(st.checked.elapsed());
            if let Some(exp) = st.expires_at {
                wait = wait.min(exp.since(Timestamp::now()));
            }
            let frame = match tokio::time::timeout(wait, st.rx.recv()).await {
                Ok(Ok(env)) => sse_frame(&env),
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                    Bytes::from(format!(": {n} events skipped; read /v1/admin/events\n\n"))
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                Err(_) if st.last_frame.elapsed() >= STREAM_KEEPALIVE => {
                    Bytes::from_static(b": keep-alive\n\n")
                }
                Err(_) => continue,
            };
            st.last_frame = tokio::time::Instant::now();
            return Some((Ok::<_, actix_web::Error>(frame), st));
        }
    });
    let hello =
        futures_util::stream::once(async { Ok(Bytes::from_static(b": recall events\n\n")) });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::StreamExt::chain(hello, body))
}
