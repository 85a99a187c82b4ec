//! HTTP: routes, body limits and the JSON error format of API.md.
//!
//! May import: service and the types it hands out (error, store records,
//! state, ssf, domain, events, clock); never startup, server or cli. The
//! layers: docs/DESIGN.md, "Parts".

pub mod admin;
pub mod body;
pub mod errors;
pub mod extract;
pub mod feed;
pub mod oauth;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod policies;
pub mod site;
pub mod ssf;
pub mod ssf_types;
pub mod users;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::error::QueryPayloadError;
use actix_web::http::Method;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, HttpResponse, Resource};

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

/// 405 with `Allow` for a method the resource does not serve.
async fn not_allowed(allow: Method) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((actix_web::http::header::ALLOW, allow.as_str()))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(errors::ErrorBody {
            error: "method_not_allowed".into(),
            error_description: format!("this route answers {allow} only"),
        })
}

/// 405 for a resource serving several methods.
async fn not_allowed_many(allow: &'static str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((actix_web::http::header::ALLOW, allow))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(errors::ErrorBody {
            error: "method_not_allowed".into(),
            error_description: format!("this route answers {allow} only"),
        })
}

/// A resource that serves one `method`; any other gets 405 with `Allow`.
fn one(path: &str, method: Method) -> Resource {
    web::resource(path).default_service(web::to(move || not_allowed(method.clone())))
}

/// `one`, with requests rate limited per client address.
fn limited(
    path: &str,
    method: Method,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    one(path, method).wrap(from_fn(rate_limit))
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

/// Every route of API.md.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .service(limited("/v1/users", Method::POST).route(web::post().to(users::register)))
        .service(limited("/v1/auth/login", Method::POST).route(web::post().to(users::login)))
        .service(limited("/v1/auth/refresh", Method::POST).route(web::post().to(users::refresh)))
        .service(one("/v1/auth/logout", Method::POST).route(web::post().to(users::logout)))
        .service(one("/v1/auth/logout-all", Method::POST).route(web::post().to(users::logout_all)))
        .service(
            one("/v1/auth/logout-others", Method::POST).route(web::post().to(users::logout_others)),
        )
        .service(one("/v1/auth/password", Method::POST).route(web::post().to(users::password)))
        .service(one("/v1/auth/verify", Method::GET).route(web::get().to(users::verify)))
        .service(one("/v1/me", Method::GET).route(web::get().to(users::me)))
        .service(one("/v1/sessions", Method::GET).route(web::get().to(users::sessions)))
        .service(
            one("/v1/sessions/{session_id}", Method::DELETE)
                .route(web::delete().to(users::delete_session)),
        )
        .service(one("/v1/admin/users", Method::GET).route(web::get().to(admin::find_user)))
        .service(
            one("/v1/admin/users/{user_id}/revoke-sessions", Method::POST)
                .route(web::post().to(admin::revoke_sessions)),
        )
        .service(
            one("/v1/admin/users/{user_id}/lock", Method::POST).route(web::post().to(admin::lock)),
        )
        .service(
            one("/v1/admin/users/{user_id}/unlock", Method::POST)
                .route(web::post().to(admin::unlock)),
        )
        .service(
            one("/v1/admin/sessions/{session_id}", Method::DELETE)
                .route(web::delete().to(admin::delete_session)),
        )
        .service(
            one("/v1/admin/keys/rotate", Method::POST).route(web::post().to(admin::rotate_key)),
        )
        .service(one("/v1/admin/keys", Method::GET).route(web::get().to(admin::keys)))
        .service(
            one("/v1/admin/users/{user_id}/sessions", Method::GET)
                .route(web::get().to(admin::user_sessions)),
        )
        .service(one("/v1/admin/events", Method::GET).route(web::get().to(admin::events)))
        .service(one("/v1/admin/events/stream", Method::GET).route(web::get().to(admin::stream)))
        .service(
            web::resource("/v1/admin/services")
                .route(web::post().to(feed::create_service))
                .route(web::get().to(feed::services))
                .default_service(web::to(|| not_allowed_many("GET, POST"))),
        )
        .service(
            one("/v1/admin/services/{service_id}", Method::DELETE)
                .route(web::delete().to(feed::revoke_service)),
        )
        .service(
            one("/.well-known/ssf-configuration", Method::GET).route(web::get().to(ssf::metadata)),
        )
        .service(
            web::resource("/ssf/streams")
                .route(web::post().to(ssf::create))
                .route(web::get().to(ssf::read))
                .route(web::patch().to(ssf::update))
                .route(web::put().to(ssf::replace))
                .route(web::delete().to(ssf::delete))
                .default_service(web::to(|| {
                    not_allowed_many("DELETE, GET, PATCH, POST, PUT")
                })),
        )
        .service(
            web::resource("/ssf/status")
                .route(web::get().to(ssf::status))
                .route(web::post().to(ssf::set_status))
                .default_service(web::to(|| not_allowed_many("GET, POST"))),
        )
        .service(one("/ssf/verify", Method::POST).route(web::post().to(ssf::verify)))
        .service(one("/ssf/poll/{stream_id}", Method::POST).route(web::post().to(ssf::poll)))
        .service(one("/v1/admin/ssf/streams", Method::GET).route(web::get().to(ssf::admin_streams)))
        .service(one("/v1/revocations", Method::GET).route(web::get().to(feed::page)))
        .service(
            one("/v1/revocations/mismatch", Method::POST).route(web::post().to(policies::mismatch)),
        )
        .service(one("/v1/admin/policies", Method::GET).route(web::get().to(policies::list)))
        .service(
            one("/v1/admin/policies/{client_type}", Method::PUT)
                .route(web::put().to(policies::set)),
        )
        .service(one("/v1/revocations/stream", Method::GET).route(web::get().to(feed::stream)))
        .service(one("/.well-known/jwks.json", Method::GET).route(web::get().to(ops::jwks)))
        .service(
            one("/.well-known/oauth-protected-resource", Method::GET)
                .route(web::get().to(oauth::resource_metadata)),
        )
        .service(
            one("/.well-known/oauth-authorization-server", Method::GET)
                .route(web::get().to(oauth::metadata)),
        )
        .service(
            one("/.well-known/openid-configuration", Method::GET)
                .route(web::get().to(oauth::openid_configuration)),
        )
        .service(limited("/oauth/token", Method::POST).route(web::post().to(oauth::token)))
        .service(limited("/oauth/revoke", Method::POST).route(web::post().to(ops::revoke)))
        // Rate limited inside: a valid service credential is not counted.
        .service(one("/oauth/introspect", Method::POST).route(web::post().to(ops::introspect)))
        .service(one("/healthz", Method::GET).route(web::get().to(ops::healthz)))
        .service(one("/readyz", Method::GET).route(web::get().to(ops::readyz)))
        .service(one("/metrics", Method::GET).route(web::get().to(ops::metrics)))
        .service(one("/openapi.json", Method::GET).route(web::get().to(openapi::openapi)))
        .service(one("/", Method::GET).route(web::get().to(site::index)))
        .service(one("/account", Method::GET).route(web::get().to(site::account)))
        .service(one("/admin", Method::GET).route(web::get().to(site::admin)))
        .service(one("/assets/{name}", Method::GET).route(web::get().to(site::asset)))
        .service(limited("/web/login", Method::POST).route(web::post().to(site::login)))
        .service(limited("/web/refresh", Method::POST).route(web::post().to(site::refresh)))
        .service(one("/web/logout", Method::POST).route(web::post().to(site::logout)))
        .default_service(web::to(not_found));
}
