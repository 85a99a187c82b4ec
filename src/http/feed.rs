//! The revocation feed over HTTP (`/v1/revocations`, its SSE stream) and
//! the admin routes for service credentials (`/v1/admin/services`).
//!
//! May import: what `http` may (its top comment).

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::body::JsonBody;
use super::errors::ApiError;
use super::extract::{bearer, path_id, AdminCaller};
use super::reply::{no_content, no_store, ok, Reply};
use crate::clock::Timestamp;
use crate::service::feed::MAX_PAGE;
use crate::service::{FeedCaller, Recall};
use crate::state::Revocation;
use crate::store::ServiceRecord;

/// How often the stream says where the log's head is (and re-checks the
/// caller's rights): a verifier's staleness clock runs on these.
pub const HEAD_EVERY: Duration = Duration::from_millis(500);

/// `?after=&limit=`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Items of events after this seq; 0 (the default) gives the revocation
    /// window instead.
    #[serde(default, deserialize_with = "super::body::integer")]
    after: Option<i64>,
    /// Events per page, 1 to 1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "super::body::integer")]
    limit: Option<i64>,
}

/// The kinds of revocation item.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // a schema only: the type is recall_verifier::Revocation
pub enum RevocationKind {
    SessionRevoked,
    UserCutoff,
    UserLocked,
    UserUnlocked,
    KeyStatus,
}

/// One revocation item (ids only). Times are Unix milliseconds.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: the type is recall_verifier::Revocation
pub struct RevocationItem {
    /// The log event it comes from; 0 for standing state in a window.
    seq: i64,
    at: i64,
    kind: RevocationKind,
    sid: Option<Uuid>,
    sub: Option<Uuid>,
    /// A lock's end, or a verifying key's retirement.
    until: Option<i64>,
    /// A cut-off: the user's tokens issued before it are dead.
    before: Option<i64>,
    kid: Option<String>,
    #[schema(value_type = Option<super::admin::KeyState>)]
    status: Option<String>,
}

/// A page of the feed.
#[derive(Serialize, ToSchema)]
pub struct RevocationPage {
    #[schema(value_type = Vec<RevocationItem>)]
    items: Vec<Revocation>,
    /// The log's head when the page was read.
    head_seq: i64,
    /// Pass as `after` for the next page; equal to `head_seq` when caught up.
    next_after: i64,
    /// How long a revocation can still reject a token (ms).
    retention_ms: i64,
    /// The key of network-bound tokens' digests (base64url, 32 bytes):
    /// with it a verifier checks a token's `net` claim against the
    /// client address. Only for authenticated callers; it reveals no
    /// address by itself, but lets its holder test guesses.
    binding_key: String,
}

/// A new service credential's name.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceBody {
    /// 1 to 100 characters, e.g. `orders-api`.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    name: String,
}

/// A service credential (never its token, except once at creation).
#[derive(Serialize, ToSchema)]
pub struct ServiceItem {
    service_id: Uuid,
    name: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
    /// Only in the answer to its creation: store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

/// Every service credential.
#[derive(Serialize, ToSchema)]
pub struct ServiceList {
    services: Vec<ServiceItem>,
}

fn service_item(s: ServiceRecord, token: Option<String>) -> ServiceItem {
    ServiceItem {
        service_id: s.id,
        name: s.name,
        created_at: s.created_at.rfc3339(),
        revoked_at: s.revoked_at.map(Timestamp::rfc3339),
        token,
    }
}

async fn caller(recall: &Recall, req: &HttpRequest) -> Result<FeedCaller, ApiError> {
    let token = bearer(req)?;
    Ok(recall.feed().authorize(token).await?)
}

/// `GET /v1/revocations`
#[utoipa::path(get, path = "/v1/revocations", tag = "feed", params(FeedQuery),
    responses((status = 200, description = "Items after the cursor, or the revocation window", body = RevocationPage)),
    security(("service" = []), ("admin" = [])))]
pub async fn page(req: HttpRequest, recall: web::Data<Recall>, q: web::Query<FeedQuery>) -> Reply {
    caller(&recall, &req).await?;
    let limit = q.limit.unwrap_or(MAX_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidRequest("limit: 1 to 1000".into()));
    }
    let page = recall.feed().page(q.after.unwrap_or(0), limit).await?;
    Ok(no_store(RevocationPage {
        items: page.items,
        head_seq: page.head_seq,
        next_after: page.next_after,
        retention_ms: page.retention_ms,
        binding_key: recall.binding_key_b64().to_owned(),
    }))
}

struct Follow {
    recall: web::Data<Recall>,
    token: String,
    cursor: i64,
    wake: broadcast::Receiver<crate::events::Envelope>,
    checked: tokio::time::Instant,
    pending: std::collections::VecDeque<Bytes>,
    ended: bool,
}

