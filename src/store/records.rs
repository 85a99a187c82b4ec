//! The records the store reads and writes, and the outcomes of its commands.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use uuid::Uuid;

use crate::clock::Timestamp;
use crate::domain::{
    BindingRefusal, EndDecision, LockoutPolicy, RefreshDecision, RefreshFacts, RefreshRefusal,
    Reservation, SessionTerms,
};
use crate::events::Envelope;

/// A registered user as the read model holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub created_at: Timestamp,
    pub locked_until: Option<Timestamp>,
}

impl UserRecord {
    /// Whether an admin lock is in force at `now`.
    pub fn locked_at(&self, now: Timestamp) -> Option<Timestamp> {
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
    pub created_at: Timestamp,
    pub refresh_expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// Lifetimes and binding fixed at login (empty: the settings').
    pub terms: SessionTerms,
}

/// Failed-login bookkeeping for one lowercased username.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    pub failures: i64,
    pub lock_count: i64,
    pub locked_until: Option<Timestamp>,
}

/// A refresh the store carried out: the session as it is now (its new
/// expiry) and the `session_refreshed` event.
#[derive(Debug, Clone)]
pub struct Refreshed {
    pub session: SessionRecord,
    pub event: Envelope,
}

/// A refresh refused: why, the session when one was found (a binding
/// refusal needs it), and the event when the refusal recorded one (reuse
/// revokes the session).
#[derive(Debug, Clone)]
pub struct RefreshRefused {
    pub refusal: RefreshRefusal,
    pub session: Option<SessionRecord>,
    pub event: Option<Envelope>,
}

/// Whether a request may use a session, by the session's terms (`None`:
/// it may), decided by the service.
pub type BindingCheck = Box<dyn FnOnce(&SessionRecord) -> Option<BindingRefusal> + Send>;

/// The decisions a refresh runs inside its unit of work, made by the
/// service (the store only reads the facts and carries the answer out).
pub struct RefreshRules {
    /// What the facts come to (`domain::decide_refresh` with the limits).
    pub decide: Box<dyn FnOnce(&RefreshFacts) -> RefreshDecision + Send>,
    /// The binding check of the request (network, DPoP key) against the
    /// session's terms; run after the spend, before anything is written.
    pub check: BindingCheck,
}

/// The answer to a guess reservation (brute-force budget, G10).
#[derive(Debug, Clone)]
pub enum Guess {
    /// Within the budget: check the hash.
    Reserved,
    /// Locked until then; `event` when this reservation set the lock.
    Locked {
        until: Timestamp,
        event: Option<Envelope>,
    },
}

/// Whether a login may proceed, given the username's brute-force lock and
/// the user's admin lock as read in the login's transaction, at a time: the
/// service passes `domain::may_log_in`. `Err` holds when the lock ends.
pub type LoginRule = fn(Option<Timestamp>, Option<Timestamp>, Timestamp) -> Result<(), Timestamp>;

/// What ending a session comes to, given its row (None: no such session);
/// the service passes `domain::end_session` with who asks and how.
pub type EndRule = Box<dyn FnOnce(Option<&SessionRecord>) -> EndDecision + Send>;

/// Whether a failed guess locks, given the failures, the locks so far and
/// the lock in force: `Some((nth, until))` locks.
pub type FailureRule =
    fn(i64, i64, Option<Timestamp>, &LockoutPolicy, Timestamp) -> Option<(i64, Timestamp)>;

/// The brute-force rules a guess is counted by (G10): the policy and the
/// decisions of `domain::brute_force`, passed in by the service, run inside
/// the store's unit of work on the counts it read.
#[derive(Debug, Clone, Copy)]
pub struct GuessRules {
    pub policy: LockoutPolicy,
    /// A reservation, given the counts after its increment.
    pub after_reservation:
        fn(i64, i64, Option<Timestamp>, &LockoutPolicy, Timestamp) -> Reservation,
    /// A failed guess, given the counts: `Some((nth, until))` locks.
    pub after_failure: FailureRule,
}

/// The outcome of committing a login whose password was right.
#[derive(Debug, Clone)]
pub enum Login {
    /// The session exists; its event.
    Created(Envelope),
    /// A lock committed while the hash ran: no session.
    Locked { until: Timestamp },
}

/// Filters for the audit listing.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub after: i64,
    pub limit: i64,
    pub user_id: Option<Uuid>,
    pub kind: Option<String>,
}
