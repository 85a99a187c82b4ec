//! The one mapping from `ApiError` to a response: status, JSON body, and
//! `WWW-Authenticate` on 401s about bearer tokens (RFC 6750).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::error::ApiError;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidCredentials
            | ApiError::InvalidToken(_)
            | ApiError::InvalidGrant(_) => StatusCode::UNAUTHORIZED,
            ApiError::AccountLocked { .. } | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::UsernameTaken => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let description = match self {
            // The cause goes to the log, never to the client.
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut res = HttpResponse::build(self.status_code());
        if let ApiError::InvalidToken(_) = self {
            res.insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#));
        }
        if let ApiError::Unavailable(_) = self {
            res.insert_header((header::RETRY_AFTER, "1"));
        }
        if let ApiError::RateLimited { retry_after_secs } = self {
            res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        res.json(json!({ "error": self.code(), "error_description": description }))
    }
}
