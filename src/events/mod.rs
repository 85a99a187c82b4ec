//! The event types and their envelope. Every state change in Recall is one
//! of these, appended to the log; the log is also the audit trail.
//!
//! May import: clock. The layers: docs/DESIGN.md, "Parts".

pub mod policy;

use crate::clock::Timestamp;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use policy::{Binding, OnMismatch, Policy};

/// Payload version written today; `Event::decode` upcasts older ones.
pub const EVENT_VERSION: i64 = 1;

/// Why a session (or all of a user's sessions) ended, when it was not the
/// user's own logout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeCause {
    /// The user revoked it from the session list or logged out everywhere.
    User,
    /// An admin (or the CLI) revoked it.
    Admin,
    /// RFC 7009 revocation of its refresh token.
    TokenRevocation,
    /// Too many wrong current passwords on a password change from it.
    PasswordGuesses,
    /// A token of it was used from elsewhere than it is bound to, and its
    /// client type's policy says `on_mismatch = revoke`.
    BindingMismatch,
}

/// Something that happened. Serialised with a `type` tag; payloads are
/// versioned through the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    UserRegistered {
        user_id: Uuid,
        /// `None` once the user is erased (its data key is gone).
        #[serde(default)]
        username: Option<String>,
        roles: Vec<String>,
    },
    LoginSucceeded {
        user_id: Uuid,
        session_id: Uuid,
        client_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_id: Option<String>,
    },
    LoginFailed {
        /// `None` once a known user is erased (its data key is gone).
        #[serde(default)]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<Uuid>,
        failures: i64,
        /// Set when this failure locked the username (brute-force guard).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locked_until: Option<Timestamp>,
    },
    SessionRefreshed {
        user_id: Uuid,
        session_id: Uuid,
    },
    /// A spent refresh token was presented again: the session is revoked.
    RefreshTokenReused {
        user_id: Uuid,
        session_id: Uuid,
    },
    LoggedOut {
        user_id: Uuid,
        session_id: Uuid,
    },
    SessionRevoked {
        user_id: Uuid,
        session_id: Uuid,
        cause: RevokeCause,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A per-user cut-off: every listed session ends at once.
    UserSessionsRevoked {
        user_id: Uuid,
        session_ids: Vec<Uuid>,
        cause: RevokeCause,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    PasswordChanged {
        user_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kept_session_id: Option<Uuid>,
        revoked_session_ids: Vec<Uuid>,
    },
    UserLocked {
        user_id: Uuid,
        until: Timestamp,
        revoked_session_ids: Vec<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    UserUnlocked {
        user_id: Uuid,
    },
    /// A new signing key became active. Carries ids only: every instance
    /// loads key material from the store (G7).
    KeyRotated {
        kid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_kid: Option<String>,
        compromised: bool,
        /// When the previous key stops verifying (scheduled rotation).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_retire_after: Option<Timestamp>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    KeyRetired {
        kid: String,
    },
    /// The fleet's token issuer changed (`recall admin set-issuer`): new
    /// tokens carry `issuer`; those of `previous` verify until they expire.
    IssuerChanged {
        issuer: String,
        previous: String,
    },
    /// A client type's policy changed (admin API, CLI or page); sessions
    /// logging in after it get it.
    PolicyChanged {
        client_type: String,
        policy: Policy,
    },
    /// A service credential (verifier, SSF receiver) was created.
    ServiceCreated {
        service_id: Uuid,
        name: String,
    },
    /// A service credential was ended: its token stops working everywhere.
    ServiceRevoked {
        service_id: Uuid,
    },
    /// A receiver asked for a verification event on its SSF stream.
    StreamVerification {
        stream_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
    },
    /// Retention deleted the events up to `through_seq` (`count` of them);
    /// `anchor` is the hash of the last one deleted, which the first event
    /// kept links to, so the chain verifies across the cut.
    LogPruned {
        through_seq: i64,
        count: i64,
        anchor: String,
    },
    /// A signed checkpoint of the chain: the events up to `through_seq`
    /// hash to `head`. `jws` signs both with the active key (`kid`), so an
    /// outside party can pin the log with the JWKS.
    LogCheckpoint {
        through_seq: i64,
        head: String,
        kid: String,
        jws: String,
    },
    /// A user was erased: every session ended, the personal data sealed
    /// under the user's data key unreadable for good (the key destroyed).
    UserErased {
        user_id: Uuid,
        revoked_session_ids: Vec<Uuid>,
    },
}

/// Every event type name (`Event::kind`), in declaration order.
pub const KINDS: &[&str] = &[
    "user_registered",
    "login_succeeded",
    "login_failed",
    "session_refreshed",
    "refresh_token_reused",
    "logged_out",
    "session_revoked",
    "user_sessions_revoked",
    "password_changed",
    "user_locked",
    "user_unlocked",
    "key_rotated",
    "key_retired",
    "issuer_changed",
    "policy_changed",
    "service_created",
    "service_revoked",
    "stream_verification",
    "log_pruned",
    "log_checkpoint",
    "user_erased",
];

impl Event {
    /// The snake_case type name, as stored in the `type` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::UserRegistered { .. } => "user_registered",
            Event::LoginSucceeded { .. } => "login_succeeded",
            Event::LoginFailed { .. } => "login_failed",
            Event::SessionRefreshed { .. } => "session_refreshed",
            Event::RefreshTokenReused { .. } => "refresh_token_reused",
            Event::LoggedOut { .. } => "logged_out",
            Event::SessionRevoked { .. } => "session_revoked",
            Event::UserSessionsRevoked { .. } => "user_sessions_revoked",
            Event::PasswordChanged { .. } => "password_changed",
            Event::UserLocked { .. } => "user_locked",
            Event::UserUnlocked { .. } => "user_unlocked",
            Event::KeyRotated { .. } => "key_rotated",
            Event::KeyRetired { .. } => "key_retired",
            Event::IssuerChanged { .. } => "issuer_changed",
            Event::PolicyChanged { .. } => "policy_changed",
            Event::ServiceCreated { .. } => "service_created",
            Event::ServiceRevoked { .. } => "service_revoked",
            Event::StreamVerification { .. } => "stream_verification",
            Event::LogPruned { .. } => "log_pruned",
            Event::LogCheckpoint { .. } => "log_checkpoint",
            Event::UserErased { .. } => "user_erased",
        }
    }

    /// The user this event is about, if any.
    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Event::UserRegistered { user_id, .. }
            | Event::LoginSucceeded { user_id, .. }
            | Event::SessionRefreshed { user_id, .. }
            | Event::RefreshTokenReused { user_id, .. }
            | Event::LoggedOut { user_id, .. }
            | Event::SessionRevoked { user_id, .. }
            | Event::UserSessionsRevoked { user_id, .. }
            | Event::PasswordChanged { user_id, .. }
            | Event::UserLocked { user_id, .. }
            | Event::UserUnlocked { user_id }
            | Event::UserErased { user_id, .. } => Some(*user_id),
            Event::LoginFailed { user_id, .. } => *user_id,
            Event::KeyRotated { .. }
            | Event::KeyRetired { .. }
            | Event::IssuerChanged { .. }
            | Event::PolicyChanged { .. }
            | Event::ServiceCreated { .. }
            | Event::ServiceRevoked { .. }
            | Event::StreamVerification { .. }
            | Event::LogPruned { .. }
            | Event::LogCheckpoint { .. } => None,
        }
    }

    /// The session this event is about, if exactly one.
    pub fn session_id(&self) -> Option<Uuid> {
        let (Event::LoginSucceeded { session_id, .. }
        | Event::SessionRefreshed { session_id, .. }
        | Event::RefreshTokenReused { session_id, .. }
        | Event::LoggedOut { session_id, .. }
        | Event::SessionRevoked { session_id, .. }) = self
        else {
            return None;
        };
        Some(*session_id)
    }

    /// The stream (aggregate) the event belongs to.
    pub fn stream(&self) -> String {
        match self {
            Event::KeyRotated { .. } | Event::KeyRetired { .. } => "keys".to_owned(),
            Event::IssuerChanged { .. } => "fleet".to_owned(),
            Event::LogPruned { .. } | Event::LogCheckpoint { .. } => "log".to_owned(),
            Event::PolicyChanged { client_type, .. } => format!("policy:{client_type}"),
            Event::ServiceCreated { service_id, .. } | Event::ServiceRevoked { service_id } => {
                format!("service:{service_id}")
            }
            Event::StreamVerification { stream_id, .. } => format!("ssf:{stream_id}"),
            // A known user's failures are the user's; an unknown name's
            // stream is a keyed digest of it (`store::pii`), never the name.
            Event::LoginFailed {
                user_id: None,
                username,
                ..
            } => format!("username:{}", username.as_deref().unwrap_or_default()),
            other => match other.user_id() {
                Some(id) => format!("user:{id}"),
                None => "system".to_owned(),
            },
        }
    }

    /// Sessions whose access tokens this event kills.
    pub fn revoked_sessions(&self) -> Vec<Uuid> {
        match self {
            Event::RefreshTokenReused { session_id, .. }
            | Event::LoggedOut { session_id, .. }
            | Event::SessionRevoked { session_id, .. } => vec![*session_id],
            Event::UserSessionsRevoked { session_ids, .. } => session_ids.clone(),
            Event::PasswordChanged {
                revoked_session_ids,
                ..
            }
            | Event::UserLocked {
                revoked_session_ids,
                ..
            }
            | Event::UserErased {
                revoked_session_ids,
                ..
            } => revoked_session_ids.clone(),
            _ => Vec::new(),
        }
    }

    /// Reads a stored payload of the given type and version, upcasting old
    /// versions to today's shape.
    pub fn decode(kind: &str, version: i64, data: &str) -> Result<Event, String> {
        if version > EVENT_VERSION {
            return Err(format!("{kind} v{version} is newer than this build"));
        }
        // Version 1 is the only version so far: the payload is today's shape.
        let event: Event = serde_json::from_str(data).map_err(|e| format!("{kind}: {e}"))?;
        if event.kind() != kind {
            return Err(format!(
                "type column {kind} disagrees with payload {}",
                event.kind()
            ));
        }
        Ok(event)
    }
}

