//! `JsonBody<T>`: the JSON extractor of every route. It caps the body at
//! 64 KiB (413) and names the offending field in 400s (serde_path_to_error),
//! which actix's `web::Json` cannot.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::errors::ApiError;
use super::MAX_BODY;

/// A parsed JSON request body.
pub struct JsonBody<T>(pub T);

/// Parses JSON, naming the field that failed.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::InvalidRequest(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::InvalidRequest(format!("invalid JSON body: field `{path}`: {inner}"))
        }
    })
}

/// Reads the whole body, refusing more than 64 KiB.
pub async fn read_limited(req: &HttpRequest, payload: &mut Payload) -> Result<BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::InvalidRequest(format!("unreadable body: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let json = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| {
                    let ct = ct.to_ascii_lowercase();
                    ct.starts_with("application/json") || ct.contains("+json")
                });
            let body = read_limited(&req, &mut payload).await?;
            if !json {
                return Err(ApiError::InvalidRequest(
                    "expected Content-Type: application/json".into(),
                ));
            }
            parse_json(&body).map(JsonBody)
        })
    }
}

/// A raw request body, capped at 64 KiB (form-encoded and optional bodies).
pub struct RawBody(pub BytesMut);

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move { read_limited(&req, &mut payload).await.map(RawBody) })
    }
}
