//! Shared Signals over HTTP (SSF 1.0): transmitter metadata, stream
//! management and status for receivers (a service credential each, seeing
//! only its own streams), poll delivery (RFC 8936), and the admin view.
//!
//! May import: what `http` may (its top comment).

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};

use super::body::{parse_json, JsonBody, RawBody};
use super::errors::{ApiError, ErrorBody};
use super::extract::{bearer, path_id, recall, AdminCaller, Extracting};
use super::reply::{created, no_content, no_store, ok, Reply};
use super::ssf_types::{
    AdminStream, AdminStreams, PollInput, PollView, StatusInput, StatusView, StreamConfigView,
    StreamIdQuery, StreamInput, StreamQuery, StreamUpdate, TransmitterMetadata, VerifyInput,
};
use crate::service::{FeedCaller, Recall, Signals};
use crate::store::{ServiceRecord, StreamRecord};

/// The receiver: a live service credential (admins manage streams through
/// their services, not directly), and the service it called.
pub struct Receiver {
    pub recall: web::Data<Recall>,
    pub owner: ServiceRecord,
}

impl Receiver {
    /// The receiver of a request, by its bearer token.
    async fn of(req: &HttpRequest) -> Result<Receiver, ApiError> {
        let recall = recall(req)?;
        match recall.feed().authorize(bearer(req)?).await? {
            FeedCaller::Service(owner) => Ok(Receiver { recall, owner }),
            FeedCaller::Admin(_) => Err(ApiError::Forbidden(
                "streams belong to receivers: use a service credential".into(),
            )),
        }
    }

    /// The streams of the service.
    fn signals(&self) -> &Signals {
        self.recall.signals()
    }
}

/// A receiver's request: the receiver, and `T` (its body, query or path).
/// `T` comes first: a request it does not fit is refused before its
/// credential is looked at.
pub struct Receiving<T>(pub Receiver, pub T);

impl<T: FromRequest + 'static> FromRequest for Receiving<T> {
    type Error = actix_web::Error;
    type Future = Extracting<Self, actix_web::Error>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let input = T::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let input = input.await.map_err(Into::into)?;
            Ok(Receiving(Receiver::of(&req).await?, input))
        })
    }
}

fn status_view(s: &StreamRecord) -> StatusView {
    StatusView {
        stream_id: s.id,
        status: s.status.clone(),
        reason: s.reason.clone(),
    }
}

/// `GET /.well-known/ssf-configuration`
#[utoipa::path(get, path = "/.well-known/ssf-configuration", tag = "ssf",
    responses((status = 200, description = "SSF 1.0 transmitter configuration metadata", body = TransmitterMetadata)))]
pub async fn metadata(recall: web::Data<Recall>) -> Reply {
    let metadata = TransmitterMetadata::from_value(recall.signals().metadata())?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(metadata))
}

/// `POST /ssf/streams`
#[utoipa::path(post, path = "/ssf/streams", tag = "ssf", request_body = StreamInput,
    responses((status = 201, description = "The stream's configuration", body = StreamConfigView)),
    security(("service" = [])))]
pub async fn create(Receiving(rx, body): Receiving<JsonBody<StreamInput>>) -> Reply {
    let stream = rx.signals().create(&rx.owner, &body.0.fields()?).await?;
    created(StreamConfigView::from_stored(&stream.config))
}

/// One stream's configuration, or every stream's.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StreamsAnswer {
    One(StreamConfigView),
    All(Vec<StreamConfigView>),
}

/// `GET /ssf/streams?stream_id=`
#[utoipa::path(get, path = "/ssf/streams", tag = "ssf", params(StreamQuery),
    responses((status = 200, description = "One stream (with stream_id), or every stream of the caller", body = StreamsAnswer),
        (status = 404, description = "No such stream of the caller", body = ErrorBody)),
    security(("service" = [])))]
pub async fn read(Receiving(rx, q): Receiving<web::Query<StreamQuery>>) -> Reply {
    let answer = match q.stream_id {
        Some(id) => StreamsAnswer::One(StreamConfigView::from_stored(
            &rx.signals().get(&rx.owner, id).await?.config,
        )),
        None => StreamsAnswer::All(
            rx.signals()
                .list(&rx.owner)
                .await?
                .iter()
                .map(|s| StreamConfigView::from_stored(&s.config))
                .collect(),
        ),
    };
    ok(answer)
}

async fn configure(rx: Receiver, body: StreamUpdate, replace: bool) -> Reply {
    let stream = rx
        .signals()
        .configure(&rx.owner, body.stream_id, &body.config.fields()?, replace)
        .await?;
    ok(StreamConfigView::from_stored(&stream.config))
}

/// `PATCH /ssf/streams`
#[utoipa::path(patch, path = "/ssf/streams", tag = "ssf", request_body = StreamUpdate,
    responses((status = 200, description = "Updated: the fields given change", body = StreamConfigView),
        (status = 404, description = "No such stream of the caller", body = ErrorBody)),
    security(("service" = [])))]
pub async fn update(Receiving(rx, body): Receiving<JsonBody<StreamUpdate>>) -> Reply {
    configure(rx, body.0, false).await
}