/// Who did it and from where: recorded with every event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// `user:<id>`, `admin-token`, `admin:<id>`, `cli`, `system`.
    pub actor: Option<String>,
    /// Client IP as seen by the serving instance.
    pub ip: Option<String>,
}

impl Meta {
    /// Meta for an action by a user from an address.
    pub fn user(user_id: Uuid, ip: Option<String>) -> Self {
        Meta {
            actor: Some(format!("user:{user_id}")),
            ip,
        }
    }

    /// Meta for something Recall did on its own.
    pub fn system() -> Self {
        Meta {
            actor: Some("system".to_owned()),
            ip: None,
        }
    }
}

/// Who wrote an event, from where, and when: what the store stamps every
/// event of one write with (its envelope but for the seq).
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub meta: Meta,
    pub at: Timestamp,
}

impl Stamp {
    /// `meta`, at `at`.
    pub fn new(meta: &Meta, at: Timestamp) -> Self {
        Stamp {
            meta: meta.clone(),
            at,
        }
    }

    /// `meta`, now.
    pub fn now(meta: &Meta) -> Self {
        Stamp::new(meta, Timestamp::now())
    }
}

/// An event as committed: its global sequence and when, by whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub seq: i64,
    pub stream: String,
    pub version: i64,
    /// Milliseconds since the Unix epoch.
    pub at: Timestamp,
    pub actor: Option<String>,
    pub ip: Option<String>,
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let e = Event::UserLocked {
            user_id: Uuid::now_v7(),
            until: Timestamp::from_ms(42),
            revoked_session_ids: vec![Uuid::now_v7()],
            reason: Some("stolen laptop".into()),
        };
        let data = serde_json::to_string(&e).unwrap();
        assert_eq!(Event::decode(e.kind(), 1, &data).unwrap(), e);
        assert!(Event::decode("user_unlocked", 1, &data).is_err());
        assert!(Event::decode(e.kind(), 99, &data).is_err());
    }
}
