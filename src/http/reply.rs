//! What a handler answers: `Reply`, and the success answers the handlers
//! share.
//!
//! May import: what `http` may (its top comment).

use actix_web::http::header;
use actix_web::HttpResponse;
use serde::Serialize;

use super::errors::ApiError;

/// A handler's answer: a response, or the error to answer with.
pub type Reply = Result<HttpResponse, ApiError>;

/// 200 with `body` as JSON.
pub fn ok(body: impl Serialize) -> Reply {
    Ok(HttpResponse::Ok().json(body))
}

/// 201 with `body` as JSON.
pub fn created(body: impl Serialize) -> Reply {
    Ok(HttpResponse::Created().json(body))
}

/// 204.
pub fn no_content() -> Reply {
    Ok(HttpResponse::NoContent().finish())
}

/// 200 with `body` as JSON, never to be cached (tokens, feed pages).
pub fn no_store(body: impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}
