//! Given these events, when asked about a token or a session at T, then
//! this verdict and these deciding events. No store.

use super::*;
use crate::domain::KeyStatus;
use crate::events::RevokeCause;

const MIN: i64 = 60_000;

fn env(seq: i64, at: i64, event: Event) -> Envelope {
    Envelope {
        seq,
        stream: event.stream(),
        version: 1,
        at: Timestamp::from_ms(at),
        actor: Some("test".into()),
        ip: None,
        event,
    }
}

fn key(kid: &str, created: i64, status: KeyStatus) -> KeyRecord {
    KeyRecord {
        kid: kid.into(),
        alg: "EdDSA".into(),
        public_key: vec![0; 32],
        private_key_enc: vec![],
        status,
        created_at: Timestamp::from_ms(created),
        retire_after: None,
    }
}

fn rotated(kid: &str, previous: Option<&str>, compromised: bool, retire: Option<i64>) -> Event {
    Event::KeyRotated {
        kid: kid.into(),
        previous_kid: previous.map(str::to_owned),
        compromised,
        previous_retire_after: retire.map(Timestamp::from_ms),
        reason: None,
    }
}

/// A user, one session of it, and its story: key k1 from 0, the login at
/// one minute.
struct Given {
    user: Uuid,
    session: Uuid,
    /// The session's row, as the store keeps it.
    row: Option<SessionRecord>,
    keys: Vec<KeyRecord>,
    events: Vec<Envelope>,
}

impl Given {
    fn new() -> Self {
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let events = vec![
            env(1, 0, rotated("k1", None, false, None)),
            env(2, MIN, login(user, session)),
        ];
        let row = SessionRecord {
            id: session,
            user_id: user,
            client_type: "web".into(),
            device_id: None,
            ip: None,
            user_agent: None,
            created_at: Timestamp::from_ms(MIN),
            refresh_expires_at: Timestamp::from_ms(MIN + 3_600_000),
            revoked_at: None,
            terms: Default::default(),
        };
        Given {
            user,
            session,
            row: Some(row),
            keys: vec![key("k1", 0, KeyStatus::Active)],
            events,
        }
    }

    fn then(mut self, at: i64, event: Event) -> Self {
        let seq = self.events.len() as i64 + 1;
        self.events.push(env(seq, at, event));
        self
    }

    fn token(&self, kid: &str, iat_ms: i64) -> TokenFacts {
        TokenFacts {
            kid: kid.into(),
            user: self.user,
            session: self.session,
            iat: iat_ms / 1000,
            exp: iat_ms / 1000 + 300,
        }
    }

    fn ask(&self, token: Option<&TokenFacts>, at: i64) -> Validity {
        let at = Timestamp::from_ms(at);
        // As the store reads them: the user's up to T, every key event.
        let events: Vec<Envelope> = self
            .events
            .iter()
            .filter(|e| e.stream == "keys" || e.at <= at)
            .cloned()
            .collect();
        judge(&Case {
            at,
            user: self.user,
            session: self.session,
            token,
            row: self.row.as_ref(),
            lifetimes: Lifetimes {
                access_ttl: Duration::from_secs(300),
                refresh_ttl: Duration::from_secs(3_600),
                session_max: Duration::from_secs(7_200),
                idle_timeout: None,
            },
            keys: &self.keys,
            events: &events,
            pruned_lock: None,
        })
    }
}

fn login(user: Uuid, session: Uuid) -> Event {
    Event::LoginSucceeded {
        user_id: user,
        session_id: session,
        client_type: "web".into(),
        device_id: None,
    }
}

fn seqs(v: &Validity) -> Vec<i64> {
    v.decided_by.iter().map(|e| e.seq).collect()
}

#[test]
fn a_logout_ends_the_token_from_its_event_on() {
    let g = Given::new();
    let (user, session) = (g.user, g.session);
    let g = g.then(
        2 * MIN,
        Event::LoggedOut {
            user_id: user,
            session_id: session,
        },
    );
    let token = g.token("k1", MIN);
    let before = g.ask(Some(&token), 2 * MIN - 1);
    assert_eq!(before.verdict, Verdict::Valid);
    assert_eq!(seqs(&before), [2]);
    let after = g.ask(Some(&token), 2 * MIN);
    assert_eq!(after.verdict, Verdict::SessionRevoked);
    assert_eq!(seqs(&after), [2, 3]);
    assert_eq!(g.ask(None, 2 * MIN + 1).verdict, Verdict::SessionRevoked);
}

#[test]
fn before_iat_or_login_is_not_yet_issued_and_from_exp_on_expired() {
    let g = Given::new();
    let token = g.token("k1", MIN);
    assert_eq!(g.ask(Some(&token), MIN - 1).verdict, Verdict::NotYetIssued);
    assert_eq!(g.ask(None, MIN - 1).verdict, Verdict::NotYetIssued);
    assert_eq!(g.ask(Some(&token), MIN).verdict, Verdict::Valid);
    let exp = MIN + 300_000;
    assert_eq!(g.ask(Some(&token), exp - 1).verdict, Verdict::Valid);
    assert_eq!(g.ask(Some(&token), exp).verdict, Verdict::Expired);
    // The session: its last token expired, but it could refresh.
    let idle = g.ask(None, exp);
    assert_eq!(idle.verdict, Verdict::Expired);
    assert_eq!(seqs(&idle), [2]);
}

