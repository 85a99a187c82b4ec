//! The records the store reads and writes, and the outcomes of its commands.

use uuid::Uuid;

use crate::domain::{BindingRefusal, KeyStatus, SessionTerms};
use crate::events::Envelope;

/// A registered user as the read model holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub created_at: i64,
    pub locked_until: Option<i64>,
}

impl UserRecord {
    /// Whether an admin lock is in force at `now`.
    pub fn locked_at(&self, now: i64) -> Option<i64> {
        self.locked_until.filter(|until| *until > now)
    }

    /// Whether the user holds the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

/// A session (one login) as the read model holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub client_type: String,
    pub device_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: i64,
    pub refresh_expires_at: i64,
    pub revoked_at: Option<i64>,
    /// Lifetimes and binding fixed at login (empty: the settings').
    pub terms: SessionTerms,
}

/// A signing key row; the private half is encrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    pub public_key: Vec<u8>,
    pub private_key_enc: Vec<u8>,
    pub status: KeyStatus,
    pub created_at: i64,
    pub retire_after: Option<i64>,
}

/// Failed-login bookkeeping for one lowercased username.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    pub failures: i64,
    pub lock_count: i64,
    pub locked_until: Option<i64>,
}

/// A session to create at login.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub client_type: String,
    pub device_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub refresh_hash: [u8; 32],
    pub refresh_expires_at: i64,
    pub terms: SessionTerms,
}

/// How a refresh attempt ended.
#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    /// The token was current: it is spent, the new one stored.
    Rotated {
        session: SessionRecord,
        event: Envelope,
    },
    /// Never issued (or already pruned).
    Unknown,
    /// The session or its refresh lifetime ended.
    Dead,
    /// Spent moments ago by a concurrent refresh: refused, session kept.
    Grace,
    /// Spent earlier: theft assumed, the session is now revoked.
    Reused { event: Envelope },
    /// The user is locked until then.
    Locked { until: i64 },
    /// The request is not from where the session is bound to: nothing
    /// was written (the token is not spent).
    Mismatch {
        session: SessionRecord,
        refusal: BindingRefusal,
    },
}

/// What a refresh may grant.
#[derive(Clone)]
pub struct RefreshTerms {
    /// The new refresh token's lifetime, before the session's cap, for a
    /// session whose terms do not say (one from before policies).
    pub refresh_ttl: std::time::Duration,
    /// How long a just-spent token is refused without theft detection.
    pub grace: std::time::Duration,
    /// Absolute session lifetime from login, likewise.
    pub session_max: std::time::Duration,
    /// The binding check of the request (network, DPoP key) against the
    /// session's terms, decided by the service; run inside the unit, after
    /// the spend and before anything is written.
    pub check: BindingCheck,
}

/// Decides whether this request may use a session, by its terms.
pub type BindingCheck =
    std::sync::Arc<dyn Fn(&SessionRecord) -> Option<BindingRefusal> + Send + Sync>;

/// The answer to a guess reservation (brute-force budget, G10).
#[derive(Debug, Clone)]
pub enum Guess {
    /// Within the budget: check the hash.
    Reserved,
    /// Locked until then; `event` when this reservation set the lock.
    Locked { until: i64, event: Option<Envelope> },
}

/// The outcome of committing a login whose password was right.
#[derive(Debug, Clone)]
pub enum Login {
    /// The session exists; its event.
    Created(Envelope),
    /// A lock committed while the hash ran: no session.
    Locked { until: i64 },
}

/// Events to rebuild the in-memory state from, read in one snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The last committed seq at the snapshot.
    pub head: i64,
    /// Events inside the revocation window, in seq order.
    pub events: Vec<Envelope>,
    /// Users whose admin lock is still in force: (user, until).
    pub locks: Vec<(Uuid, i64)>,
    /// Every signing key not yet retired.
    pub keys: Vec<KeyRecord>,
}

/// What outlives the revocation window, read in the same snapshot as the
/// window's events (`Store::snapshot_paged`).
#[derive(Debug, Clone)]
pub struct Standing {
    /// The last committed seq at the snapshot.
    pub head: i64,
    /// Users whose admin lock is still in force: (user, until).
    pub locks: Vec<(Uuid, i64)>,
    /// Every signing key not yet retired.
    pub keys: Vec<KeyRecord>,
}

/// Filters for the audit listing.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub after: i64,
    pub limit: i64,
    pub user_id: Option<Uuid>,
    pub kind: Option<String>,
}

/// How one session ends (a domain notion, re-exported here).
pub use crate::domain::SessionEnd;
