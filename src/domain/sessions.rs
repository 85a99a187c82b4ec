//! Ending one session: who may, what it records, and that ending an ended
//! session changes nothing (logout is idempotent).
//!
//! May import: what `domain` may (its top comment); no I/O.

use uuid::Uuid;

use crate::events::{Event, RevokeCause};

/// How one session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The user's own logout.
    Logout,
    /// Revoked by the user from elsewhere, an admin or RFC 7009.
    Revoked {
        cause: RevokeCause,
        reason: Option<String>,
    },
}

/// What ending a session comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum EndDecision {
    /// No such session, or not the caller's (one answer for both).
    NotFound,
    /// Already ended: nothing to record.
    AlreadyEnded,
    /// End it, recording this event.
    End(Event),
}

/// Decides ending session `session_id` of `session_user` (None: no such
/// session), revoked already or not, asked by `owner` (None: an admin).
pub fn end_session(
    session_id: Uuid,
    session_user: Option<Uuid>,
    already_revoked: bool,
    owner: Option<Uuid>,
    how: SessionEnd,
) -> EndDecision {
    let Some(user_id) = session_user.filter(|u| owner.is_none_or(|o| o == *u)) else {
        return EndDecision::NotFound;
    };
    if already_revoked {
        return EndDecision::AlreadyEnded;
    }
    EndDecision::End(match how {
        SessionEnd::Logout => Event::LoggedOut {
            user_id,
            session_id,
        },
        SessionEnd::Revoked { cause, reason } => Event::SessionRevoked {
            user_id,
            session_id,
            cause,
            reason,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Uuid, Uuid, Uuid) {
        (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7())
    }

    #[test]
    fn given_my_live_session_when_i_log_out_then_logged_out() {
        let (sid, me, _) = ids();
        assert_eq!(
            end_session(sid, Some(me), false, Some(me), SessionEnd::Logout),
            EndDecision::End(Event::LoggedOut {
                user_id: me,
                session_id: sid
            })
        );
    }

    #[test]
    fn given_someone_elses_or_no_session_then_not_found_alike() {
        let (sid, me, them) = ids();
        // (whose session, who asks): someone else's, or none, mine or an admin's ask.
        for (session_user, owner) in [(Some(them), Some(me)), (None, Some(me)), (None, None)] {
            let decision = end_session(sid, session_user, false, owner, SessionEnd::Logout);
            assert_eq!(
                decision,
                EndDecision::NotFound,
                "{session_user:?} asked by {owner:?}"
            );
        }
    }

    #[test]
    fn given_an_ended_session_then_nothing_is_recorded_again() {
        let (sid, me, _) = ids();
        assert_eq!(
            end_session(sid, Some(me), true, Some(me), SessionEnd::Logout),
            EndDecision::AlreadyEnded
        );
    }

    #[test]
    fn given_an_admin_then_any_session_ends_with_the_cause() {
        let (sid, _, them) = ids();
        let how = SessionEnd::Revoked {
            cause: RevokeCause::Admin,
            reason: Some("incident".into()),
        };
        assert_eq!(
            end_session(sid, Some(them), false, None, how),
            EndDecision::End(Event::SessionRevoked {
                user_id: them,
                session_id: sid,
                cause: RevokeCause::Admin,
                reason: Some("incident".into()),
            })
        );
    }
}