#[test]
fn a_lock_rejects_while_in_force_and_its_revocation_outlives_it() {
    let g = Given::new();
    let (user, session) = (g.user, g.session);
    let lock = Event::UserLocked {
        user_id: user,
        until: Timestamp::from_ms(60 * MIN),
        revoked_session_ids: vec![session],
        reason: None,
    };
    let g = g
        .then(2 * MIN, lock)
        .then(3 * MIN, Event::UserUnlocked { user_id: user });
    let token = g.token("k1", MIN);
    let locked = g.ask(Some(&token), 2 * MIN + 1);
    assert_eq!(locked.verdict, Verdict::UserLocked);
    assert_eq!(seqs(&locked), [2, 3]);
    let unlocked = g.ask(Some(&token), 3 * MIN + 1);
    assert_eq!(unlocked.verdict, Verdict::SessionRevoked);
    assert_eq!(seqs(&unlocked), [2, 3], "the lock ended the session");
}

#[test]
fn a_compromised_rotation_kills_the_keys_tokens_but_not_the_session() {
    let g = Given::new();
    let (user, session) = (g.user, g.session);
    let mut g = g.then(2 * MIN, rotated("k2", Some("k1"), true, None));
    g.keys.push(key("k2", 2 * MIN, KeyStatus::Active));
    let old = g.token("k1", MIN);
    let revoked = g.ask(Some(&old), 2 * MIN + 1);
    assert_eq!(revoked.verdict, Verdict::KeyRevoked);
    assert_eq!(seqs(&revoked), [2, 3]);
    // Its only token was the old key's: none accepted until it refreshes.
    assert_eq!(g.ask(None, 2 * MIN + 1).verdict, Verdict::KeyRevoked);
    let g = g.then(
        3 * MIN,
        Event::SessionRefreshed {
            user_id: user,
            session_id: session,
        },
    );
    assert_eq!(g.ask(None, 3 * MIN + 1).verdict, Verdict::Valid);
    assert_eq!(
        g.ask(Some(&g.token("k2", 3 * MIN)), 3 * MIN + 1).verdict,
        Verdict::Valid
    );
}

#[test]
fn a_scheduled_rotation_retires_the_old_key_when_its_tokens_are_gone() {
    let g = Given::new();
    let retire = 2 * MIN + 315_000;
    let mut g = g.then(2 * MIN, rotated("k2", Some("k1"), false, Some(retire)));
    g.keys.push(key("k2", 2 * MIN, KeyStatus::Active));
    let old = g.token("k1", 2 * MIN - 1_000);
    assert_eq!(g.ask(Some(&old), 2 * MIN + 1).verdict, Verdict::Valid);
    // The token expires first; a forged later `exp` meets the retirement.
    let long = TokenFacts {
        exp: i64::MAX / 1000,
        ..old
    };
    let retired = g.ask(Some(&long), retire);
    assert_eq!(retired.verdict, Verdict::KeyRetired);
    assert_eq!(seqs(&retired), [2, 3]);
}

#[test]
fn a_password_change_ends_the_other_sessions() {
    let g = Given::new();
    let (user, session) = (g.user, g.session);
    let g = g.then(
        2 * MIN,
        Event::PasswordChanged {
            user_id: user,
            kept_session_id: Some(Uuid::now_v7()),
            revoked_session_ids: vec![session],
        },
    );
    let v = g.ask(Some(&g.token("k1", MIN)), 2 * MIN);
    assert_eq!(v.verdict, Verdict::SessionRevoked);
    assert_eq!(seqs(&v), [2, 3]);
    let cut = g.then(
        3 * MIN,
        Event::UserSessionsRevoked {
            user_id: user,
            session_ids: vec![session],
            cause: RevokeCause::Admin,
            reason: None,
        },
    );
    assert_eq!(seqs(&cut.ask(None, 3 * MIN)), [2, 3, 4]);
}

#[test]
fn a_session_lapses_by_refresh_expiry_then_by_its_lifetime() {
    let g = Given::new();
    let (user, session) = (g.user, g.session);
    let refreshed = Event::SessionRefreshed {
        user_id: user,
        session_id: session,
    };
    let g = g.then(50 * MIN, refreshed);
    let lapsed = g.ask(None, 50 * MIN + 60 * MIN);
    assert_eq!(lapsed.verdict, Verdict::RefreshExpired);
    assert_eq!(seqs(&lapsed), [2, 3]);
    assert_eq!(g.ask(None, MIN + 120 * MIN).verdict, Verdict::LifetimeEnded);
}

#[test]
fn a_key_whose_creation_was_pruned_has_its_rows_status() {
    let g = Given::new();
    let mut g = Given {
        events: g.events[1..].to_vec(),
        ..g
    };
    assert_eq!(
        g.ask(Some(&g.token("k1", MIN)), MIN + 1).verdict,
        Verdict::Valid
    );
    g.keys[0].status = KeyStatus::Revoked;
    let v = g.ask(Some(&g.token("k1", MIN)), MIN + 1);
    assert_eq!(v.verdict, Verdict::KeyRevoked);
    assert_eq!(
        g.ask(Some(&g.token("k9", MIN)), MIN + 1).verdict,
        Verdict::UnknownKey
    );
}

#[test]
fn a_session_the_log_never_saw_is_unknown() {
    let g = Given {
        events: Vec::new(),
        row: None,
        ..Given::new()
    };
    let v = g.ask(None, MIN);
    assert_eq!(v.verdict, Verdict::UnknownSession);
    assert!(v.decided_by.is_empty());
}

#[test]
fn requests_name_the_field_they_break() {
    assert!(Subject::from_parts(None, None).is_err());
    assert!(Subject::from_parts(Some("t".into()), Some(Uuid::now_v7())).is_err());
    let ok = parse_instant("2026-01-31T12:00:00.250+01:00").unwrap();
    assert_eq!(ok.ms(), 1_769_857_200_250);
    for bad in ["", "yesterday", "2026-13-01T00:00:00Z", "2026-01-31"] {
        let e = parse_instant(bad).unwrap_err();
        assert!(e.to_string().starts_with("at:"), "{bad}: {e}");
    }
}
