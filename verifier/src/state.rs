//! The revocation state: a pure, deterministic fold of revocation items.
//! Recall folds its own log through it and every verifier folds the feed
//! through it, so the two can never disagree. It holds only what can still
//! reject a token (G8): revoked sessions until every access token they
//! could have is expired, per-user cut-offs, active locks, key statuses.
//! Times are Unix milliseconds.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Lifecycle of a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Signs new tokens and verifies.
    Active,
    /// Verifies tokens it signed before a scheduled rotation, until retired.
    Verifying,
    /// No token of it can still be valid.
    Retired,
    /// Leaked: its tokens are rejected at once.
    Revoked,
}

impl KeyStatus {
    /// The API name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Verifying => "verifying",
            KeyStatus::Retired => "retired",
            KeyStatus::Revoked => "revoked",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<KeyStatus> {
        Some(match s {
            "active" => KeyStatus::Active,
            "verifying" => KeyStatus::Verifying,
            "retired" => KeyStatus::Retired,
            "revoked" => KeyStatus::Revoked,
            _ => return None,
        })
    }
}

/// Whether a verifying key whose retirement is due at `retire_after` (ms)
/// is retired at `now` (ms).
pub fn retires(retire_after: Option<i64>, now: i64) -> bool {
    retire_after.is_some_and(|at| at <= now)
}

/// What a revocation item says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Session `sid` (of user `sub`) ended: its tokens are dead.
    SessionRevoked,
    /// Every token of user `sub` issued before `before` is dead.
    UserCutoff,
    /// User `sub` is locked until `until`.
    UserLocked,
    /// User `sub`'s lock was lifted.
    UserUnlocked,
    /// Key `kid` has status `status` (verifying: until `until`).
    KeyStatus,
}

/// One item of the revocation feed: ids only, never a username or an IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The log event it comes from (0 for an item describing standing
    /// state, such as a lock still in force, in a window snapshot).
    pub seq: i64,
    /// When it happened (Unix ms).
    pub at: i64,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<Uuid>,
    /// A lock's end, or a verifying key's retirement (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// A cut-off: tokens issued before this (Unix ms) are dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<KeyStatus>,
}

impl Revocation {
    fn new(seq: i64, at: i64, kind: Kind) -> Self {
        Revocation {
            seq,
            at,
            kind,
            sid: None,
            sub: None,
            until: None,
            before: None,
            kid: None,
            status: None,
        }
    }

    /// Session `sid` of user `sub` ended.
    pub fn session_revoked(seq: i64, at: i64, sub: Option<Uuid>, sid: Uuid) -> Self {
        Revocation {
            sid: Some(sid),
            sub,
            ..Revocation::new(seq, at, Kind::SessionRevoked)
        }
    }

    /// User `sub` is locked until `until`.
    pub fn user_locked(seq: i64, at: i64, sub: Uuid, until: i64) -> Self {
        Revocation {
            sub: Some(sub),
            until: Some(until),
            ..Revocation::new(seq, at, Kind::UserLocked)
        }
    }

    /// User `sub`'s lock was lifted.
    pub fn user_unlocked(seq: i64, at: i64, sub: Uuid) -> Self {
        Revocation {
            sub: Some(sub),
            ..Revocation::new(seq, at, Kind::UserUnlocked)
        }
    }

    /// Tokens of user `sub` issued before `before` are dead.
    pub fn user_cutoff(seq: i64, at: i64, sub: Uuid, before: i64) -> Self {
        Revocation {
            sub: Some(sub),
            before: Some(before),
            ..Revocation::new(seq, at, Kind::UserCutoff)
        }
    }

    /// Key `kid` now has `status` (a verifying key until `until`).
    pub fn key_status(seq: i64, at: i64, kid: &str, status: KeyStatus, until: Option<i64>) -> Self {
        Revocation {
            kid: Some(kid.to_owned()),
            status: Some(status),
            until,
            ..Revocation::new(seq, at, Kind::KeyStatus)
        }
    }
}

/// Why the state rejects an otherwise valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    UnknownKey,
    KeyRevoked,
    KeyRetired,
    SessionRevoked,
    UserLocked { until: i64 },
}

/// The fold. `retention_ms` is the longest access-token lifetime plus
/// leeway: after it, nothing a revocation could reject is still valid.
#[derive(Debug, Clone)]
pub struct RevocationState {
    last_seq: i64,
    retention_ms: i64,
    /// session -> when it can be forgotten (ms).
    revoked: HashMap<Uuid, i64>,
    /// user -> (cut-off, when it can be forgotten) (ms).
    cutoffs: HashMap<Uuid, (i64, i64)>,
    /// user -> (locked until (ms), seq of the lock).
    locks: HashMap<Uuid, (i64, i64)>,
    /// user -> (seq of an unlock, when it can be forgotten): so an older
    /// lock applied late does not lock again.
    unlocks: HashMap<Uuid, (i64, i64)>,
    /// kid -> (status, retire after, seq of the event that set it).
    keys: HashMap<String, (KeyStatus, Option<i64>, i64)>,
}

