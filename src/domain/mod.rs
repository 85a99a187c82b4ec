//! The decisions: pure functions from what a command read to what happens
//! (events to append, rows to change) or a refusal. No I/O: the store reads
//! the rows inside its transaction, asks here, and carries out the answer,
//! so every rule is tested in microseconds, given / when / then.
//!
//! May import: events, clock (no I/O, no store, no service). The layers:
//! docs/DESIGN.md, "Parts".

pub mod brute_force;
pub mod fleet;
pub mod keys;
pub mod locks;
pub mod policy;
pub mod refresh;
pub mod sessions;

pub use brute_force::{after_failure, after_reservation, may_log_in, LockoutPolicy, Reservation};
pub use fleet::{change_issuer, join, Configured, FleetRecord, Membership, Mismatch};
pub use keys::{retires, rotation, KeyStatus, PreviousKey};
pub use locks::{lock_until, DEFAULT_LOCK_SECS, MAX_LOCK_SECS};
pub use policy::{Binding, BindingRefusal, OnMismatch, Policy, SessionTerms, CLIENT_TYPES};
pub use refresh::{
    decide_refresh, RefreshDecision, RefreshFacts, RefreshLimits, RefreshRefusal, SessionFacts,
};
pub use sessions::{end_session, EndDecision, SessionEnd};
