//! What each log event means to a receiver: zero or more security events.
//! Pure: a table-driven test proves every row of issue 12's mapping.
//!
//! May import: what `ssf` may (its top comment).

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{ACCOUNT_DISABLED, ACCOUNT_ENABLED, CREDENTIAL_CHANGE, SESSION_REVOKED, VERIFICATION};
use crate::clock::Timestamp;
use crate::events::{Envelope, Event, RevokeCause};

/// Who an event is about: the user, and the session where there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject {
    pub user: Uuid,
    pub session: Option<Uuid>,
}

impl Subject {
    /// The SET's `sub_id` (RFC 9493): the user alone as an opaque
    /// identifier, or user and session as a complex subject (SSF 1.0 3.3).
    pub fn sub_id(&self) -> Value {
        let opaque = |id: Uuid| json!({ "format": "opaque", "id": id.to_string() });
        match self.session {
            None => opaque(self.user),
            Some(session) => json!({
                "format": "complex",
                "user": opaque(self.user),
                "session": opaque(session),
            }),
        }
    }
}

/// One security event derived from the log: its type URI, its subject and
/// its event-specific claims.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityEvent {
    /// The log event it comes from.
    pub seq: i64,
    /// Its position among that log event's security events (for the `jti`).
    pub index: usize,
    pub event_type: &'static str,
    pub subject: Subject,
    pub claims: Map<String, Value>,
    /// A verification event belongs to one stream, which is its subject.
    pub stream: Option<Uuid>,
}

impl SecurityEvent {
    /// The SET's `sub_id`: the stream for a verification event, else the
    /// user (and session).
    pub fn sub_id(&self) -> Value {
        match self.stream {
            Some(stream) => json!({ "format": "opaque", "id": stream.to_string() }),
            None => self.subject.sub_id(),
        }
    }
}

/// CAEP `initiating_entity` for a revocation cause.
fn initiator(cause: RevokeCause) -> &'static str {
    match cause {
        RevokeCause::User | RevokeCause::TokenRevocation => "user",
        RevokeCause::Admin => "admin",
        RevokeCause::PasswordGuesses | RevokeCause::BindingMismatch => "policy",
    }
}

/// The common CAEP claims: when (seconds) and who started it.
fn caep(at: Timestamp, initiating: &str, reason: Option<&str>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("event_timestamp".into(), json!(at.unix_secs()));
    m.insert("initiating_entity".into(), json!(initiating));
    if let Some(r) = reason {
        m.insert("reason_admin".into(), json!({ "en": r }));
    }
    m
}

