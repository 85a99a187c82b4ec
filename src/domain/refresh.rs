//! The refresh decision (rotating refresh tokens with theft detection):
//! every branch of what presenting a refresh token comes to.
//!
//! May import: what `domain` may (its top comment); no I/O.

use std::time::Duration;

use super::BindingRefusal;
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
    /// The session's own refresh lifetime and absolute lifetime, fixed at
    /// login (None: a session from before policies; the limits' apply).
    pub refresh_ttl: Option<Duration>,
    pub session_max: Option<Duration>,
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

/// The settings a refresh is decided by, for sessions whose terms do not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshLimits {
    /// The successor's lifetime, before the session's cap.
    pub refresh_ttl: Duration,
    /// How long a just-spent token is refused without theft detection.
    pub grace: Duration,
    /// The absolute session lifetime from login.
    pub session_max: Duration,
}

/// Why a refresh is refused: the one spelling of it, from the decision
/// through the store to the error the client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefusal {
    /// Never issued, or pruned.
    Unknown,
    /// The session was revoked, or its refresh, idle or absolute lifetime ended.
    Ended,
    /// Spent moments ago by a concurrent refresh: refused, the session kept.
    JustUsed,
    /// Spent earlier: theft assumed; the session is revoked.
    Reused,
    /// The user is locked until then.
    Locked { until: Timestamp },
    /// The request is not from where the session is bound to (nothing is
    /// written: the token is not spent).
    Elsewhere(BindingRefusal),
}

/// What a refresh comes to: rotate, the successor expiring then (capped at
/// the session's end), or a refusal.
pub type RefreshDecision = Result<Timestamp, RefreshRefusal>;

/// Decides a refresh at `now`.
pub fn decide_refresh(
    facts: &RefreshFacts,
    limits: &RefreshLimits,
    now: Timestamp,
) -> RefreshDecision {
    let Some(s) = facts.session else {
        return Err(RefreshRefusal::Unknown);
    };
    // A lock ends sessions too; say why (403 account_locked).
    if let Some(until) = s.locked_until.filter(|u| *u > now) {
        return Err(RefreshRefusal::Locked { until });
    }
    let ends_at = s
        .created_at
        .plus(s.session_max.unwrap_or(limits.session_max));
    if facts.spent_now {
        let idle = s
            .idle_timeout
            .is_some_and(|t| now.since(s.last_used_at) > t);
        if s.revoked_at.is_some() || s.refresh_expires_at <= now || ends_at <= now || idle {
            return Err(RefreshRefusal::Ended);
        }
        let expires_at = now.plus(s.refresh_ttl.unwrap_or(limits.refresh_ttl));
        return Ok(expires_at.min(ends_at));
    }
    let Some(spent_at) = facts.spent_at else {
        return Err(RefreshRefusal::Unknown);
    };
    if s.revoked_at.is_some() {
        return Err(RefreshRefusal::Ended);
    }
    if now.since(spent_at) <= limits.grace {
        return Err(RefreshRefusal::JustUsed);
    }
    Err(RefreshRefusal::Reused)
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
            refresh_ttl: None,
            session_max: None,
        }
    }

    #[test]
    fn given_a_session_idle_past_its_policy_then_dead_and_inside_it_rotates() {
        let idle = SessionFacts {
            last_used_at: at(N - 61_000),
            idle_timeout: Some(Duration::from_secs(60)),
            ..session()
        };
        assert_eq!(when(true, None, Some(idle)), Err(RefreshRefusal::Ended));
        let busy = SessionFacts {
            last_used_at: at(N - 59_000),
            ..idle
        };
        assert!(when(true, None, Some(busy)).is_ok());
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
        let limits = RefreshLimits {
            refresh_ttl: Duration::from_millis(50_000),
            grace: GRACE,
            session_max: MAX,
        };
        decide_refresh(&facts, &limits, NOW)
    }

    #[test]
    fn given_a_current_token_when_refreshed_then_it_rotates() {
        assert_eq!(when(true, None, Some(session())), Ok(at(N + 50_000)));
    }

    #[test]
    fn given_a_session_near_its_absolute_end_then_the_successor_is_capped() {
        let old = SessionFacts {
            created_at: at(N - M + 100),
            ..session()
        };
        assert_eq!(when(true, None, Some(old)), Ok(at(N + 100)));
        let ended = SessionFacts {
            created_at: at(N - M),
            ..session()
        };
        assert_eq!(when(true, None, Some(ended)), Err(RefreshRefusal::Ended));
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
        assert_eq!(when(true, None, Some(revoked)), Err(RefreshRefusal::Ended));
        assert_eq!(when(true, None, Some(expired)), Err(RefreshRefusal::Ended));
        // A spent token of a revoked session is dead, not theft.
        assert_eq!(
            when(false, Some(at(N - 60_000)), Some(revoked)),
            Err(RefreshRefusal::Ended)
        );
    }

    #[test]
    fn given_an_unknown_token_then_unknown() {
        assert_eq!(when(false, None, None), Err(RefreshRefusal::Unknown));
        assert_eq!(when(true, None, None), Err(RefreshRefusal::Unknown));
    }

    #[test]
    fn given_a_token_spent_moments_ago_then_grace_and_the_session_lives() {
        assert_eq!(
            when(false, Some(NOW.minus(GRACE)), Some(session())),
            Err(RefreshRefusal::JustUsed)
        );
    }

    #[test]
    fn given_a_token_spent_long_ago_then_reuse_revokes_the_session() {
        assert_eq!(
            when(false, Some(at(N - 10_001)), Some(session())),
            Err(RefreshRefusal::Reused)
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
                Err(RefreshRefusal::Locked { until: at(N + 5) })
            );
        }
    }
}
