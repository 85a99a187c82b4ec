//! Shared Signals over HTTP (SSF 1.0): transmitter metadata, stream
//! management and status for receivers (a service credential each, seeing
//! only its own streams), poll delivery (RFC 8936), and the admin view.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::IntoParams;
use uuid::Uuid;

use super::body::{parse_json, RawBody};
use super::errors::ApiError;
use super::extract::{bearer, Admin};
use crate::clock::rfc3339;
use crate::service::{FeedCaller, Recall};
use crate::store::{ServiceRecord, StreamRecord};

/// `?stream_id=`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// The stream; absent on GET /ssf/streams: every stream of the caller.
    stream_id: Option<Uuid>,
}

impl StreamQuery {
    /// The stream named, which this route requires.
    fn required(&self) -> Result<Uuid, ApiError> {
        self.stream_id
            .ok_or_else(|| ApiError::InvalidRequest("stream_id: a stream id is required".into()))
    }
}

/// The receiver: a live service credential (admins manage streams through
/// their services, not directly).
async fn receiver(recall: &Recall, req: &HttpRequest) -> Result<ServiceRecord, ApiError> {
    match recall.feed().authorize(bearer(req)?).await? {
        FeedCaller::Service(s) => Ok(s),
        FeedCaller::Admin(_) => Err(ApiError::Forbidden(
            "streams belong to receivers: use a service credential".into(),
        )),
    }
}

/// The receiver, its JSON object body, and the `stream_id` in it.
async fn receiver_and_stream(
    recall: &Recall,
    req: &HttpRequest,
    body: &[u8],
) -> Result<(ServiceRecord, Map<String, Value>, Uuid), ApiError> {
    let owner = receiver(recall, req).await?;
    let body = object(body)?;
    let id = stream_id(&body)?;
    Ok((owner, body, id))
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match parse_json::<Value>(body)? {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::InvalidRequest("a JSON object is expected".into())),
    }
}

fn stream_id(body: &Map<String, Value>) -> Result<Uuid, ApiError> {
    body.get("stream_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| ApiError::InvalidRequest("stream_id: a stream id is required".into()))
}

/// A stream's configuration as its receiver reads it (never the push
/// authorization header it gave us).
fn view(s: &StreamRecord) -> Value {
    let mut config = s.config.clone();
    if let Some(d) = config.get_mut("delivery").and_then(Value::as_object_mut) {
        d.remove("authorization_header");
    }
    config
}

fn status_view(s: &StreamRecord) -> Value {
    json!({ "stream_id": s.id.to_string(), "status": s.status, "reason": s.reason })
}

/// `GET /.well-known/ssf-configuration`
#[utoipa::path(get, path = "/.well-known/ssf-configuration", tag = "ssf",
    responses((status = 200, description = "SSF 1.0 transmitter configuration metadata", body = Object)))]
pub async fn metadata(recall: web::Data<Recall>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(recall.signals().metadata())
}

/// `POST /ssf/streams`
#[utoipa::path(post, path = "/ssf/streams", tag = "ssf", request_body = Object,
    responses((status = 201, description = "The stream's configuration", body = Object)),
    security(("service" = [])))]
pub async fn create(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let owner = receiver(&recall, &req).await?;
    let stream = recall.signals().create(&owner, &object(&body.0)?).await?;
    Ok(HttpResponse::Created().json(view(&stream)))
}

/// `GET /ssf/streams?stream_id=`
#[utoipa::path(get, path = "/ssf/streams", tag = "ssf", params(StreamQuery),
    responses((status = 200, description = "One stream, or every stream of the caller", body = Object)),
    security(("service" = [])))]
pub async fn read(
    req: HttpRequest,
    recall: web::Data<Recall>,
    q: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let owner = receiver(&recall, &req).await?;
    let body = match q.stream_id {
        Some(id) => view(&recall.signals().get(&owner, id).await?),
        None => Value::Array(
            recall
                .signals()
                .list(&owner)
                .await?
                .iter()
                .map(view)
                .collect(),
        ),
    };
    Ok(HttpResponse::Ok().json(body))
}

async fn configure(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: RawBody,
    replace: bool,
) -> Result<HttpResponse, ApiError> {
    let (owner, body, id) = receiver_and_stream(&recall, &req, &body.0).await?;
    let stream = recall
        .signals()
        .configure(&owner, id, &body, replace)
        .await?;
    Ok(HttpResponse::Ok().json(view(&stream)))
}

/// `PATCH /ssf/streams`
#[utoipa::path(patch, path = "/ssf/streams", tag = "ssf", request_body = Object,
    responses((status = 200, description = "Updated: the fields given change", body = Object)),
    security(("service" = [])))]
