//! HTTP: routes, body limits and the JSON error format of API.md.

pub mod admin;
pub mod body;
pub mod errors;
pub mod extract;
pub mod openapi;
pub mod ops;
pub mod users;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::error::QueryPayloadError;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, HttpResponse, Resource};

use crate::error::ApiError;
use crate::service::Recall;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// RFC 3339 UTC for a millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::InvalidRequest(format!("invalid query: {err}")).into()
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}

/// Counts the request against its client address's rate limit before
/// anything else runs (body parsing included); 429 past it (G10).
async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(recall) = req.app_data::<web::Data<Recall>>() {
        recall.rate_limit(extract::client_addr(req.request()))?;
    }
    next.call(req).await
}

/// A resource whose requests are rate limited per client address.
fn limited(
    path: &str,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::resource(path).wrap(from_fn(rate_limit))
}

/// Every route of API.md.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .service(limited("/v1/users").route(web::post().to(users::register)))
        .service(limited("/v1/auth/login").route(web::post().to(users::login)))
        .service(limited("/v1/auth/refresh").route(web::post().to(users::refresh)))
        .route("/v1/auth/logout", web::post().to(users::logout))
        .route("/v1/auth/logout-all", web::post().to(users::logout_all))
        .route("/v1/auth/password", web::post().to(users::password))
        .route("/v1/auth/verify", web::get().to(users::verify))
        .route("/v1/me", web::get().to(users::me))
        .route("/v1/sessions", web::get().to(users::sessions))
        .route(
            "/v1/sessions/{session_id}",
            web::delete().to(users::delete_session),
        )
        .route("/v1/admin/users", web::get().to(admin::find_user))
        .route(
            "/v1/admin/users/{user_id}/revoke-sessions",
            web::post().to(admin::revoke_sessions),
        )
        .route(
            "/v1/admin/users/{user_id}/lock",
            web::post().to(admin::lock),
        )
        .route(
            "/v1/admin/users/{user_id}/unlock",
            web::post().to(admin::unlock),
        )
        .route(
            "/v1/admin/sessions/{session_id}",
            web::delete().to(admin::delete_session),
        )
        .route("/v1/admin/keys/rotate", web::post().to(admin::rotate_key))
        .route("/v1/admin/keys", web::get().to(admin::keys))
        .route("/v1/admin/events", web::get().to(admin::events))
        .route("/v1/admin/events/stream", web::get().to(admin::stream))
        .route("/.well-known/jwks.json", web::get().to(ops::jwks))
        .service(limited("/oauth/revoke").route(web::post().to(ops::revoke)))
        .service(limited("/oauth/introspect").route(web::post().to(ops::introspect)))
        .route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/metrics", web::get().to(ops::metrics))
        .route("/openapi.json", web::get().to(openapi::openapi))
        .default_service(web::to(not_found));
}
