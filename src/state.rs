//! The in-memory revocation state: a pure, deterministic fold of events.
//! It holds only what can still reject a token (G8): revoked sessions until
//! every access token they could have is expired, active locks, key statuses.

use crate::clock::Timestamp;
use std::collections::HashMap;

use uuid::Uuid;

use crate::events::{Envelope, Event};
use crate::store::Snapshot;

pub use crate::domain::KeyStatus;

/// Why the state rejects an otherwise valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    UnknownKey,
    KeyRevoked,
    KeyRetired,
    SessionRevoked,
    UserLocked { until: i64 },
}

/// The fold. `retention_ms` is the longest access-token lifetime plus leeway.
#[derive(Debug, Clone)]
pub struct RevocationState {
    last_seq: i64,
    retention_ms: i64,
    /// session -> when it can be forgotten (ms).
    revoked: HashMap<Uuid, i64>,
    /// user -> locked until (ms).
    locks: HashMap<Uuid, i64>,
    keys: HashMap<String, (KeyStatus, Option<i64>)>,
}

impl RevocationState {
    /// An empty state that has seen nothing.
    pub fn new(retention_ms: i64) -> Self {
        RevocationState {
            last_seq: 0,
            retention_ms,
            revoked: HashMap::new(),
            locks: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    /// Rebuilds from a window snapshot: keys and locks from the read model,
    /// then the window's events folded in order.
    pub fn from_snapshot(snapshot: &Snapshot, retention_ms: i64, now: i64) -> Self {
        let mut state = RevocationState::new(retention_ms);
        for key in &snapshot.keys {
            state
                .keys
                .insert(key.kid.clone(), (key.status, key.retire_after));
        }
        for (user, until) in &snapshot.locks {
            state.locks.insert(*user, *until);
        }
        for env in &snapshot.events {
            state.apply(env);
        }
        state.last_seq = snapshot.head;
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

    /// Applies one event. Idempotent, so an event applied early (the
    /// serving instance, G2) can be applied again in order later.
    pub fn apply(&mut self, env: &Envelope) {
        let forget_at = env.at + self.retention_ms;
        for sid in env.event.revoked_sessions() {
            let entry = self.revoked.entry(sid).or_insert(forget_at);
            *entry = (*entry).max(forget_at);
        }
        match &env.event {
            Event::UserLocked { user_id, until, .. } => {
                self.locks.insert(*user_id, *until);
            }
            Event::UserUnlocked { user_id } => {
                self.locks.remove(user_id);
            }
            Event::KeyRotated {
                kid,
                previous_kid,
                compromised,
                previous_retire_after,
                ..
            } => {
                self.keys.insert(kid.clone(), (KeyStatus::Active, None));
                if let Some(prev) = previous_kid {
                    let status = if *compromised {
                        (KeyStatus::Revoked, None)
                    } else {
                        (KeyStatus::Verifying, *previous_retire_after)
                    };
                    self.keys.insert(prev.clone(), status);
                }
            }
            Event::KeyRetired { kid } => {
                self.keys.insert(kid.clone(), (KeyStatus::Retired, None));
            }
            _ => {}
        }
        if env.seq == self.last_seq + 1 {
            self.last_seq = env.seq;
        }
    }

    /// Marks everything up to `seq` as applied (after an in-order catch-up).
    pub fn advance_to(&mut self, seq: i64) {
        self.last_seq = self.last_seq.max(seq);
    }

    /// Checks a signature-valid token's key, session and user at `now` (ms).
    pub fn check(&self, kid: &str, user: Uuid, session: Uuid, now: i64) -> Result<(), Rejection> {
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
        Ok(())
    }

    /// The effective status of a key at `now`: a verifying key past its
    /// retirement time counts as retired even before the event lands.
    pub fn key_status(&self, kid: &str, now: i64) -> Option<KeyStatus> {
        let (status, retire_after) = self.keys.get(kid)?;
        match (status, retire_after) {
            (KeyStatus::Verifying, t)
                if crate::domain::retires(t.map(Timestamp::from_ms), Timestamp::from_ms(now)) =>
            {
                Some(KeyStatus::Retired)
            }
            (s, _) => Some(*s),
        }
    }

    /// Whether a verifying key is past its retirement time but its
    /// `key_retired` event has not been folded yet.
    pub fn retirement_due(&self, now: i64) -> bool {
        self.keys.values().any(|(s, t)| {
            *s == KeyStatus::Verifying
                && crate::domain::retires(t.map(Timestamp::from_ms), Timestamp::from_ms(now))
        })
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

    /// The kid of the active key, if any.
    pub fn active_kid(&self) -> Option<&str> {
        self.keys
            .iter()
            .find(|(_, (s, _))| *s == KeyStatus::Active)
            .map(|(k, _)| k.as_str())
    }

    /// When the user's lock ends, if locked at `now`.
    pub fn locked_until(&self, user: Uuid, now: i64) -> Option<i64> {
        self.locks.get(&user).copied().filter(|until| *until > now)
    }

    /// Whether a session's tokens are revoked.
    pub fn is_session_revoked(&self, session: Uuid) -> bool {
        self.revoked.contains_key(&session)
    }

    /// Forgets what can no longer reject anything (G8).
    pub fn prune(&mut self, now: i64) {
        self.revoked.retain(|_, forget_at| *forget_at > now);
        self.locks.retain(|_, until| *until > now);
    }

    /// Sizes of the state: (revoked sessions, locks, keys).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.revoked.len(), self.locks.len(), self.keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RevokeCause;

    const RETENTION: i64 = 330_000;

    fn env(seq: i64, at: i64, event: Event) -> Envelope {
        Envelope {
            seq,
            stream: event.stream(),
            version: 1,
            at,
            actor: None,
            ip: None,
            event,
        }
    }

    fn given(events: Vec<Event>) -> RevocationState {
        let mut state = RevocationState::new(RETENTION);
        state.keys.insert("k1".into(), (KeyStatus::Active, None));
        for (i, e) in events.into_iter().enumerate() {
            state.apply(&env(i as i64 + 1, 1_000, e));
        }
        state
    }

    #[test]
    fn logout_rejects_that_session_only() {
        let (u, s1, s2) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let state = given(vec![Event::LoggedOut {
            user_id: u,
            session_id: s1,
        }]);
        assert_eq!(
            state.check("k1", u, s1, 2_000),
            Err(Rejection::SessionRevoked)
        );
        assert_eq!(state.check("k1", u, s2, 2_000), Ok(()));
        assert_eq!(state.last_seq(), 1);
    }

    #[test]
    fn user_cut_off_rejects_every_listed_session() {
        let (u, s1, s2, s3) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let state = given(vec![
            Event::UserSessionsRevoked {
                user_id: u,
                session_ids: vec![s1, s2],
                cause: RevokeCause::Admin,
                reason: None,
            },
            Event::PasswordChanged {
                user_id: u,
                kept_session_id: Some(s3),
                revoked_session_ids: vec![],
            },
        ]);
        assert!(state.check("k1", u, s1, 2_000).is_err());
        assert!(state.check("k1", u, s2, 2_000).is_err());
        assert_eq!(state.check("k1", u, s3, 2_000), Ok(()));
    }

    #[test]
    fn lock_rejects_until_it_ends_or_is_lifted() {
        let (u, s) = (Uuid::now_v7(), Uuid::now_v7());
        let locked = given(vec![Event::UserLocked {
            user_id: u,
            until: 5_000,
            revoked_session_ids: vec![],
            reason: None,
        }]);
        assert_eq!(
            locked.check("k1", u, s, 4_999),
            Err(Rejection::UserLocked { until: 5_000 })
        );
        assert_eq!(locked.check("k1", u, s, 5_000), Ok(()));
        let mut lifted = locked.clone();
        lifted.apply(&env(2, 1_000, Event::UserUnlocked { user_id: u }));
        assert_eq!(lifted.check("k1", u, s, 2_000), Ok(()));
    }

    #[test]
    fn compromised_rotation_revokes_the_old_key_and_scheduled_keeps_it() {
        let (u, s) = (Uuid::now_v7(), Uuid::now_v7());
        let rotated = |compromised| {
            given(vec![Event::KeyRotated {
                kid: "k2".into(),
                previous_kid: Some("k1".into()),
                compromised,
                previous_retire_after: (!compromised).then_some(9_000),
                reason: None,
            }])
        };
        let leaked = rotated(true);
        assert_eq!(leaked.check("k1", u, s, 2_000), Err(Rejection::KeyRevoked));
        assert_eq!(leaked.check("k2", u, s, 2_000), Ok(()));
        assert_eq!(leaked.active_kid(), Some("k2"));
        let scheduled = rotated(false);
        assert_eq!(scheduled.check("k1", u, s, 2_000), Ok(()));
        assert_eq!(
            scheduled.check("k1", u, s, 9_000),
            Err(Rejection::KeyRetired)
        );
        assert_eq!(
            scheduled.check("k9", u, s, 2_000),
            Err(Rejection::UnknownKey)
        );
    }

    #[test]
    fn applying_twice_or_early_changes_nothing() {
        let (u, s) = (Uuid::now_v7(), Uuid::now_v7());
        let lock = env(
            3,
            1_000,
            Event::UserLocked {
                user_id: u,
                until: 50_000,
                revoked_session_ids: vec![s],
                reason: None,
            },
        );
        let mut early = given(vec![]);
        early.apply(&lock); // out of order: seq 3 before 1 and 2
        assert_eq!(early.last_seq(), 0);
        let unlock = env(1, 900, Event::UserUnlocked { user_id: u });
        early.apply(&unlock);
        early.apply(&env(
            2,
            950,
            Event::LoginFailed {
                username: "x".into(),
                user_id: None,
                failures: 1,
                locked_until: None,
            },
        ));
        early.apply(&lock);
        assert_eq!(early.last_seq(), 3);
        assert!(early.check("k1", u, s, 2_000).is_err());
        assert_eq!(early.locked_until(u, 2_000), Some(50_000));
    }

    #[test]
    fn pruning_forgets_revocations_once_their_tokens_expired() {
        let (u, s) = (Uuid::now_v7(), Uuid::now_v7());
        let mut state = given(vec![Event::LoggedOut {
            user_id: u,
            session_id: s,
        }]);
        state.prune(1_000 + RETENTION - 1);
        assert!(state.is_session_revoked(s));
        state.prune(1_000 + RETENTION);
        assert!(!state.is_session_revoked(s));
        assert_eq!(state.sizes(), (0, 0, 1));
    }
}