impl RevocationState {
    /// An empty state that has seen nothing.
    pub fn new(retention_ms: i64) -> Self {
        RevocationState {
            last_seq: 0,
            retention_ms,
            revoked: HashMap::new(),
            cutoffs: HashMap::new(),
            locks: HashMap::new(),
            unlocks: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    /// A state from a window: the items of a window snapshot in order,
    /// standing at `head`.
    pub fn from_window(items: &[Revocation], head: i64, retention_ms: i64, now: i64) -> Self {
        let mut state = RevocationState::new(retention_ms);
        for item in items {
            state.apply_item(item);
        }
        state.last_seq = head;
        state.prune(now);
        state
    }

    /// How long a revocation is remembered (ms).
    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// The highest seq applied in order.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// Applies the items of log event `seq`. Idempotent, so an event
    /// applied early (the serving instance, G2) can be applied again in
    /// order later; `last_seq` moves only in order.
    pub fn apply(&mut self, seq: i64, items: &[Revocation]) {
        for item in items {
            self.apply_item(item);
        }
        if seq == self.last_seq + 1 {
            self.last_seq = seq;
        }
    }

    /// Applies one item. Idempotent and order-insensitive: revocations and
    /// cut-offs only grow, and a lock or a key status is the one of the
    /// latest event (by seq) that set it, so an older event applied late
    /// (an instance's own answer after a catch-up applied a newer one)
    /// cannot lift a lock or make a revoked key active again.
    pub fn apply_item(&mut self, item: &Revocation) {
        let forget_at = item.at.saturating_add(self.retention_ms);
        match item.kind {
            Kind::SessionRevoked => {
                if let Some(sid) = item.sid {
                    let entry = self.revoked.entry(sid).or_insert(forget_at);
                    *entry = (*entry).max(forget_at);
                }
            }
            Kind::UserCutoff => {
                if let (Some(sub), Some(before)) = (item.sub, item.before) {
                    let forget = before.saturating_add(self.retention_ms);
                    let entry = self.cutoffs.entry(sub).or_insert((before, forget));
                    *entry = (entry.0.max(before), entry.1.max(forget));
                }
            }
            Kind::UserLocked => {
                if let (Some(sub), Some(until)) = (item.sub, item.until) {
                    if self.lock_seq(sub) <= item.seq {
                        self.locks.insert(sub, (until, item.seq));
                    }
                }
            }
            Kind::UserUnlocked => {
                if let Some(sub) = item.sub {
                    if self.lock_seq(sub) <= item.seq {
                        self.locks.remove(&sub);
                        self.unlocks.insert(sub, (item.seq, forget_at));
                    }
                }
            }
            Kind::KeyStatus => {
                if let (Some(kid), Some(status)) = (&item.kid, item.status) {
                    let newer = self.keys.get(kid).is_some_and(|k| k.2 > item.seq);
                    if !newer {
                        let until = (status == KeyStatus::Verifying)
                            .then_some(item.until)
                            .flatten();
                        self.keys.insert(kid.clone(), (status, until, item.seq));
                    }
                }
            }
        }
    }

    /// The seq of the latest lock or unlock of `user` still remembered.
    fn lock_seq(&self, user: Uuid) -> i64 {
        let locked = self.locks.get(&user).map_or(i64::MIN, |l| l.1);
        let unlocked = self.unlocks.get(&user).map_or(i64::MIN, |u| u.0);
        locked.max(unlocked)
    }

    /// Marks everything up to `seq` as applied (after an in-order catch-up).
    pub fn advance_to(&mut self, seq: i64) {
        self.last_seq = self.last_seq.max(seq);
    }

    /// Checks a signature-valid token's key, user, session and issue time
    /// (`iat`, Unix seconds) at `now` (ms).
    pub fn check(
        &self,
        kid: &str,
        user: Uuid,
        session: Uuid,
        iat: i64,
        now: i64,
    ) -> Result<(), Rejection> {
        match self.key_status(kid, now) {
            None => return Err(Rejection::UnknownKey),
            Some(KeyStatus::Revoked) => return Err(Rejection::KeyRevoked),
            Some(KeyStatus::Retired) => return Err(Rejection::KeyRetired),
            Some(KeyStatus::Active | KeyStatus::Verifying) => {}
        }
        // Locked first: a lock also revokes the sessions, and the caller
        // should learn the account is locked (403), not merely logged out.
        if let Some(until) = self.locked_until(user, now) {
            return Err(Rejection::UserLocked { until });
        }
        if self.revoked.contains_key(&session) {
            return Err(Rejection::SessionRevoked);
        }
        if let Some((before, _)) = self.cutoffs.get(&user) {
            if iat.saturating_mul(1000) < *before {
                return Err(Rejection::SessionRevoked);
            }
        }
        Ok(())
    }

    /// The effective status of a key at `now`: a verifying key past its
    /// retirement time counts as retired even before the event lands.
    pub fn key_status(&self, kid: &str, now: i64) -> Option<KeyStatus> {
        let (status, retire_after, _) = self.keys.get(kid)?;
        match (status, retire_after) {
            (KeyStatus::Verifying, t) if retires(*t, now) => Some(KeyStatus::Retired),
            (s, _) => Some(*s),
        }
    }

    /// Whether a verifying key is past its retirement time but its
    /// retirement has not been folded yet.
    pub fn retirement_due(&self, now: i64) -> bool {
        self.keys
            .values()
            .any(|(s, t, _)| *s == KeyStatus::Verifying && retires(*t, now))
    }

    /// Every key the state knows, with its effective status.
    pub fn keys(&self, now: i64) -> Vec<(String, KeyStatus)> {
        let mut out: Vec<_> = self
            .keys
            .keys()
            .filter_map(|k| self.key_status(k, now).map(|s| (k.clone(), s)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether the state knows `kid` at all.
    pub fn knows_key(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The kid of the active key, if any.
    pub fn active_kid(&self) -> Option<&str> {
        self.keys
            .iter()
            .filter(|(_, (s, _, _))| *s == KeyStatus::Active)
            .max_by_key(|(_, (_, _, seq))| *seq)
            .map(|(k, _)| k.as_str())
    }

    /// When the user's lock ends, if locked at `now`.
    pub fn locked_until(&self, user: Uuid, now: i64) -> Option<i64> {
        self.locks
            .get(&user)
            .map(|l| l.0)
            .filter(|until| *until > now)
    }

    /// Whether a session's tokens are revoked.
    pub fn is_session_revoked(&self, session: Uuid) -> bool {
        self.revoked.contains_key(&session)
    }

    /// Forgets what can no longer reject anything (G8).
    pub fn prune(&mut self, now: i64) {
        self.revoked.retain(|_, forget_at| *forget_at > now);
        self.cutoffs.retain(|_, (_, forget_at)| *forget_at > now);
        self.locks.retain(|_, (until, _)| *until > now);
        self.unlocks.retain(|_, (_, forget_at)| *forget_at > now);
    }

    /// Sizes of the state: (revoked sessions, locks, keys).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.revoked.len(), self.locks.len(), self.keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETENTION: i64 = 330_000;

    fn given(items: &[Revocation]) -> RevocationState {
        let mut state = RevocationState::new(RETENTION);
        state.apply_item(&Revocation::key_status(0, 0, "k1", KeyStatus::Active, None));
        for (i, item) in items.iter().enumerate() {
            state.apply(i as i64 + 1, std::slice::from_ref(item));
        }
        state
    }

    #[test]
    fn a_cutoff_rejects_tokens_issued_before_it_only() {
        let (u, s) = (Uuid::now_v7(), Uuid::now_v7());
        let state = given(&[Revocation::user_cutoff(1, 1_000, u, 5_000)]);
        assert_eq!(
            state.check("k1", u, s, 4, 6_000),
            Err(Rejection::SessionRevoked)
        );
        assert_eq!(state.check("k1", u, s, 5, 6_000), Ok(()));
        assert_eq!(state.check("k1", Uuid::now_v7(), s, 4, 6_000), Ok(()));
    }

    #[test]
    fn items_round_trip_as_the_feed_writes_them() {
        let u = Uuid::now_v7();
        let item = Revocation::user_locked(7, 1_000, u, 9_000);
        let json = serde_json::to_value(&item).unwrap();
        assert_eq!(json["kind"], "user_locked");
        assert_eq!(json["until"], 9_000);
        assert!(json.get("sid").is_none(), "absent fields are left out");
        let back: Revocation = serde_json::from_value(json).unwrap();
        assert_eq!(back, item);
        let key = Revocation::key_status(8, 1, "k2", KeyStatus::Verifying, Some(5));
        assert_eq!(serde_json::to_value(&key).unwrap()["status"], "verifying");
    }

    #[test]
    fn a_window_rebuilds_the_same_state_as_the_events_did() {
        let (u, s) = (Uuid::now_v7(), Uuid::now_v7());
        let items = [
            Revocation::key_status(0, 0, "k1", KeyStatus::Active, None),
            Revocation::session_revoked(4, 1_000, Some(u), s),
        ];
        let state = RevocationState::from_window(&items, 9, RETENTION, 2_000);
        assert_eq!(state.last_seq(), 9);
        assert_eq!(
            state.check("k1", u, s, 1, 2_000),
            Err(Rejection::SessionRevoked)
        );
    }
}
