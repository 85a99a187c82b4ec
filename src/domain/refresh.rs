//! The refresh decision (rotating refresh tokens with theft detection):
//! every branch of what presenting a refresh token comes to.

use std::time::Duration;

use crate::clock::Timestamp;

/// The session a presented refresh token belongs to, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionFacts {
    pub created_at: Timestamp,
    pub refresh_expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// The user's admin lock, if any.
    pub locked_until: Option<Timestamp>,
    /// When the presented token was issued (the session's last use).
    pub last_used_at: Timestamp,
    /// The session's idle timeout, if its policy has one.
    pub idle_timeout: Option<Duration>,
}

/// What the store found for a presented refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshFacts {
    /// This request spent the token (its compare-and-swap won).
    pub spent_now: bool,
    /// When it was spent before, if it was.
    pub spent_at: Option<Timestamp>,
    /// Its session, if the token was ever issued and the session exists.
    pub session: Option<SessionFacts>,
}

/// What a refresh comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Store the successor, expiring then (capped at the session's end).
    Rotate { expires_at: Timestamp },
    /// Never issued, or pruned.
    Unknown,
    /// The session was revoked, or its refresh or absolute lifetime ended.
    Dead,
    /// Spent moments ago by a concurrent refresh: refuse, keep the session.
    Grace,
    /// Spent earlier: theft assumed; revoke the session.
    Reuse,
    /// The user is locked until then.
    Locked { until: Timestamp },
}

/// Decides a refresh at `now`. `expires_at` is the successor's expiry
/// before the cap; `grace` the concurrent-refresh grace; `session_max` the
/// absolute session lifetime from login.
pub fn decide_refresh(
    facts: &RefreshFacts,
    expires_at: Timestamp,
    grace: Duration,
    session_max: Duration,
    now: Timestamp,
) -> RefreshDecision {
    let Some(s) = facts.session else {
        return RefreshDecision::Unknown;
    };
    // A lock ends sessions too; say why (403 account_locked).
    if let Some(until) = s.locked_until.filter(|u| *u > now) {
        return RefreshDecision::Locked { until };
    }
    let ends_at = s.created_at.plus(session_max);
    if facts.spent_now {
        let idle = s
            .idle_timeout
            .is_some_and(|t| now.since(s.last_used_at) > t);
        if s.revoked_at.is_some() || s.refresh_expires_at <= now || ends_at <= now || idle {
            return RefreshDecision::Dead;
        }
        return RefreshDecision::Rotate {
            expires_at: expires_at.min(ends_at),
        };
    }
    let Some(spent_at) = facts.spent_at else {
        return RefreshDecision::Unknown;
    };
    if s.revoked_at.is_some() {
        return RefreshDecision::Dead;
    }
    if now.since(spent_at) <= grace {
        return RefreshDecision::Grace;
    }
    RefreshDecision::Reuse
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: i64 = 10_000_000;
    const NOW: Timestamp = Timestamp::from_ms(N);
    const GRACE: Duration = Duration::from_millis(10_000);
    const M: i64 = 1_000_000;
    const MAX: Duration = Duration::from_millis(M as u64);

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_ms(ms)
    }

    fn session() -> SessionFacts {
        SessionFacts {
            created_at: at(N - 1000),
            refresh_expires_at: at(N + 5000),
            revoked_at: None,
            locked_until: None,
            last_used_at: at(N - 10),
            idle_timeout: None,
        }
    }

    #[test]
    fn given_a_session_idle_past_its_policy_then_dead_and_inside_it_rotates() {
        let idle = SessionFacts {
            last_used_at: at(N - 61_000),
            idle_timeout: Some(Duration::from_secs(60)),
            ..session()
        };
        assert_eq!(when(true, None, Some(idle)), RefreshDecision::Dead);
        let busy = SessionFacts {
            last_used_at: at(N - 59_000),
            ..idle
        };
        assert!(matches!(
            when(true, None, Some(busy)),
            RefreshDecision::Rotate { .. }
        ));
    }

    fn when(
        spent_now: bool,
        spent_at: Option<Timestamp>,
        session: Option<SessionFacts>,
    ) -> RefreshDecision {
        let facts = RefreshFacts {
            spent_now,
            spent_at,
            session,
        };
        decide_refresh(&facts, at(N + 50_000), GRACE, MAX, NOW)
    }

    #[test]
    fn given_a_current_token_when_refreshed_then_it_rotates() {
        assert_eq!(
            when(true, None, Some(session())),
            RefreshDecision::Rotate {
                expires_at: at(N + 50_000)
            }
        );
    }

    #[test]
    fn given_a_session_near_its_absolute_end_then_the_successor_is_capped() {
        let old = SessionFacts {
            created_at: at(N - M + 100),
            ..session()
        };
        assert_eq!(
            when(true, None, Some(old)),
            RefreshDecision::Rotate {
                expires_at: at(N + 100)
            }
        );
        let ended = SessionFacts {
            created_at: at(N - M),
            ..session()
        };
        assert_eq!(when(true, None, Some(ended)), RefreshDecision::Dead);
    }

    #[test]
    fn given_a_revoked_or_expired_session_when_refreshed_then_it_is_dead() {
        let revoked = SessionFacts {
            revoked_at: Some(at(N - 1)),
            ..session()
        };
        let expired = SessionFacts {
            refresh_expires_at: NOW,
            ..session()
        };
        assert_eq!(when(true, None, Some(revoked)), RefreshDecision::Dead);
        assert_eq!(when(true, None, Some(expired)), RefreshDecision::Dead);
        // A spent token of a revoked session is dead, not theft.
        assert_eq!(
            when(false, Some(at(N - 60_000)), Some(revoked)),
            RefreshDecision::Dead
        );
    }

    #[test]
    fn given_an_unknown_token_then_unknown() {
        assert_eq!(when(false, None, None), RefreshDecision::Unknown);
        assert_eq!(when(true, None, None), RefreshDecision::Unknown);
    }

    #[test]
    fn given_a_token_spent_moments_ago_then_grace_and_the_session_lives() {
        assert_eq!(
            when(false, Some(NOW.minus(GRACE)), Some(session())),
            RefreshDecision::Grace
        );
    }

    #[test]
    fn given_a_token_spent_long_ago_then_reuse_revokes_the_session() {
        assert_eq!(
            when(false, Some(at(N - 10_001)), Some(session())),
            RefreshDecision::Reuse
        );
    }

    #[test]
    fn given_a_locked_user_then_locked_whatever_the_token() {
        let locked = SessionFacts {
            locked_until: Some(at(N + 5)),
            ..session()
        };
        for (spent_now, spent_at) in [(true, None), (false, Some(at(N - 1))), (false, Some(at(0)))]
        {
            assert_eq!(
                when(spent_now, spent_at, Some(locked)),
                RefreshDecision::Locked { until: at(N + 5) }
            );
        }
    }
}
