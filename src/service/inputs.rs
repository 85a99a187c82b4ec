//! What callers hand the core and get back: checked usernames and
//! passwords, login input, the token answer, and the resolved principal.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use serde::Serialize;
use uuid::Uuid;

use crate::error::Error;
use crate::tokens::{Claims, Verified};

/// A username: 3-64 of `a-z 0-9 . _ -`, lowercased. The characters are
/// checked before lowercasing, so no Unicode case folding (the Kelvin sign
/// to `k`, say) can smuggle a name past the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(pub(super) String);

impl Username {
    /// Lowercases and checks a username.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let ok_len = (3..=64).contains(&raw.len());
        let ok_chars = raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok_len || !ok_chars {
            return Err(Error::invalid(
                "username",
                "3 to 64 characters of a-z 0-9 . _ -",
            ));
        }
        Ok(Username(raw.to_ascii_lowercase()))
    }

    /// The lowercased name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of 8 to 1024 characters (Unicode scalar values; for ASCII,
/// bytes). Characters, not bytes, so that the rule is the one JSON Schema's
/// `minLength`/`maxLength` state in the OpenAPI document; at most 4 KiB.
#[derive(Clone)]
pub struct Password(pub(super) String);

impl Password {
    /// Checks a new password's length.
    pub fn parse(raw: String, field: &'static str) -> Result<Self, Error> {
        if !(8..=1024).contains(&raw.chars().count()) {
            return Err(Error::invalid(field, "8 to 1024 characters"));
        }
        Ok(Password(raw))
    }
}

/// The kinds of client a session can belong to: `web` (the default),
/// `mobile` or `service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ClientType {
    Web,
    Mobile,
    Service,
}

impl ClientType {
    /// Checks a client type; none is `web`.
    pub fn parse(raw: Option<&str>) -> Result<Self, Error> {
        match raw.unwrap_or("web") {
            "web" => Ok(ClientType::Web),
            "mobile" => Ok(ClientType::Mobile),
            "service" => Ok(ClientType::Service),
            _ => Err(Error::invalid("client_type", "web, mobile or service")),
        }
    }

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::Web => "web",
            ClientType::Mobile => "mobile",
            ClientType::Service => "service",
        }
    }
}

/// A device id a client names itself by: at most 256 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceId(String);

impl DeviceId {
    /// Checks a device id's length.
    pub fn parse(raw: String) -> Result<Self, Error> {
        if raw.chars().count() > 256 {
            return Err(Error::invalid("device_id", "at most 256 characters"));
        }
        Ok(DeviceId(raw))
    }

    /// The id as given.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// An admin's reason for an emergency action, kept in the audit log and
/// carried by the SETs it causes: at most 1000 characters, from the API and
/// the CLI alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    /// Checks an optional reason's length.
    pub fn parse(raw: Option<String>) -> Result<Option<Self>, Error> {
        match raw {
            Some(r) if r.chars().count() > 1000 => {
                Err(Error::invalid("reason", "at most 1000 characters"))
            }
            r => Ok(r.map(Reason)),
        }
    }

    /// The reason as given.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A client's `User-Agent` as a session keeps it: its first 512 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent(String);

impl UserAgent {
    /// Keeps the first 512 characters of `raw`.
    pub fn new(raw: &str) -> Self {
        UserAgent(raw.chars().take(512).collect())
    }

    /// The kept text.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// An authenticated caller, resolved from an access token in memory. It
/// shares the cached verification instead of copying the claims, so a
/// cache hit allocates nothing.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub(super) verified: Verified,
}

impl Principal {
    /// The token's claims.
    pub fn claims(&self) -> &Claims {
        &self.verified.0
    }

    /// The session's client type (web, mobile or service).
    pub fn client_type(&self) -> &str {
        &self.verified.0.ctype
    }
}

/// The body of a login or refresh answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// An EdDSA JWT (`typ` at+jwt) carrying ids only.
    pub access_token: String,
    /// `Bearer`, or `DPoP` when the access token is bound to the proof's key.
    #[schema(value_type = String)]
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: i64,
    /// Opaque; rotates on every use.
    pub refresh_token: String,
    /// Seconds the refresh token lives.
    pub refresh_expires_in: i64,
    pub session_id: Uuid,
}

/// Login input after JSON parsing.
#[derive(Debug, Clone)]
pub struct LoginInput {
    pub username: String,
    pub password: String,
    pub client_type: ClientType,
    pub device_id: Option<DeviceId>,
    pub user_agent: Option<UserAgent>,
    /// The client address (binding fixes its network).
    pub ip: Option<std::net::IpAddr>,
    /// The request's DPoP proof, if any, and what it must name.
    pub dpop: super::DpopInput,
}

/// A refresh request: the token, the client address and DPoP proof.
#[derive(Debug, Clone)]
pub struct RefreshInput {
    pub refresh_token: String,
    pub ip: Option<std::net::IpAddr>,
    pub dpop: super::DpopInput,
}
