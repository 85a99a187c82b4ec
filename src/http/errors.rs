//! Errors as clients see them: the core's errors worded for API.md, and
//! the one mapping from `ApiError` to a response: status, JSON body, and
//! `WWW-Authenticate` on 401s about bearer tokens (RFC 6750).
//!
//! May import: what `http` may (its top comment).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::Timestamp;
use crate::domain::BindingRefusal;
use crate::error::{DpopRefusal, Error, RefreshRefusal, TokenRefusal, Unavailable};
use crate::tokens::TokenError;

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// A snake_case code, e.g. `invalid_token`.
    pub error: String,
    /// What went wrong, for people.
    pub error_description: String,
}

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
    /// RFC 9449: 400 at a token endpoint, 401 with a protected request.
    #[error("{description}")]
    InvalidDpopProof { description: String, resource: bool },
    /// RFC 9449 section 8: retry with the nonce in `DPoP-Nonce`.
    #[error("a DPoP nonce is required: retry with the one in the DPoP-Nonce header")]
    UseDpopNonce { nonce: String, resource: bool },
    #[error("the account is locked until {}", until.rfc3339())]
    AccountLocked { until: Timestamp },
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
            ApiError::InvalidDpopProof { .. } => "invalid_dpop_proof",
            ApiError::UseDpopNonce { .. } => "use_dpop_nonce",
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
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidDpopProof { resource, .. }
            | ApiError::UseDpopNonce { resource, .. } => {
                if *resource {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::BAD_REQUEST
                }
            }
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
        match self {
            ApiError::InvalidDpopProof { resource: true, .. } => {
                res.insert_header((header::WWW_AUTHENTICATE, DPOP_CHALLENGE));
            }
            ApiError::UseDpopNonce { nonce, resource } => {
                if *resource {
                    res.insert_header((header::WWW_AUTHENTICATE, DPOP_NONCE_CHALLENGE));
                }
                res.insert_header(("DPoP-Nonce", nonce.as_str()));
            }
            _ => {}
        }
        if let ApiError::Unavailable(_) = self {
            res.insert_header((header::RETRY_AFTER, "1"));
        }
        if let ApiError::RateLimited { retry_after_secs } = self {
            res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        res.json(ErrorBody {
            error: self.code().to_owned(),
            error_description: description,
        })
    }
}

/// `WWW-Authenticate` of a refused DPoP proof (RFC 9449 section 7.1).
const DPOP_CHALLENGE: &str = r#"DPoP error="invalid_dpop_proof", algs="EdDSA ES256""#;
/// `WWW-Authenticate` asking for a server nonce (RFC 9449 section 9).
const DPOP_NONCE_CHALLENGE: &str = r#"DPoP error="use_dpop_nonce", algs="EdDSA ES256""#;

/// The human text for a token failure.
pub fn token_error_text(e: &TokenError) -> &'static str {
    match e {
        TokenError::Expired => "the access token expired",
        TokenError::UnknownKid => "unknown signing key",
        TokenError::BadSignature => "bad signature",
        TokenError::BadAlgorithm => "algorithm not allowed",
        TokenError::BadType => "not an access token (typ must be at+jwt)",
        TokenError::Critical => "unsupported critical header",
        TokenError::NotYetValid => "the token is not valid yet",
        TokenError::BadIssuer => "wrong issuer",
        TokenError::BadAudience => "wrong audience",
        TokenError::BadClaims => "invalid claims",
        TokenError::Malformed => "malformed token",
    }
}

/// The client's wording of each core error (API.md).
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid { field, rule } => ApiError::InvalidRequest(format!("{field}: {rule}")),
            Error::BadCredentials => ApiError::InvalidCredentials,
            Error::Token(t) => ApiError::InvalidToken(
                match t {
                    TokenRefusal::Invalid(e) => token_error_text(&e),
                    TokenRefusal::SessionRevoked => "the session was revoked",
                    TokenRefusal::KeyRevoked => "the signing key was revoked",
                    TokenRefusal::KeyRetired => "the signing key was retired",
                    TokenRefusal::UnknownKey => "unknown signing key",
                    TokenRefusal::UnknownUser => "unknown user",
                    TokenRefusal::UnknownService => "unknown or ended service credential",
                    TokenRefusal::OtherNetwork => "token used from another network",
                }
                .into(),
            ),
            Error::Grant(g) => ApiError::InvalidGrant(
                match g {
                    RefreshRefusal::Unknown => "unknown refresh token",
                    RefreshRefusal::Ended => "the session has ended",
                    RefreshRefusal::JustUsed => {
                        "this refresh token was just used by a concurrent refresh"
                    }
                    RefreshRefusal::Reused => {
                        "refresh token reuse detected; the session is revoked"
                    }
                    RefreshRefusal::Locked { until } => return Error::locked(until).into(),
                    RefreshRefusal::Elsewhere(BindingRefusal::Network) => {
                        "refresh token used from another network"
                    }
                    RefreshRefusal::Elsewhere(BindingRefusal::Key) => {
                        return Error::Dpop {
                            refusal: DpopRefusal::WrongKey,
                            resource: false,
                        }
                        .into()
                    }
                }
                .into(),
            ),
            Error::Dpop { refusal, resource } => {
                let description = match refusal {
                    DpopRefusal::UseNonce(nonce) => {
                        return ApiError::UseDpopNonce { nonce, resource }
                    }
                    DpopRefusal::Missing => "a DPoP proof is required".into(),
                    DpopRefusal::Invalid(e) => format!("DPoP proof: {e}"),
                    DpopRefusal::Replayed => "this DPoP proof was used before".into(),
                    DpopRefusal::WrongKey => {
                        "the DPoP proof is not made with the token's key".into()
                    }
                    DpopRefusal::NotBound => {
                        "the DPoP scheme is for DPoP-bound tokens; send this one as Bearer".into()
                    }
                    DpopRefusal::BoundAsBearer => {
                        "a DPoP-bound token must be sent as Authorization: DPoP with a proof".into()
                    }
                };
                ApiError::InvalidDpopProof {
                    description,
                    resource,
                }
            }
            Error::Locked { until } => ApiError::AccountLocked { until },
            Error::NotAdmin => ApiError::Forbidden("admin rights required".into()),
            Error::NotFound(what) => ApiError::NotFound(format!("no such {what}")),
            Error::UsernameTaken => ApiError::UsernameTaken,
            Error::RateLimited { retry_after_secs } => ApiError::RateLimited { retry_after_secs },
            Error::Unavailable(u) => ApiError::Unavailable(
                match u {
                    Unavailable::Stale => {
                        "this instance is not caught up with the log; failing closed"
                    }
                    Unavailable::Store => "the store is unreachable; try again",
                    Unavailable::Saturated => "too many password checks in flight; retry shortly",
                    Unavailable::NoSigningKey => "no active signing key",
                    Unavailable::ReplayCheck => {
                        "the DPoP replay check is unavailable; failing closed"
                    }
                }
                .into(),
            ),
            Error::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Error::from(e).into()
    }
}
