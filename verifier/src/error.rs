//! Who a verified request comes from, and why a request is refused.

use uuid::Uuid;

use crate::dpop::DpopError;
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

/// `WWW-Authenticate` of a refused DPoP proof (RFC 9449 section 7.1), as
/// Recall answers it.
pub const DPOP_CHALLENGE: &str = r#"DPoP error="invalid_dpop_proof", algs="EdDSA ES256""#;
/// `WWW-Authenticate` of a refused bearer token (RFC 6750).
pub const BEARER_CHALLENGE: &str = r#"Bearer error="invalid_token""#;

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No token, or not `Authorization: Bearer <token>` (or `DPoP <token>`).
    #[error("missing bearer token")]
    Missing,
    #[error("{0}")]
    Token(TokenError),
    #[error("the token was revoked")]
    Revoked(Rejection),
    /// Nothing heard from Recall within the staleness bound: fail closed.
    #[error("revocation state is stale; retry shortly")]
    Stale,
    /// A DPoP-bound token without a valid proof, or the `DPoP` scheme
    /// with a token that is not bound (RFC 9449): 401 `invalid_dpop_proof`.
    #[error("{0}")]
    Dpop(DpopRefusal),
    /// A network-bound token used from outside its session's network.
    #[error("token used from another network")]
    OtherNetwork,
    /// A network-bound token, and no binding key from Recall's feed yet:
    /// fail closed (503), as when stale.
    #[error("no network-binding key from Recall yet; retry shortly")]
    NoBindingKey,
    /// A bound token given to `Verifier::authenticate`, which sees only
    /// the token: its binding needs the request (`authenticate_request`).
    #[error("this token is bound to its client: it must be checked with its request")]
    NeedsRequest,
}

/// Why a DPoP proof (or its absence) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DpopRefusal {
    /// A DPoP-bound token with no `DPoP` header.
    #[error("a DPoP proof is required")]
    Missing,
    /// More than one `DPoP` header, or one that is not text.
    #[error("exactly one DPoP header is allowed")]
    Several,
    /// The proof failed a check of RFC 9449 section 4.3.
    #[error("DPoP proof: {0}")]
    Invalid(DpopError),
    /// Its `jti` was seen before by this verifier.
    #[error("this DPoP proof was used before")]
    Replayed,
    /// Made with another key than the token is bound to.
    #[error("the DPoP proof is not made with the token's key")]
    WrongKey,
    /// A DPoP-bound token sent as `Bearer`.
    #[error("a DPoP-bound token must be sent as Authorization: DPoP with a proof")]
    BoundAsBearer,
    /// The `DPoP` scheme with a token that is not bound to a key.
    #[error("the DPoP scheme is for DPoP-bound tokens; send this one as Bearer")]
    NotBound,
    /// The verifier has no public URL to check `htu` against (and the
    /// request named no absolute URI).
    #[error("no public URL configured: DPoP proofs cannot be checked")]
    NoPublicUrl,
}

impl DpopRefusal {
    /// A metric label for the refusal (`dpop_*`).
    pub fn reason(&self) -> &'static str {
        match self {
            DpopRefusal::Missing => "dpop_missing",
            DpopRefusal::Several => "dpop_several",
            DpopRefusal::Replayed => "dpop_replayed",
            DpopRefusal::WrongKey => "dpop_wrong_key",
            DpopRefusal::BoundAsBearer => "dpop_as_bearer",
            DpopRefusal::NotBound => "dpop_not_bound",
            DpopRefusal::NoPublicUrl => "dpop_no_public_url",
            DpopRefusal::Invalid(e) => match e {
                DpopError::TooLong => "dpop_too_long",
                DpopError::Malformed => "dpop_malformed",
                DpopError::BadType => "dpop_bad_type",
                DpopError::BadAlgorithm => "dpop_bad_algorithm",
                DpopError::Critical => "dpop_critical_header",
                DpopError::MissingJwk => "dpop_missing_jwk",
                DpopError::BadKey => "dpop_bad_key",
                DpopError::PrivateKey => "dpop_private_key",
                DpopError::BadSignature => "dpop_bad_signature",
                DpopError::MissingClaim => "dpop_missing_claim",
                DpopError::BadClaim => "dpop_bad_claim",
                DpopError::BadMethod => "dpop_bad_method",
                DpopError::BadUri => "dpop_bad_uri",
                DpopError::Stale => "dpop_stale",
                DpopError::MissingAth => "dpop_missing_ath",
                DpopError::BadAth => "dpop_bad_ath",
            },
        }
    }
}

/// Every label [`VerifyError::reason`] can answer, in `/metrics` order.
pub const REASONS: &[&str] = &[
    "missing",
    "malformed",
    "bad_algorithm",
    "bad_type",
    "unknown_kid",
    "critical_header",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "bad_issuer",
    "bad_audience",
    "bad_claims",
    "unknown_key",
    "key_revoked",
    "key_retired",
    "session_revoked",
    "user_locked",
    "stale",
    "other_network",
    "no_binding_key",
    "needs_request",
    "dpop_missing",
    "dpop_several",
    "dpop_replayed",
    "dpop_wrong_key",
    "dpop_as_bearer",
    "dpop_not_bound",
    "dpop_no_public_url",
    "dpop_too_long",
    "dpop_malformed",
    "dpop_bad_type",
    "dpop_bad_algorithm",
    "dpop_critical_header",
    "dpop_missing_jwk",
    "dpop_bad_key",
    "dpop_private_key",
    "dpop_bad_signature",
    "dpop_missing_claim",
    "dpop_bad_claim",
    "dpop_bad_method",
    "dpop_bad_uri",
    "dpop_stale",
    "dpop_missing_ath",
    "dpop_bad_ath",
];

