//! Who a verified request comes from, and why a request is refused.

use uuid::Uuid;

use crate::state::Rejection;
use crate::token::{TokenError, Verified};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub session_id: Uuid,
    /// The verified claims and the signing kid.
    pub verified: Verified,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No token, or not `Authorization: Bearer <token>`.
    #[error("missing bearer token")]
    Missing,
    #[error("{0}")]
    Token(TokenError),
    #[error("the token was revoked")]
    Revoked(Rejection),
    /// Nothing heard from Recall within the staleness bound: fail closed.
    #[error("revocation state is stale; retry shortly")]
    Stale,
}

impl VerifyError {
    /// The HTTP status for this refusal: 401, 403 (locked) or 503 (stale).
    pub fn status(&self) -> u16 {
        match self {
            VerifyError::Stale => 503,
            VerifyError::Revoked(Rejection::UserLocked { .. }) => 403,
            _ => 401,
        }
    }

    /// The error code, as Recall words it.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Stale => "unavailable",
            VerifyError::Revoked(Rejection::UserLocked { .. }) => "account_locked",
            _ => "invalid_token",
        }
    }

    /// The JSON error body Recall answers with.
    pub fn body(&self) -> String {
        serde_json::json!({ "error": self.code(), "error_description": self.to_string() })
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_recall_statuses() {
        assert_eq!(VerifyError::Stale.status(), 503);
        assert_eq!(
            VerifyError::Revoked(Rejection::UserLocked { until: 1 }).status(),
            403
        );
        assert_eq!(
            VerifyError::Revoked(Rejection::SessionRevoked).status(),
            401
        );
        assert_eq!(VerifyError::Missing.code(), "invalid_token");
    }
}
