//! The one error type every operation answers with; `http::errors` maps it
//! to status codes and the JSON body of API.md.

use crate::passwords::Saturated;
use crate::store::StoreError;
use crate::time::rfc3339;

/// An error as a client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("{0}")]
    InvalidToken(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("the account is locked until {}", rfc3339(*until_ms))]
    AccountLocked { until_ms: i64 },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("that username is taken")]
    UsernameTaken,
    #[error("request body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("too many requests from this address; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The snake_case error code of API.md.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::InvalidGrant(_) => "invalid_grant",
            ApiError::AccountLocked { .. } => "account_locked",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::UsernameTaken => "username_taken",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// A lock that ends at `until_ms`.
    pub fn locked(until_ms: i64) -> Self {
        ApiError::AccountLocked { until_ms }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "store unavailable");
                ApiError::Unavailable("the store is unreachable; try again".into())
            }
            StoreError::NotFound => ApiError::NotFound("no such resource".into()),
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::Internal(other.to_string())
            }
        }
    }
}

impl From<Saturated> for ApiError {
    fn from(_: Saturated) -> Self {
        ApiError::Unavailable("too many password checks in flight; retry shortly".into())
    }
}
