//! The core's errors: why an operation was refused or failed, in the
//! core's own terms. `http::errors` words them for clients (API.md) and
//! picks the status; the CLI prints them as they are.
//!
//! May import: store, tokens, passwords, domain, clock. The layers:
//! docs/DESIGN.md, "Parts".

use crate::clock::Timestamp;
pub use crate::domain::RefreshRefusal;
use crate::passwords::Saturated;
use crate::store::StoreError;
use crate::tokens::TokenError;

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input broke a rule (`field`: the rule).
    #[error("{field}: {rule}")]
    Invalid { field: &'static str, rule: String },
    /// Wrong username or password (one answer for both).
    #[error("wrong username or password")]
    BadCredentials,
    /// A bearer token was refused.
    #[error("token refused: {0:?}")]
    Token(TokenRefusal),
    /// A refresh token was refused.
    #[error("refresh token refused: {0:?}")]
    Grant(RefreshRefusal),
    /// A DPoP proof was refused: at a token endpoint (`resource` false,
    /// 400) or with a protected request (401), RFC 9449.
    #[error("DPoP proof refused: {refusal:?}")]
    Dpop {
        refusal: DpopRefusal,
        resource: bool,
    },
    /// The account is locked until then (ms).
    #[error("the account is locked until {}", until.rfc3339())]
    Locked { until: Timestamp },
    /// Authenticated, but not an admin.
    #[error("admin rights required")]
    NotAdmin,
    /// No such thing.
    #[error("no such {0}")]
    NotFound(Missing),
    /// Registration with a taken username.
    #[error("that username is taken")]
    UsernameTaken,
    /// Too many requests from one client address.
    #[error("rate limited; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// This instance cannot serve it now; retry.
    #[error("unavailable: {0:?}")]
    Unavailable(Unavailable),
    /// A fault of ours; the cause is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Malformed, forged, expired or otherwise invalid.
    Invalid(TokenError),
    SessionRevoked,
    KeyRevoked,
    KeyRetired,
    UnknownKey,
    /// Signed for a user the store does not know.
    UnknownUser,
    /// Not a live service credential (unknown, or ended).
    UnknownService,
    /// Bound to a network (or address) the request is not from.
    OtherNetwork,
}

/// Why a DPoP proof (or its absence) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopRefusal {
    /// None sent where the policy or the token requires one.
    Missing,
    /// It failed a check of RFC 9449 section 4.3.
    Invalid(recall_verifier::dpop::DpopError),
    /// Its `jti` was seen before by an instance of the fleet.
    Replayed,
    /// Made with another key than the token or session is bound to.
    WrongKey,
    /// A DPoP-bound token sent as `Bearer`.
    BoundAsBearer,
    /// The `DPoP` scheme with a token that is not bound to a key.
    NotBound,
    /// Server nonces are on and it lacks a current one: retry with this.
    UseNonce(String),
}

/// What was not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    User,
    Session,
    Service,
    Stream,
    Resource,
    ClientType,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Missing::User => "user",
            Missing::Session => "session",
            Missing::Service => "service",
            Missing::Stream => "stream",
            Missing::Resource => "resource",
            Missing::ClientType => "client type (web, mobile or service)",
        })
    }
}

/// Why this instance cannot serve a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Not caught up with the log within the staleness bound (G5, G9).
    Stale,
    /// The store does not answer.
    Store,
    /// The password-hash pool is full (G10).
    Saturated,
    /// No active signing key is loaded yet.
    NoSigningKey,
    /// The fleet-wide DPoP replay check (Redis, or the store) does not answer.
    ReplayCheck,
}

impl Error {
    /// A lock that ends at `until`.
    pub fn locked(until: Timestamp) -> Self {
        Error::Locked { until }
    }

    /// An input that broke a rule.
    pub fn invalid(field: &'static str, rule: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            rule: rule.into(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "store unavailable");
                Error::Unavailable(Unavailable::Store)
            }
            StoreError::NotFound => Error::NotFound(Missing::Resource),
            other => {
                tracing::error!(error = %other, "store failure");
                Error::Internal(other.to_string())
            }
        }
    }
}

impl From<Saturated> for Error {
    fn from(_: Saturated) -> Self {
        Error::Unavailable(Unavailable::Saturated)
    }
}