pub async fn update(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    configure(req, recall, body, false).await
}

/// `PUT /ssf/streams`
#[utoipa::path(put, path = "/ssf/streams", tag = "ssf", request_body = Object,
    responses((status = 200, description = "Replaced: fields not given take their defaults", body = Object)),
    security(("service" = [])))]
pub async fn replace(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    configure(req, recall, body, true).await
}

/// `DELETE /ssf/streams?stream_id=`
#[utoipa::path(delete, path = "/ssf/streams", tag = "ssf", params(StreamQuery),
    responses((status = 204, description = "Deleted")), security(("service" = [])))]
pub async fn delete(
    req: HttpRequest,
    recall: web::Data<Recall>,
    q: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let owner = receiver(&recall, &req).await?;
    let id = q.required()?;
    recall.signals().delete(&owner, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /ssf/status?stream_id=`
#[utoipa::path(get, path = "/ssf/status", tag = "ssf", params(StreamQuery),
    responses((status = 200, description = "{stream_id, status, reason}", body = Object)),
    security(("service" = [])))]
pub async fn status(
    req: HttpRequest,
    recall: web::Data<Recall>,
    q: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let owner = receiver(&recall, &req).await?;
    let id = q.required()?;
    Ok(HttpResponse::Ok().json(status_view(&recall.signals().get(&owner, id).await?)))
}

/// `POST /ssf/status`
#[utoipa::path(post, path = "/ssf/status", tag = "ssf", request_body = Object,
    responses((status = 200, description = "{stream_id, status, reason}", body = Object)),
    security(("service" = [])))]
pub async fn set_status(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let (owner, body, id) = receiver_and_stream(&recall, &req, &body.0).await?;
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::InvalidRequest("status: enabled, paused or disabled".into()))?;
    let reason = body
        .get("reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let stream = recall
        .signals()
        .set_status(&owner, id, status, reason)
        .await?;
    Ok(HttpResponse::Ok().json(status_view(&stream)))
}

/// `POST /ssf/verify`
#[utoipa::path(post, path = "/ssf/verify", tag = "ssf", request_body = Object,
    responses((status = 204, description = "A verification event is on its way through the stream")),
    security(("service" = [])))]
pub async fn verify(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let (owner, body, id) = receiver_and_stream(&recall, &req, &body.0).await?;
    let state = match body.get("state") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::InvalidRequest("state: a string".into())),
    };
    recall.signals().verify(&owner, id, state).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /ssf/poll/{stream_id}` (RFC 8936)
#[utoipa::path(post, path = "/ssf/poll/{stream_id}", tag = "ssf", request_body = Object,
    params(("stream_id" = Uuid, Path, description = "A polled stream of the caller")),
    responses((status = 200, description = "{sets: {jti: SET}, moreAvailable}", body = Object)),
    security(("service" = [])))]
pub async fn poll(
    req: HttpRequest,
    recall: web::Data<Recall>,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let owner = receiver(&recall, &req).await?;
    let id = Uuid::parse_str(&path).map_err(|_| ApiError::NotFound("no such stream".into()))?;
    let body = if body.0.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        object(&body.0)?
    };
    let acks: Vec<String> = match body.get("ack") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::InvalidRequest("ack: an array of jti strings".into()))?,
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "ack: an array of jti strings".into(),
            ))
        }
    };
    let max = match body.get("maxEvents") {
        None => 100,
        Some(v) => v
            .as_u64()
            .filter(|n| *n <= 1000)
            .ok_or_else(|| ApiError::InvalidRequest("maxEvents: 0 to 1000".into()))?
            as usize,
    };
    let immediately = match body.get("returnImmediately") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| ApiError::InvalidRequest("returnImmediately: a boolean".into()))?,
    };
    let answer = recall
        .signals()
        .poll(&owner, id, &acks, max, immediately)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "sets": answer.sets, "moreAvailable": answer.more_available })))
}

/// `GET /v1/admin/ssf/streams`
#[utoipa::path(get, path = "/v1/admin/ssf/streams", tag = "admin",
    responses((status = 200, description = "Every stream: receiver, status, cursor", body = Object)),
    security(("admin" = [])))]
pub async fn admin_streams(
    recall: web::Data<Recall>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let streams: Vec<Value> = recall
        .signals()
        .all()
        .await?
        .iter()
        .map(|s| {
            json!({
                "stream_id": s.id.to_string(),
                "service_id": s.service_id.to_string(),
                "aud": s.config["aud"],
                "method": s.config["delivery"]["method"],
                "status": s.status,
                "reason": s.reason,
                "cursor_seq": s.cursor.0,
                "created_at": rfc3339(s.created_at),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "streams": streams })))
}
