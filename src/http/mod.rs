//! HTTP: routes, body limits and the JSON error format of API.md.
//!
//! May import: service and the types it hands out (error, store records,
//! state, ssf, domain, events, clock); never startup, server or cli. The
//! layers: docs/DESIGN.md, "Parts".

pub mod admin;
pub mod body;
pub mod erase;
pub mod errors;
mod evidence;
pub mod extract;
pub mod feed;
pub mod forensics;
pub mod oauth;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod policies;
pub mod reply;
pub mod site;
pub mod ssf;
pub mod ssf_types;
pub mod users;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::error::QueryPayloadError;
use actix_web::http::Method;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder};

use crate::service::Recall;
use errors::ApiError;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

pub use crate::clock::rfc3339;

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
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(recall) = req.app_data::<web::Data<Recall>>() {
        if let Err(e) = recall.rate_limit(extract::client_addr(req.request())) {
            return Ok(req.error_response(ApiError::from(e)).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// 405 with `Allow`: the methods the resource serves.
async fn not_allowed(allow: String) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((actix_web::http::header::ALLOW, allow.as_str()))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(errors::ErrorBody {
            error: "method_not_allowed".into(),
            error_description: format!("this route answers {allow} only"),
        })
}

/// A resource at `path` whose other methods get 405 with `allow`.
fn resource(path: &str, allow: &str) -> Resource {
    let allow = allow.to_owned();
    web::resource(path).default_service(web::to(move || not_allowed(allow.clone())))
}

/// A resource that serves one `method` with `handler`; any other gets 405
/// with `Allow`.
fn one<F, Args>(path: &str, method: Method, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    resource(path, method.as_str()).route(web::method(method).to(handler))
}

/// `get(path, handler)` and the like: `one` for each method.
macro_rules! one_method {
    ($($name:ident => $method:ident),*) => {$(
        fn $name<F, Args>(path: &str, handler: F) -> Resource
        where
            F: Handler<Args>,
            Args: FromRequest + 'static,
            F::Output: Responder + 'static,
        {
            one(path, Method::$method, handler)
        }
    )*};
}
one_method!(get => GET, post => POST, put => PUT, delete => DELETE);

/// `post`, with requests rate limited per client address.
fn limited<F, Args>(
    path: &str,
    handler: F,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
>
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    post(path, handler).wrap(from_fn(rate_limit))
}

/// CORS for `RECALL_CORS_ORIGINS`: those origins' pages may call the JSON
/// API with a bearer token. Credentials (cookies) are never allowed across
/// origins, and an origin not listed simply gets no CORS headers (the
/// browser then withholds the answer); the cookie routes check `Origin`
/// themselves.
pub fn cors(origins: &[String]) -> actix_cors::Cors {
    use actix_web::http::header;
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
        .block_on_origin_mismatch(false)
        .max_age(600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// Every route of API.md, one a line.
#[rustfmt::skip]
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .service(limited("/v1/users", users::register))
        .service(limited("/v1/auth/login", users::login))
        .service(limited("/v1/auth/refresh", users::refresh))
        .service(post("/v1/auth/logout", users::logout))
        .service(post("/v1/auth/logout-all", users::logout_all))
        .service(post("/v1/auth/logout-others", users::logout_others))
        .service(post("/v1/auth/password", users::password))
        .service(get("/v1/auth/verify", users::verify))
        .service(get("/v1/me", users::me))
        .service(get("/v1/sessions", users::sessions))
        .service(delete("/v1/sessions/{session_id}", users::delete_session))
        .service(get("/v1/admin/users", admin::find_user))
        .service(post("/v1/admin/users/{user_id}/revoke-sessions", admin::revoke_sessions))
        .service(post("/v1/admin/users/{user_id}/lock", admin::lock))
        .service(post("/v1/admin/users/{user_id}/unlock", admin::unlock))
        .service(delete("/v1/admin/users/{user_id}", erase::erase_user))
        .service(delete("/v1/admin/sessions/{session_id}", admin::delete_session))
        .service(post("/v1/admin/keys/rotate", admin::rotate_key))
        .service(get("/v1/admin/keys", admin::keys))
        .service(get("/v1/admin/users/{user_id}/sessions", admin::user_sessions))
        .service(get("/v1/admin/events", admin::events))
        .service(get("/v1/admin/events/stream", admin::stream))
        .service(get("/v1/admin/log/verify", evidence::verify))
        .service(resource("/v1/admin/log/checkpoint", "GET, POST")
            .route(web::get().to(evidence::latest_checkpoint))
            .route(web::post().to(evidence::new_checkpoint)))
        .service(post("/v1/admin/forensics/validity", forensics::validity))
        .service(resource("/v1/admin/services", "GET, POST")
            .route(web::post().to(feed::create_service))
            .route(web::get().to(feed::services)))
        .service(delete("/v1/admin/services/{service_id}", feed::revoke_service))
        .service(get("/.well-known/ssf-configuration", ssf::metadata))
        .service(resource("/ssf/streams", "DELETE, GET, PATCH, POST, PUT")
            .route(web::post().to(ssf::create))
            .route(web::get().to(ssf::read))
            .route(web::patch().to(ssf::update))
            .route(web::put().to(ssf::replace))
            .route(web::delete().to(ssf::delete)))
        .service(resource("/ssf/status", "GET, POST")
            .route(web::get().to(ssf::status))
            .route(web::post().to(ssf::set_status)))
        .service(post("/ssf/verify", ssf::verify))
        .service(post("/ssf/poll/{stream_id}", ssf::poll))
        .service(get("/v1/admin/ssf/streams", ssf::admin_streams))
        .service(get("/v1/revocations", feed::page))
        .service(post("/v1/revocations/mismatch", policies::mismatch))
        .service(get("/v1/admin/policies", policies::list))
        .service(put("/v1/admin/policies/{client_type}", policies::set))
        .service(get("/v1/revocations/stream", feed::stream))
        .service(get("/.well-known/jwks.json", ops::jwks))
        .service(get("/.well-known/oauth-protected-resource", oauth::resource_metadata))
        .service(get("/.well-known/oauth-authorization-server", oauth::metadata))
        .service(get("/.well-known/openid-configuration", oauth::openid_configuration))
        .service(limited("/oauth/token", oauth::token))
        .service(limited("/oauth/revoke", ops::revoke))
        // Rate limited inside: a valid service credential is not counted.
        .service(post("/oauth/introspect", ops::introspect))
        .service(get("/healthz", ops::healthz))
        .service(get("/readyz", ops::readyz))
        .service(get("/metrics", ops::metrics))
        .service(get("/openapi.json", openapi::openapi))
        .service(get("/", site::index))
        .service(get("/account", site::account))
        .service(get("/admin", site::admin))
        .service(get("/assets/{name}", site::asset))
        .service(limited("/web/login", site::login))
        .service(limited("/web/refresh", site::refresh))
        .service(post("/web/logout", site::logout))
        .default_service(web::to(not_found));
}