impl VerifyError {
    /// The HTTP status for this refusal: 401, 403 (locked) or 503 (stale,
    /// or no binding key yet).
    pub fn status(&self) -> u16 {
        match self {
            VerifyError::Stale | VerifyError::NoBindingKey => 503,
            VerifyError::Revoked(Rejection::UserLocked { .. }) => 403,
            _ => 401,
        }
    }

    /// The error code, as Recall words it.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Stale | VerifyError::NoBindingKey => "unavailable",
            VerifyError::Revoked(Rejection::UserLocked { .. }) => "account_locked",
            VerifyError::Dpop(_) => "invalid_dpop_proof",
            _ => "invalid_token",
        }
    }

    /// The `WWW-Authenticate` challenge to answer with, if any: DPoP
    /// refusals name the DPoP scheme and its algorithms (RFC 9449 7.1),
    /// other 401s the bearer one; 403 and 503 have none.
    pub fn challenge(&self) -> Option<&'static str> {
        match self.status() {
            401 if matches!(self, VerifyError::Dpop(_)) => Some(DPOP_CHALLENGE),
            401 => Some(BEARER_CHALLENGE),
            _ => None,
        }
    }

    /// `Retry-After` (seconds) for a refusal that passes soon by itself.
    pub fn retry_after(&self) -> Option<&'static str> {
        (self.status() == 503).then_some("1")
    }

    /// A metric label for the refusal (one of [`REASONS`]).
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Missing => "missing",
            VerifyError::Token(e) => e.reason(),
            VerifyError::Revoked(r) => match r {
                Rejection::UnknownKey => "unknown_key",
                Rejection::KeyRevoked => "key_revoked",
                Rejection::KeyRetired => "key_retired",
                Rejection::SessionRevoked => "session_revoked",
                Rejection::UserLocked { .. } => "user_locked",
            },
            VerifyError::Stale => "stale",
            VerifyError::Dpop(d) => d.reason(),
            VerifyError::OtherNetwork => "other_network",
            VerifyError::NoBindingKey => "no_binding_key",
            VerifyError::NeedsRequest => "needs_request",
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

    #[test]
    fn bound_token_refusals_map_to_recall_statuses_and_challenges() {
        let dpop = VerifyError::Dpop(DpopRefusal::Invalid(DpopError::BadAth));
        assert_eq!(
            (dpop.status(), dpop.code(), dpop.challenge()),
            (401, "invalid_dpop_proof", Some(DPOP_CHALLENGE))
        );
        assert_eq!(
            dpop.to_string(),
            "DPoP proof: DPoP proof ath does not match the access token"
        );
        let bearer = VerifyError::Dpop(DpopRefusal::BoundAsBearer);
        assert_eq!(
            (bearer.status(), bearer.challenge()),
            (401, Some(DPOP_CHALLENGE))
        );
        let net = VerifyError::OtherNetwork;
        assert_eq!(
            (
                net.status(),
                net.code(),
                net.challenge(),
                net.to_string().as_str()
            ),
            (
                401,
                "invalid_token",
                Some(BEARER_CHALLENGE),
                "token used from another network"
            )
        );
        let key = VerifyError::NoBindingKey;
        assert_eq!(
            (key.status(), key.code(), key.challenge(), key.retry_after()),
            (503, "unavailable", None, Some("1"))
        );
        let locked = VerifyError::Revoked(Rejection::UserLocked { until: 1 });
        assert_eq!((locked.challenge(), locked.retry_after()), (None, None));
        let body: serde_json::Value = serde_json::from_str(&net.body()).unwrap();
        assert_eq!(body["error"], "invalid_token");
    }

    #[test]
    fn every_reason_is_listed_once() {
        let mut all: Vec<VerifyError> = vec![
            VerifyError::Missing,
            VerifyError::Stale,
            VerifyError::OtherNetwork,
            VerifyError::NoBindingKey,
            VerifyError::NeedsRequest,
            VerifyError::Revoked(Rejection::UnknownKey),
            VerifyError::Revoked(Rejection::KeyRevoked),
            VerifyError::Revoked(Rejection::KeyRetired),
            VerifyError::Revoked(Rejection::SessionRevoked),
            VerifyError::Revoked(Rejection::UserLocked { until: 0 }),
        ];
        all.extend(
            [
                TokenError::Malformed,
                TokenError::BadAlgorithm,
                TokenError::BadType,
                TokenError::UnknownKid,
                TokenError::Critical,
                TokenError::BadSignature,
                TokenError::Expired,
                TokenError::NotYetValid,
                TokenError::BadIssuer,
                TokenError::BadAudience,
                TokenError::BadClaims,
            ]
            .map(VerifyError::Token),
        );
        all.extend(
            [
                DpopRefusal::Missing,
                DpopRefusal::Several,
                DpopRefusal::Replayed,
                DpopRefusal::WrongKey,
                DpopRefusal::BoundAsBearer,
                DpopRefusal::NotBound,
                DpopRefusal::NoPublicUrl,
            ]
            .map(VerifyError::Dpop),
        );
        all.extend(DpopError::ALL.map(|e| VerifyError::Dpop(DpopRefusal::Invalid(e))));
        let mut reasons: Vec<&str> = all.iter().map(VerifyError::reason).collect();
        assert!(reasons.iter().all(|r| REASONS.contains(r)), "{reasons:?}");
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), REASONS.len());
    }
}
