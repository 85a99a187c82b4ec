//! Shared Signals (SSF 1.0, issue 12), first part: what each log event
//! means to a receiver. Every Security Event Token is derived from the
//! event log, so no path that ends a session can forget to signal it (the
//! gap found in Keycloak's transmitter, keycloak/keycloak#51376, where
//! ending a session through RFC 7009 token revocation emitted nothing).
//!
//! - `events`: the mapping from a log event to its security events (CAEP
//!   session-revoked and credential-change, RISC account-disabled and
//!   account-enabled), with the subject as RFC 9493 identifiers.
//! - `config`: a stream's configuration as Recall keeps it.
//! - `set`: a Security Event Token (RFC 8417) for one receiver, its claims
//!   and its signature (`typ: secevent+jwt`, Recall's active key).
//!
//! May import: events, domain, clock. The layers: docs/DESIGN.md, "Parts".

pub mod config;
pub mod events;
pub mod set;

pub use config::{Delivery, StreamConfig, POLL, PUSH};
pub use events::{security_events, SecurityEvent, Subject};
pub use set::{set_claims, SET_TYP};

/// CAEP: a session ended.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP: a credential (here, the password) changed.
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// RISC: the account can no longer be used (a lock).
pub const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// RISC: the account can be used again (a lock lifted).
pub const ACCOUNT_ENABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-enabled";
/// SSF: a stream verification event.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// Every event type this transmitter can deliver.
pub const SUPPORTED: [&str; 5] = [
    SESSION_REVOKED,
    CREDENTIAL_CHANGE,
    ACCOUNT_DISABLED,
    ACCOUNT_ENABLED,
    VERIFICATION,
];