/// `PUT /ssf/streams`
#[utoipa::path(put, path = "/ssf/streams", tag = "ssf", request_body = StreamUpdate,
    responses((status = 200, description = "Replaced: fields not given take their defaults", body = StreamConfigView),
        (status = 404, description = "No such stream of the caller", body = ErrorBody)),
    security(("service" = [])))]
pub async fn replace(Receiving(rx, body): Receiving<JsonBody<StreamUpdate>>) -> Reply {
    configure(rx, body.0, true).await
}

/// `DELETE /ssf/streams?stream_id=`
#[utoipa::path(delete, path = "/ssf/streams", tag = "ssf", params(StreamIdQuery),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such stream of the caller", body = ErrorBody)),
    security(("service" = [])))]
pub async fn delete(Receiving(rx, q): Receiving<web::Query<StreamIdQuery>>) -> Reply {
    rx.signals().delete(&rx.owner, q.stream_id).await?;
    no_content()
}

/// `GET /ssf/status?stream_id=`
#[utoipa::path(get, path = "/ssf/status", tag = "ssf", params(StreamIdQuery),
    responses((status = 200, description = "The stream's status", body = StatusView),
        (status = 404, description = "No such stream of the caller", body = ErrorBody)),
    security(("service" = [])))]
pub async fn status(Receiving(rx, q): Receiving<web::Query<StreamIdQuery>>) -> Reply {
    let stream = rx.signals().get(&rx.owner, q.stream_id).await?;
    ok(status_view(&stream))
}

/// `POST /ssf/status`
#[utoipa::path(post, path = "/ssf/status", tag = "ssf", request_body = StatusInput,
    responses((status = 200, description = "The stream's new status", body = StatusView),
        (status = 404, description = "No such stream of the caller", body = ErrorBody)),
    security(("service" = [])))]
pub async fn set_status(Receiving(rx, body): Receiving<JsonBody<StatusInput>>) -> Reply {
    let StatusInput {
        stream_id,
        status,
        reason,
    } = body.0;
    let stream = rx
        .signals()
        .set_status(&rx.owner, stream_id, status.as_str(), reason)
        .await?;
    ok(status_view(&stream))
}

/// `POST /ssf/verify`
#[utoipa::path(post, path = "/ssf/verify", tag = "ssf", request_body = VerifyInput,
    responses((status = 204, description = "A verification event is on its way through the stream"),
        (status = 404, description = "No such stream of the caller", body = ErrorBody)),
    security(("service" = [])))]
pub async fn verify(Receiving(rx, body): Receiving<JsonBody<VerifyInput>>) -> Reply {
    let VerifyInput { stream_id, state } = body.0;
    rx.signals().verify(&rx.owner, stream_id, state).await?;
    no_content()
}

/// `POST /ssf/poll/{stream_id}` (RFC 8936)
#[utoipa::path(post, path = "/ssf/poll/{stream_id}", tag = "ssf", request_body = PollInput,
    params(("stream_id" = Uuid, Path, description = "A polled stream of the caller")),
    responses((status = 200, description = "SETs by jti, and whether more wait", body = PollView),
        (status = 404, description = "No such stream of the caller", body = ErrorBody)),
    security(("service" = [])))]
pub async fn poll(Receiving(rx, (path, body)): Receiving<(web::Path<String>, RawBody)>) -> Reply {
    let id = path_id(&path, "stream")?;
    let input = if body.0.iter().all(u8::is_ascii_whitespace) {
        PollInput::default()
    } else {
        parse_json::<PollInput>(&body.0)?
    };
    let max = input.max()?;
    if !input.set_errs.is_empty() {
        let refused: Vec<(&String, &String)> = input
            .set_errs
            .iter()
            .map(|(jti, e)| (jti, &e.err))
            .collect();
        tracing::warn!(stream = %id, ?refused, "the receiver refused SETs");
    }
    // A SET refused by the receiver was delivered all the same: it moves
    // the cursor like an acknowledgement.
    let mut acks = input.ack;
    acks.extend(input.set_errs.into_keys());
    let answer = rx
        .signals()
        .poll(
            &rx.owner,
            id,
            &acks,
            max,
            input.return_immediately.unwrap_or(false),
        )
        .await?;
    let sets = answer
        .sets
        .into_iter()
        .filter_map(|(jti, set)| set.as_str().map(|s| (jti, s.to_owned())))
        .collect();
    Ok(no_store(PollView {
        sets,
        more_available: answer.more_available,
    }))
}

/// `GET /v1/admin/ssf/streams`
#[utoipa::path(get, path = "/v1/admin/ssf/streams", tag = "admin",
    responses((status = 200, description = "Every stream: receiver, status, cursor", body = AdminStreams)),
    security(("admin" = [])))]
pub async fn admin_streams(admin: AdminCaller) -> Reply {
    let all = admin.recall.signals().all().await?;
    let streams = all
        .iter()
        .map(|s| AdminStream {
            stream_id: s.id,
            service_id: s.service_id,
            aud: s.config.aud.clone(),
            method: s.config.delivery.method().to_owned(),
            status: s.status.clone(),
            reason: s.reason.clone(),
            cursor_seq: s.cursor.0,
            created_at: s.created_at.rfc3339(),
        })
        .collect();
    ok(AdminStreams { streams })
}
