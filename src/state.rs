//! The in-memory revocation state. The fold itself lives in the
//! `recall-verifier` crate, so Recall and every verifier share one copy of
//! it: here the log's events become the feed's revocation items
//! (`items`), and a window snapshot becomes the items a new verifier gets
//! (`window_items`). Recall folds exactly what it serves.
//!
//! May import: keys, domain, events, clock (never the store: `sync::rebuild`
//! reads it). The layers: docs/DESIGN.md, "Parts".

use uuid::Uuid;

use crate::clock::Timestamp;
use crate::events::{Envelope, Event};
use crate::keys::KeyRecord;

pub use recall_verifier::state::{
    retires, KeyStatus, Kind, Rejection, Revocation, RevocationState,
};

/// Events to rebuild the in-memory state from, read in one snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The head, the locks and the keys at the snapshot.
    pub standing: Standing,
    /// Events inside the revocation window, in seq order.
    pub events: Vec<Envelope>,
}

/// What outlives the revocation window, read in the same snapshot as the
/// window's events (`Store::snapshot_paged`); `sync::rebuild` folds them.
#[derive(Debug, Clone)]
pub struct Standing {
    /// The last committed seq at the snapshot.
    pub head: i64,
    /// Users whose admin lock is still in force: (user, until).
    pub locks: Vec<(Uuid, Timestamp)>,
    /// Every signing key not yet retired.
    pub keys: Vec<KeyRecord>,
}

/// The revocation items of one log event (none for most events).
pub fn items(env: &Envelope) -> Vec<Revocation> {
    let (seq, at) = (env.seq, env.at.ms());
    let user = env.event.user_id();
    let mut out: Vec<Revocation> = env
        .event
        .revoked_sessions()
        .into_iter()
        .map(|sid| Revocation::session_revoked(seq, at, user, sid))
        .collect();
    match &env.event {
        Event::UserLocked { user_id, until, .. } => {
            out.push(Revocation::user_locked(seq, at, *user_id, until.ms()));
        }
        Event::UserUnlocked { user_id } => {
            out.push(Revocation::user_unlocked(seq, at, *user_id));
        }
        Event::KeyRotated {
            kid,
            previous_kid,
            compromised,
            previous_retire_after,
            ..
        } => {
            out.push(Revocation::key_status(
                seq,
                at,
                kid,
                KeyStatus::Active,
                None,
            ));
            if let Some(prev) = previous_kid {
                out.push(if *compromised {
                    Revocation::key_status(seq, at, prev, KeyStatus::Revoked, None)
                } else {
                    Revocation::key_status(
                        seq,
                        at,
                        prev,
                        KeyStatus::Verifying,
                        previous_retire_after.map(Timestamp::ms),
                    )
                });
            }
        }
        Event::KeyRetired { kid } => {
            out.push(Revocation::key_status(
                seq,
                at,
                kid,
                KeyStatus::Retired,
                None,
            ));
        }
        _ => {}
    }
    out
}

/// The items of a window snapshot, in fold order: the standing key
/// statuses and locks (seq 0), then the window's events.
pub fn window_items(snapshot: &Snapshot, now: Timestamp) -> Vec<Revocation> {
    let mut out = standing_items(&snapshot.standing, now);
    for env in &snapshot.events {
        out.extend(items(env));
    }
    out
}

/// The key statuses and locks in force, as seq-0 items (they come first).
pub fn standing_items(standing: &Standing, now: Timestamp) -> Vec<Revocation> {
    let now = now.ms();
    let mut out: Vec<Revocation> = standing
        .keys
        .iter()
        .map(|k| {
            Revocation::key_status(0, now, &k.kid, k.status, k.retire_after.map(Timestamp::ms))
        })
        .collect();
    out.extend(
        standing
            .locks
            .iter()
            .map(|(user, until)| Revocation::user_locked(0, now, *user, until.ms())),
    );
    out
}

/// Rebuilds the state from a window snapshot.
pub fn from_snapshot(snapshot: &Snapshot, retention_ms: i64, now: Timestamp) -> RevocationState {
    RevocationState::from_window(
        &window_items(snapshot, now),
        snapshot.standing.head,
        retention_ms,
        now.ms(),
    )
}

/// Folding log events into the shared state.
pub trait EventFold {
    /// Applies one log event (idempotent; `last_seq` moves only in order).
    fn apply_event(&mut self, env: &Envelope);
}