fn frame(event: &str, id: Option<i64>, data: &str) -> Bytes {
    let id = id.map(|i| format!("id: {i}\n")).unwrap_or_default();
    Bytes::from(format!("{id}event: {event}\ndata: {data}\n\n"))
}

impl Follow {
    /// Reads everything up to the head into frames, then a `head` frame.
    async fn read(&mut self) -> Result<(), ApiError> {
        let feed = self.recall.feed();
        let head = feed.head().await?;
        while self.cursor < head {
            let events = feed.events_after(self.cursor, MAX_PAGE).await?;
            if events.is_empty() {
                break;
            }
            for (seq, items) in events {
                if seq > head {
                    break;
                }
                if !items.is_empty() {
                    let data = serde_json::to_string(&items).unwrap_or_else(|_| "[]".into());
                    self.pending
                        .push_back(frame("revocations", Some(seq), &data));
                }
                self.cursor = seq;
            }
        }
        self.cursor = self.cursor.max(head);
        let data = format!("{{\"head_seq\":{}}}", self.cursor);
        self.pending
            .push_back(frame("head", Some(self.cursor), &data));
        Ok(())
    }
}

/// `GET /v1/revocations/stream`
#[utoipa::path(get, path = "/v1/revocations/stream", tag = "feed",
    params(("Last-Event-ID" = Option<i64>, Header, description = "Resume after this seq"),
        ("after" = Option<i64>, Query, description = "Resume after this seq (when no Last-Event-ID)")),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "`event: revocations` (id = seq, data = the event's items), `event: head` (id and data.head_seq = the head, at least every second), `event: window` (data = the window's items, when starting from 0), `event: end` when the caller's rights end")),
    security(("service" = []), ("admin" = [])))]
pub async fn stream(req: HttpRequest, recall: web::Data<Recall>) -> Reply {
    caller(&recall, &req).await?;
    let token = bearer(&req)?.to_owned();
    let from_header = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let from_query = web::Query::<FeedQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.after);
    let mut follow = Follow {
        wake: recall.feed().wake(),
        recall: recall.clone(),
        token,
        cursor: from_header.or(from_query).unwrap_or(0).max(0),
        checked: tokio::time::Instant::now(),
        pending: Default::default(),
        ended: false,
    };
    if follow.cursor == 0 {
        // A fresh consumer: the window first, then everything after it.
        let page = recall.feed().page(0, MAX_PAGE).await?;
        let data = serde_json::to_string(&page.items).unwrap_or_else(|_| "[]".into());
        follow.pending.push_back(frame("window", None, &data));
        follow.cursor = page.head_seq;
    }
    follow.read().await?;
    let body = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(frame) = f.pending.pop_front() {
                return Some((Ok::<_, actix_web::Error>(frame), f));
            }
            if f.ended {
                return None;
            }
            // Wait for something to apply here, or the next heartbeat.
            let _ = tokio::time::timeout(HEAD_EVERY, f.wake.recv()).await;
            if f.checked.elapsed() >= Duration::from_secs(1) {
                f.checked = tokio::time::Instant::now();
                if let Err(e) = f.recall.feed().authorize(&f.token).await {
                    f.ended = true;
                    let why = ApiError::from(e).code();
                    f.pending.push_back(frame("end", None, why));
                    continue;
                }
            }
            if let Err(e) = f.read().await {
                // The log is out of reach: end, so the verifier fails over.
                f.ended = true;
                f.pending.push_back(frame("end", None, e.code()));
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// `POST /v1/admin/services`
#[utoipa::path(post, path = "/v1/admin/services", tag = "admin", request_body = ServiceBody,
    responses((status = 201, description = "Created; the token is shown this once", body = ServiceItem)),
    security(("admin" = [])))]
pub async fn create_service(admin: AdminCaller, body: JsonBody<ServiceBody>) -> Reply {
    let feed = admin.recall.feed();
    let (record, token) = feed.create_service(&body.0.name, &admin.meta).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(service_item(record, Some(token))))
}

/// `GET /v1/admin/services`
#[utoipa::path(get, path = "/v1/admin/services", tag = "admin",
    responses((status = 200, description = "Every service credential", body = ServiceList)),
    security(("admin" = [])))]
pub async fn services(admin: AdminCaller) -> Reply {
    let list = admin.recall.feed().services().await?;
    let services = list.into_iter().map(|s| service_item(s, None)).collect();
    ok(ServiceList { services })
}

/// `DELETE /v1/admin/services/{service_id}`
#[utoipa::path(delete, path = "/v1/admin/services/{service_id}", tag = "admin",
    params(("service_id" = Uuid, Path, description = "The service credential")),
    responses((status = 204, description = "Ended everywhere (or already ended)")),
    security(("admin" = [])))]
pub async fn revoke_service(admin: AdminCaller, path: web::Path<String>) -> Reply {
    let feed = admin.recall.feed();
    feed.revoke_service(path_id(&path, "service")?, &admin.meta)
        .await?;
    no_content()
}
