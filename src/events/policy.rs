//! The policy a `policy_changed` event carries: what a client type's
//! sessions live for and what their tokens are bound to. Part of the log's
//! wire format, so it lives with the events; the rules that check a policy
//! and fix it into a session's terms are `domain::policy`'s.
//!
//! May import: serde, utoipa (nothing of Recall's).

use serde::{Deserialize, Serialize};

/// What a session's tokens are bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Binding {
    /// Nothing: a bearer token works from anywhere (the default).
    None,
    /// The login's network: the client address must stay in its prefix.
    Network,
    /// The login's exact address.
    Address,
    /// A key the client holds (DPoP, RFC 9449): every request needs a fresh proof.
    Dpop,
}

impl Binding {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Binding::None => "none",
            Binding::Network => "network",
            Binding::Address => "address",
            Binding::Dpop => "dpop",
        }
    }
}

/// What a use from elsewhere does besides the 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnMismatch {
    /// Refuse the request.
    Reject,
    /// Refuse it and revoke the session fleet-wide.
    Revoke,
}

/// One client type's policy (the body of `PUT /v1/admin/policies/{type}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// 10 to `RECALL_ACCESS_TTL_SECS` (default 300, the `maximum` here;
    /// a deployment with another setting has that ceiling instead).
    #[schema(minimum = 10, maximum = 300)]
    pub access_ttl_secs: i64,
    /// At least `access_ttl_secs`, at most a year (366 days).
    #[schema(minimum = 10, maximum = 31_622_400)]
    pub refresh_ttl_secs: i64,
    /// At least `access_ttl_secs`, at most a year (366 days).
    #[schema(minimum = 10, maximum = 31_622_400)]
    pub session_max_secs: i64,
    /// A session unused (not refreshed) this long ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 60, maximum = 31_622_400)]
    pub idle_timeout_secs: Option<i64>,
    pub binding: Binding,
    /// The IPv4 prefix of `network` binding (default 24).
    #[serde(default = "default_v4")]
    #[schema(minimum = 8, maximum = 32)]
    pub ipv4_prefix: u8,
    /// The IPv6 prefix of `network` binding (default 56).
    #[serde(default = "default_v6")]
    #[schema(minimum = 16, maximum = 128)]
    pub ipv6_prefix: u8,
    pub on_mismatch: OnMismatch,
}

pub(crate) fn default_v4() -> u8 {
    24
}

pub(crate) fn default_v6() -> u8 {
    56
}