/// The security events of one log event, in a stable order.
pub fn security_events(env: &Envelope) -> Vec<SecurityEvent> {
    let mut out: Vec<(&'static str, Subject, Map<String, Value>)> = Vec::new();
    let mut stream = None;
    let at = env.at;
    let ended = |user: Uuid, sessions: &[Uuid], claims: Map<String, Value>, out: &mut Vec<_>| {
        for sid in sessions {
            let subject = Subject {
                user,
                session: Some(*sid),
            };
            out.push((SESSION_REVOKED, subject, claims.clone()));
        }
    };
    match &env.event {
        Event::LoggedOut {
            user_id,
            session_id,
        } => ended(*user_id, &[*session_id], caep(at, "user", None), &mut out),
        Event::SessionRevoked {
            user_id,
            session_id,
            cause,
            reason,
        } => {
            let claims = caep(at, initiator(*cause), reason.as_deref());
            ended(*user_id, &[*session_id], claims, &mut out);
        }
        Event::UserSessionsRevoked {
            user_id,
            session_ids,
            cause,
            reason,
        } => {
            let claims = caep(at, initiator(*cause), reason.as_deref());
            ended(*user_id, session_ids, claims, &mut out);
        }
        Event::RefreshTokenReused {
            user_id,
            session_id,
        } => {
            let claims = caep(at, "policy", Some("refresh token reuse: theft assumed"));
            ended(*user_id, &[*session_id], claims, &mut out);
        }
        Event::PasswordChanged {
            user_id,
            revoked_session_ids,
            ..
        } => {
            let mut claims = caep(at, "user", None);
            claims.insert("credential_type".into(), json!("password"));
            claims.insert("change_type".into(), json!("update"));
            let subject = Subject {
                user: *user_id,
                session: None,
            };
            out.push((CREDENTIAL_CHANGE, subject, claims));
            ended(
                *user_id,
                revoked_session_ids,
                caep(at, "user", None),
                &mut out,
            );
        }
        Event::UserLocked {
            user_id,
            revoked_session_ids,
            reason,
            ..
        } => {
            let subject = Subject {
                user: *user_id,
                session: None,
            };
            out.push((ACCOUNT_DISABLED, subject, Map::new()));
            let claims = caep(at, "admin", reason.as_deref());
            ended(*user_id, revoked_session_ids, claims, &mut out);
        }
        Event::UserUnlocked { user_id } => {
            let subject = Subject {
                user: *user_id,
                session: None,
            };
            out.push((ACCOUNT_ENABLED, subject, Map::new()));
        }
        Event::StreamVerification { stream_id, state } => {
            let mut claims = Map::new();
            if let Some(state) = state {
                claims.insert("state".into(), json!(state));
            }
            let subject = Subject {
                user: Uuid::nil(),
                session: None,
            };
            out.push((VERIFICATION, subject, claims));
            stream = Some(*stream_id);
        }
        Event::UserErased {
            user_id,
            revoked_session_ids,
        } => {
            let claims = caep(at, "admin", Some("user erased"));
            ended(*user_id, revoked_session_ids, claims, &mut out);
        }
        _ => {}
    }
    out.into_iter()
        .enumerate()
        .map(|(index, (event_type, subject, claims))| SecurityEvent {
            seq: env.seq,
            index,
            event_type,
            subject,
            claims,
            stream,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(event: Event) -> Envelope {
        Envelope {
            seq: 7,
            stream: event.stream(),
            version: 1,
            at: Timestamp::from_ms(1_700_000_000_500),
            actor: None,
            ip: None,
            event,
        }
    }

    /// (what happened, the log event, the SETs expected: type, session?)
    type Row = (&'static str, Event, Vec<(&'static str, Option<Uuid>)>);

    fn rows(u: Uuid, s: [Uuid; 3]) -> Vec<Row> {
        let revoked = |cause| Event::SessionRevoked {
            user_id: u,
            session_id: s[0],
            cause,
            reason: None,
        };
        let all = |cause| Event::UserSessionsRevoked {
            user_id: u,
            session_ids: vec![s[0], s[1]],
            cause,
            reason: Some("stolen laptop".into()),
        };
        let two = vec![(SESSION_REVOKED, Some(s[0])), (SESSION_REVOKED, Some(s[1]))];
        vec![
            (
                "logout",
                Event::LoggedOut {
                    user_id: u,
                    session_id: s[0],
                },
                vec![(SESSION_REVOKED, Some(s[0]))],
            ),
            ("logout-all", all(RevokeCause::User), two.clone()),
            (
                "logout-others",
                Event::UserSessionsRevoked {
                    user_id: u,
                    session_ids: vec![s[1]],
                    cause: RevokeCause::User,
                    reason: None,
                },
                vec![(SESSION_REVOKED, Some(s[1]))],
            ),
            (
                "session delete",
                revoked(RevokeCause::User),
                vec![(SESSION_REVOKED, Some(s[0]))],
            ),
            ("admin revoke", all(RevokeCause::Admin), two.clone()),
            (
                "admin session delete",
                revoked(RevokeCause::Admin),
                vec![(SESSION_REVOKED, Some(s[0]))],
            ),
            (
                "/oauth/revoke",
                revoked(RevokeCause::TokenRevocation),
                vec![(SESSION_REVOKED, Some(s[0]))],
            ),
            (
                "wrong current passwords",
                revoked(RevokeCause::PasswordGuesses),
                vec![(SESSION_REVOKED, Some(s[0]))],
            ),
            (
                "refresh-token reuse",
                Event::RefreshTokenReused {
                    user_id: u,
                    session_id: s[2],
                },
                vec![(SESSION_REVOKED, Some(s[2]))],
            ),
            (
                "password change",
                Event::PasswordChanged {
                    user_id: u,
                    kept_session_id: Some(s[2]),
                    revoked_session_ids: vec![s[0], s[1]],
                },
                vec![
                    (CREDENTIAL_CHANGE, None),
                    (SESSION_REVOKED, Some(s[0])),
                    (SESSION_REVOKED, Some(s[1])),
                ],
            ),
            (
                "erasure",
                Event::UserErased {
                    user_id: u,
                    revoked_session_ids: vec![s[0], s[1]],
                },
                two.clone(),
            ),
            (
                "lock",
                Event::UserLocked {
                    user_id: u,
                    until: Timestamp::from_ms(9),
                    revoked_session_ids: vec![s[0], s[1]],
                    reason: None,
                },
                vec![
                    (ACCOUNT_DISABLED, None),
                    (SESSION_REVOKED, Some(s[0])),
                    (SESSION_REVOKED, Some(s[1])),
                ],
            ),
            (
                "unlock",
                Event::UserUnlocked { user_id: u },
                vec![(ACCOUNT_ENABLED, None)],
            ),
            (
                "login",
                Event::LoginSucceeded {
                    user_id: u,
                    session_id: s[0],
                    client_type: "web".into(),
                    device_id: None,
                },
                vec![],
            ),
            (
                "refresh",
                Event::SessionRefreshed {
                    user_id: u,
                    session_id: s[0],
                },
                vec![],
            ),
            (
                "key rotation",
                Event::KeyRotated {
                    kid: "k2".into(),
                    previous_kid: Some("k1".into()),
                    compromised: true,
                    previous_retire_after: None,
                    reason: None,
                },
                vec![],
            ),
        ]
    }

    #[test]
    fn every_row_of_the_mapping() {
        let u = Uuid::now_v7();
        let s = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        for (what, event, expected) in rows(u, s) {
            let got = security_events(&env(event));
            let shape: Vec<_> = got
                .iter()
                .map(|e| (e.event_type, e.subject.session))
                .collect();
            assert_eq!(shape, expected, "{what}");
            for (i, e) in got.iter().enumerate() {
                assert_eq!((e.seq, e.index, e.subject.user), (7, i, u), "{what}");
                assert_ne!(
                    e.event_type, VERIFICATION,
                    "{what}: verification comes from a stream, not the log"
                );
                if e.event_type == SESSION_REVOKED || e.event_type == CREDENTIAL_CHANGE {
                    assert_eq!(e.claims["event_timestamp"], 1_700_000_000, "{what}");
                }
            }
        }
    }

    #[test]
    fn a_verification_request_is_its_streams_own_event() {
        let stream = Uuid::now_v7();
        let e = security_events(&env(Event::StreamVerification {
            stream_id: stream,
            state: Some("s1".into()),
        }));
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].event_type, e[0].stream), (VERIFICATION, Some(stream)));
        assert_eq!(e[0].claims["state"], "s1");
        assert_eq!(
            e[0].sub_id(),
            json!({ "format": "opaque", "id": stream.to_string() })
        );
    }

    #[test]
    fn who_started_it_follows_the_cause() {
        let (u, s) = (Uuid::now_v7(), Uuid::now_v7());
        let by = |cause| {
            let e = security_events(&env(Event::SessionRevoked {
                user_id: u,
                session_id: s,
                cause,
                reason: Some("why".into()),
            }));
            (
                e[0].claims["initiating_entity"].clone(),
                e[0].claims["reason_admin"].clone(),
            )
        };
        assert_eq!(
            by(RevokeCause::Admin),
            (json!("admin"), json!({ "en": "why" }))
        );
        assert_eq!(by(RevokeCause::User).0, json!("user"));
        assert_eq!(by(RevokeCause::TokenRevocation).0, json!("user"));
        assert_eq!(by(RevokeCause::PasswordGuesses).0, json!("policy"));
    }

    #[test]
    fn subjects_are_rfc_9493_identifiers() {
        let (u, s) = (Uuid::now_v7(), Uuid::now_v7());
        let user = Subject {
            user: u,
            session: None,
        }
        .sub_id();
        assert_eq!(user, json!({ "format": "opaque", "id": u.to_string() }));
        let both = Subject {
            user: u,
            session: Some(s),
        }
        .sub_id();
        assert_eq!(both["format"], "complex");
        assert_eq!(both["user"]["id"], u.to_string());
        assert_eq!(
            both["session"],
            json!({ "format": "opaque", "id": s.to_string() })
        );
    }
}