impl EventFold for RevocationState {
    fn apply_event(&mut self, env: &Envelope) {
        self.apply(env.seq, &items(env));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RevokeCause;
    use uuid::Uuid;

    const RETENTION: i64 = 330_000;

    fn env(seq: i64, at: i64, event: Event) -> Envelope {
        Envelope {
            seq,
            stream: event.stream(),
            version: 1,
            at: Timestamp::from_ms(at),
            actor: None,
            ip: None,
            event,
        }
    }

    fn given(events: Vec<Event>) -> RevocationState {
        let mut state = RevocationState::new(RETENTION);
        state.apply_item(&Revocation::key_status(0, 0, "k1", KeyStatus::Active, None));
        for (i, e) in events.into_iter().enumerate() {
            state.apply_event(&env(i as i64 + 1, 1_000, e));
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
            state.check("k1", u, s1, 0, 2_000),
            Err(Rejection::SessionRevoked)
        );
        assert_eq!(state.check("k1", u, s2, 0, 2_000), Ok(()));
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
        assert!(state.check("k1", u, s1, 0, 2_000).is_err());
        assert!(state.check("k1", u, s2, 0, 2_000).is_err());
        assert_eq!(state.check("k1", u, s3, 0, 2_000), Ok(()));
    }

    #[test]
    fn given_an_erasure_then_its_sessions_are_rejected_and_others_are_not() {
        let (u, s1, s2, other) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let state = given(vec![Event::UserErased {
            user_id: u,
            revoked_session_ids: vec![s1, s2],
        }]);
        assert!(state.check("k1", u, s1, 0, 2_000).is_err());
        assert!(state.check("k1", u, s2, 0, 2_000).is_err());
        assert_eq!(state.check("k1", other, Uuid::now_v7(), 0, 2_000), Ok(()));
    }

    #[test]
    fn lock_rejects_until_it_ends_or_is_lifted() {
        let (u, s) = (Uuid::now_v7(), Uuid::now_v7());
        let locked = given(vec![Event::UserLocked {
            user_id: u,
            until: Timestamp::from_ms(5_000),
            revoked_session_ids: vec![],
            reason: None,
        }]);
        assert_eq!(
            locked.check("k1", u, s, 0, 4_999),
            Err(Rejection::UserLocked { until: 5_000 })
        );
        assert_eq!(locked.check("k1", u, s, 0, 5_000), Ok(()));
        let mut lifted = locked.clone();
        lifted.apply_event(&env(2, 1_000, Event::UserUnlocked { user_id: u }));
        assert_eq!(lifted.check("k1", u, s, 0, 2_000), Ok(()));
    }

    #[test]
    fn compromised_rotation_revokes_the_old_key_and_scheduled_keeps_it() {
        let (u, s) = (Uuid::now_v7(), Uuid::now_v7());
        let rotated = |compromised| {
            given(vec![Event::KeyRotated {
                kid: "k2".into(),
                previous_kid: Some("k1".into()),
                compromised,
                previous_retire_after: (!compromised).then_some(Timestamp::from_ms(9_000)),
                reason: None,
            }])
        };
        let leaked = rotated(true);
        assert_eq!(
            leaked.check("k1", u, s, 0, 2_000),
            Err(Rejection::KeyRevoked)
        );
        assert_eq!(leaked.check("k2", u, s, 0, 2_000), Ok(()));
        assert_eq!(leaked.active_kid(), Some("k2"));
        let scheduled = rotated(false);
        assert_eq!(scheduled.check("k1", u, s, 0, 2_000), Ok(()));
        assert_eq!(
            scheduled.check("k1", u, s, 0, 9_000),
            Err(Rejection::KeyRetired)
        );
        assert_eq!(
            scheduled.check("k9", u, s, 0, 2_000),
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
                until: Timestamp::from_ms(50_000),
                revoked_session_ids: vec![s],
                reason: None,
            },
        );
        let mut early = given(vec![]);
        early.apply_event(&lock); // out of order: seq 3 before 1 and 2
        assert_eq!(early.last_seq(), 0);
        let unlock = env(1, 900, Event::UserUnlocked { user_id: u });
        early.apply_event(&unlock);
        early.apply_event(&env(
            2,
            950,
            Event::LoginFailed {
                username: Some("x".into()),
                user_id: None,
                failures: 1,
                locked_until: None,
            },
        ));
        early.apply_event(&lock);
        assert_eq!(early.last_seq(), 3);
        assert!(early.check("k1", u, s, 0, 2_000).is_err());
        assert_eq!(early.locked_until(u, 2_000), Some(50_000));
    }

    /// Two writes committed at once on one instance: the second's answer
    /// applies it early, a catch-up applies both in order, then the first's
    /// answer applies the first again, late. It must undo nothing: before,
    /// the late rotation made its key active again beside the newer one
    /// (logins answered 500 until restart; found by the random-reset test),
    /// and a late unlock would have lifted a newer lock.
    #[test]
    fn an_older_event_applied_late_undoes_nothing() {
        let rotation = |seq, kid: &str, previous: &str| {
            env(
                seq,
                1_000,
                Event::KeyRotated {
                    kid: kid.into(),
                    previous_kid: Some(previous.into()),
                    compromised: true,
                    previous_retire_after: None,
                    reason: None,
                },
            )
        };
        let u = Uuid::now_v7();
        let unlock = env(3, 1_000, Event::UserUnlocked { user_id: u });
        let lock = env(
            4,
            1_000,
            Event::UserLocked {
                user_id: u,
                until: Timestamp::from_ms(50_000),
                revoked_session_ids: vec![],
                reason: None,
            },
        );
        let (first, second) = (rotation(1, "k2", "k1"), rotation(2, "k3", "k2"));
        let mut state = given(vec![]);
        state.apply_event(&second); // early, read-your-writes
        for env in [&first, &second, &unlock, &lock] {
            state.apply_event(env); // the catch-up, in order
        }
        state.apply_event(&first); // the first's own answer, late
        state.apply_event(&unlock);
        assert_eq!(state.last_seq(), 4);
        assert_eq!(state.active_kid(), Some("k3"));
        let s = Uuid::now_v7();
        assert_eq!(
            state.check("k2", u, s, 0, 2_000),
            Err(Rejection::KeyRevoked)
        );
        assert_eq!(state.locked_until(u, 2_000), Some(50_000));
        // And an older lock applied after a newer unlock does not lock.
        let v = Uuid::now_v7();
        let mut state = given(vec![]);
        state.apply_event(&env(2, 1_000, Event::UserUnlocked { user_id: v }));
        state.apply_event(&env(
            1,
            1_000,
            Event::UserLocked {
                user_id: v,
                until: Timestamp::from_ms(50_000),
                revoked_session_ids: vec![],
                reason: None,
            },
        ));
        assert_eq!(state.locked_until(v, 2_000), None);
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
