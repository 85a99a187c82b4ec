//! Forensics (G14): would this access token, or any token of this
//! session, have been accepted at a past moment T, and which events decide
//! it? Answered from the log alone, by folding the events that can matter
//! (the user's and the signing keys', stamped at or before T, in seq
//! order) through the very fold the live state uses (`RevocationState`
//! via `state::EventFold`), then asking it the live question at T.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use std::collections::BTreeMap;
use std::time::Duration;

use uuid::Uuid;

use super::{secs, Admin};
use crate::clock::{span_ms, Timestamp};
use crate::error::Error;
use crate::events::{Envelope, Event};
use crate::keys::KeyRecord;
use crate::state::{EventFold, Rejection, Revocation, RevocationState};
use crate::store::SessionRecord;
use crate::tokens::{signed_by, TokenError};

/// What a question is about: one access token, or any token of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Token(String),
    Session(Uuid),
}

impl Subject {
    /// Exactly one of a token and a session id, as a request gives them.
    pub fn from_parts(token: Option<String>, session_id: Option<Uuid>) -> Result<Self, Error> {
        match (token, session_id) {
            (Some(t), None) => Ok(Subject::Token(t)),
            (None, Some(s)) => Ok(Subject::Session(s)),
            _ => Err(Error::invalid(
                "token",
                "give exactly one of `token` and `session_id`",
            )),
        }
    }
}

/// Parses the moment asked about (RFC 3339).
pub fn parse_instant(text: &str) -> Result<Timestamp, Error> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| Timestamp::from_ms(t.timestamp_millis()))
        .map_err(|e| {
            Error::invalid(
                "at",
                format!("not an RFC 3339 time ({e}), e.g. 2026-01-31T12:00:00Z"),
            )
        })
}

/// Why a token was, or was not, accepted at the moment asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Verdict {
    Valid,
    /// Before the token's `iat` or before its session's login.
    NotYetIssued,
    /// At or after the token's `exp` (a session: its last token's).
    Expired,
    /// Neither the log nor the store knows the session.
    UnknownSession,
    SessionRevoked,
    UserLocked,
    KeyRevoked,
    KeyRetired,
    UnknownKey,
    /// A session whose refresh token (or idle timeout) had run out.
    RefreshExpired,
    /// A session past its absolute lifetime (`RECALL_SESSION_MAX_SECS`).
    LifetimeEnded,
}

impl Verdict {
    /// The snake_case name the API answers with.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::NotYetIssued => "not_yet_issued",
            Verdict::Expired => "expired",
            Verdict::UnknownSession => "unknown_session",
            Verdict::SessionRevoked => "session_revoked",
            Verdict::UserLocked => "user_locked",
            Verdict::KeyRevoked => "key_revoked",
            Verdict::KeyRetired => "key_retired",
            Verdict::UnknownKey => "unknown_key",
            Verdict::RefreshExpired => "refresh_expired",
            Verdict::LifetimeEnded => "lifetime_ended",
        }
    }

    fn of(rejection: Rejection) -> Verdict {
        match rejection {
            Rejection::UnknownKey => Verdict::UnknownKey,
            Rejection::KeyRevoked => Verdict::KeyRevoked,
            Rejection::KeyRetired => Verdict::KeyRetired,
            Rejection::SessionRevoked => Verdict::SessionRevoked,
            Rejection::UserLocked { .. } => Verdict::UserLocked,
        }
    }
}

/// The answer: the verdict, whose token it is, and the events deciding it
/// (the session's login and whatever ended it), in seq order.
#[derive(Debug, Clone)]
pub struct Validity {
    pub verdict: Verdict,
    pub session_id: Uuid,
    pub user_id: Option<Uuid>,
    pub decided_by: Vec<Envelope>,
}

impl Validity {
    /// Whether it would have been accepted.
    pub fn valid(&self) -> bool {
        self.verdict == Verdict::Valid
    }
}

/// What a signed token says that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    pub kid: String,
    pub user: Uuid,
    pub session: Uuid,
    /// `iat` and `exp`, Unix seconds.
    pub iat: i64,
    pub exp: i64,
}

/// A session's lifetimes: its terms', else the settings'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub session_max: Duration,
    pub idle_timeout: Option<Duration>,
}

/// Everything `judge` needs, read from the store.
#[derive(Debug, Clone)]
pub struct Case<'a> {
    pub at: Timestamp,
    pub user: Uuid,
    pub session: Uuid,
    /// The token asked about; None for a session question.
    pub token: Option<&'a TokenFacts>,
    /// The session's row, if the store has it.
    pub row: Option<&'a SessionRecord>,
    pub lifetimes: Lifetimes,
    /// Every signing key the store has, retired ones too.
    pub keys: &'a [KeyRecord],
    /// The user's events stamped at or before `at` and every key event,
    /// in seq order (`Store::deciding_events`).
    pub events: &'a [Envelope],
    /// When retention has pruned the log: the user's lock in force (the
    /// users row's), whose event may be gone; the log's own lock and
    /// unlock events, if any are left, decide instead.
    pub pruned_lock: Option<Timestamp>,
}

/// Remembers every revocation: nothing folded here is ever forgotten.
const FOREVER: i64 = i64::MAX;

/// Why a token it names is not ours (400, never a verdict).
fn not_ours(e: TokenError) -> Error {
    let why = match e {
        TokenError::UnknownKid => "it names a signing key this fleet never had",
        TokenError::BadSignature => "its signature does not verify: not issued by this fleet",
        TokenError::BadAlgorithm => "its algorithm is not EdDSA, so no key of this fleet signed it",
        TokenError::BadType => "not an access token (typ must be at+jwt)",
        _ => "not a well-formed access token",
    };
    Error::invalid("token", why)
}

impl Admin {
    /// Would this token (or any token of this session) have been accepted
    /// at `at`? Refused when the log no longer covers `at`.
    pub async fn validity(&self, subject: Subject, at: Timestamp) -> Result<Validity, Error> {
        let oldest = self.store.oldest_event().await?;
        let pruned = oldest.is_some_and(|(seq, _)| seq > 1);
        if let Some((seq, oldest)) = oldest {
            if seq > 1 && at < oldest {
                let rule = format!(
                    "the log no longer covers that time: its oldest event (seq {seq}) is from {}",
                    oldest.rfc3339()
                );
                return Err(Error::invalid("at", rule));
            }
        }
        let keys = self.store.keys().await?;
        let (token, session) = match subject {
            Subject::Token(t) => {
                let (claims, kid) = signed_by(&keys, &t).map_err(not_ours)?;
                let facts = TokenFacts {
                    kid,
                    user: claims.sub,
                    session: claims.sid,
                    iat: claims.iat,
                    exp: claims.exp,
                };
                let session = facts.session;
                (Some(facts), session)
            }
            Subject::Session(id) => (None, id),
        };
        let row = self.store.session(session).await?;
        let Some(user) = token
            .as_ref()
            .map(|t| t.user)
            .or(row.as_ref().map(|r| r.user_id))
        else {
            return Ok(Validity {
                verdict: Verdict::UnknownSession,
                session_id: session,
                user_id: None,
                decided_by: Vec::new(),
            });
        };
        let events = self.store.deciding_events(user, at).await?;
        let pruned_lock = match pruned {
            true => self
                .store
                .user_by_id(user)
                .await?
                .and_then(|u| u.locked_until),
            false => None,
        };
        Ok(judge(&Case {
            at,
            user,
            session,
            token: token.as_ref(),
            lifetimes: self.lifetimes(row.as_ref()),
            row: row.as_ref(),
            keys: &keys,
            events: &events,
            pruned_lock,
        }))
    }

    /// A session's lifetimes as its terms and the settings fix them.
    fn lifetimes(&self, row: Option<&SessionRecord>) -> Lifetimes {
        let terms = row.map(|r| r.terms.clone()).unwrap_or_default();
        Lifetimes {
            access_ttl: secs(row.map_or(self.settings.access_ttl_secs, |r| self.access_ttl(r))),
            refresh_ttl: terms
                .refresh_ttl()
                .unwrap_or(secs(self.settings.refresh_ttl_secs)),
            session_max: terms
                .session_max()
                .unwrap_or(secs(self.settings.session_max_secs)),
            idle_timeout: terms.idle_timeout(),
        }
    }
}

/// The statuses of keys the folded log never creates, as seq-0 items (so
/// any event about them overrides): every key has a `key_rotated` event
/// from its creation (the first one too: `previous_kid` null, reason
/// "initial key"), so only a key whose creation was pruned lands here. If
/// the log still demotes it later, it was active until then; otherwise
/// its demotion was pruned too, and its row's status is what it had.
fn standing_keys(keys: &[KeyRecord], events: &[Envelope], at: Timestamp) -> Vec<Revocation> {
    let created = |kid: &str| {
        events
            .iter()
            .any(|e| matches!(&e.event, Event::KeyRotated { kid: k, .. } if k == kid))
    };
    let demoted = |kid: &str| events.iter().any(|e| demotes(&e.event, kid));
    keys.iter()
        .filter(|k| k.created_at <= at && !created(&k.kid))
        .map(|k| {
            let (status, until) = if demoted(&k.kid) {
                (crate::state::KeyStatus::Active, None)
            } else {
                (k.status, k.retire_after.map(Timestamp::ms))
            };
            Revocation::key_status(0, k.created_at.ms(), &k.kid, status, until)
        })
        .collect()
}

/// Whether `event` ends `kid`'s time as the active key or retires it.
fn demotes(event: &Event, kid: &str) -> bool {
    match event {
        Event::KeyRotated { previous_kid, .. } => previous_kid.as_deref() == Some(kid),
        Event::KeyRetired { kid: k } => k == kid,
        _ => false,
    }
}

/// The log folded up to T, and the session's story in it.
struct Folded<'a> {
    state: RevocationState,
    login: Option<&'a Envelope>,
    /// Each token the session was given (login, refreshes) up to T: the
    /// event and the key active then, which signed it.
    issued: Vec<(&'a Envelope, Option<String>)>,
}

fn fold<'a>(case: &Case<'a>) -> Folded<'a> {
    let mut state = RevocationState::new(FOREVER);
    for item in standing_keys(case.keys, case.events, case.at) {
        state.apply_item(&item);
    }
    // A lock whose event retention pruned: in force since before the cut,
    // unless the log still says otherwise.
    let locks_left = case.events.iter().any(|e| {
        matches!(&e.event, Event::UserLocked { user_id, .. } | Event::UserUnlocked { user_id } if *user_id == case.user)
    });
    if let (Some(until), false) = (case.pruned_lock, locks_left) {
        state.apply_item(&Revocation::user_locked(0, 0, case.user, until.ms()));
    }
    let (mut login, mut issued) = (None, Vec::new());
    for env in case.events.iter().filter(|e| e.at <= case.at) {
        state.apply_event(env);
        let issues = match &env.event {
            Event::LoginSucceeded { session_id, .. } => {
                login = login.or((*session_id == case.session).then_some(env));
                *session_id == case.session
            }
            Event::SessionRefreshed { session_id, .. } => *session_id == case.session,
            _ => false,
        };
        if issues {
            issued.push((env, state.active_kid().map(str::to_owned)));
        }
    }
    Folded {
        state,
        login,
        issued,
    }
}

/// The verdict at `case.at`, and the events deciding it. Pure.
pub fn judge(case: &Case) -> Validity {
    let folded = fold(case);
    let (verdict, kid) = verdict(case, &folded);
    Validity {
        verdict,
        session_id: case.session,
        user_id: Some(case.user),
        decided_by: deciding(case, &folded, verdict, kid.as_deref()),
    }
}

/// The verdict, and the key it turned on (for `decided_by`).
fn verdict(case: &Case, f: &Folded) -> (Verdict, Option<String>) {
    let t = case.at.ms();
    let created = f.login.map(|e| e.at).or(case.row.map(|r| r.created_at));
    if let Some(token) = case.token {
        let kid = Some(token.kid.clone());
        if t < token.iat.saturating_mul(1000) || created.is_some_and(|c| case.at < c) {
            return (Verdict::NotYetIssued, kid);
        }
        if created.is_none() {
            return (Verdict::UnknownSession, kid);
        }
        if t >= token.exp.saturating_mul(1000) {
            return (Verdict::Expired, kid);
        }
        let checked = f
            .state
            .check(&token.kid, case.user, case.session, token.iat, t);
        return (checked.map_or_else(Verdict::of, |()| Verdict::Valid), kid);
    }
    let Some(created) = created else {
        return (Verdict::UnknownSession, None);
    };
    if case.at < created {
        return (Verdict::NotYetIssued, None);
    }
    // The session and its user first, with the key active at T (which
    // passes the key check by definition).
    if let Some(active) = f.state.active_kid() {
        let at_t = f.state.check(active, case.user, case.session, t / 1000, t);
        if let Err(r) = at_t {
            return (Verdict::of(r), None);
        }
    }
    // Then its tokens still unexpired at T, newest first: any accepted?
    let ttl = span_ms(case.lifetimes.access_ttl);
    let live: Vec<_> = f
        .issued
        .iter()
        .rev()
        .filter(|(e, _)| t < e.at.ms().saturating_add(ttl))
        .collect();
    let mut first_refusal = None;
    for (env, kid) in &live {
        let Some(kid) = kid else {
            first_refusal.get_or_insert((Verdict::UnknownKey, None));
            continue;
        };
        match f
            .state
            .check(kid, case.user, case.session, env.at.unix_secs(), t)
        {
            Ok(()) => return (Verdict::Valid, None),
            Err(r) => {
                first_refusal.get_or_insert((Verdict::of(r), Some(kid.clone())));
            }
        }
    }
    if let Some(refusal) = first_refusal {
        return refusal;
    }
    (lapsed(case, f, created), None)
}

/// Why a session with no unexpired token at T had none.
fn lapsed(case: &Case, f: &Folded, created: Timestamp) -> Verdict {
    let l = &case.lifetimes;
    let started = case.row.map_or(created, |r| r.created_at);
    let last = f.issued.last().map_or(created, |(e, _)| e.at);
    if case.at >= started.plus(l.session_max) {
        Verdict::LifetimeEnded
    } else if case.at >= last.plus(l.refresh_ttl)
        || l.idle_timeout
            .is_some_and(|idle| case.at.since(last) > idle)
    {
        Verdict::RefreshExpired
    } else {
        Verdict::Expired
    }
}

/// The events deciding it, in seq order: the session's login; every event
/// up to T that ended the session; the lock in force at T; the events that
/// revoked or retired the key it turned on; for a lapsed session, the last
/// token its lifetime counts from. None for a token or session that did
/// not exist yet (or at all): nothing in the log up to T is about it.
fn deciding(case: &Case, f: &Folded, verdict: Verdict, kid: Option<&str>) -> Vec<Envelope> {
    if matches!(verdict, Verdict::NotYetIssued | Verdict::UnknownSession) {
        return Vec::new();
    }
    let mut by: BTreeMap<i64, &Envelope> = BTreeMap::new();
    if let Some(login) = f.login {
        by.insert(login.seq, login);
    }
    let until_t = case.events.iter().filter(|e| e.at <= case.at);
    for env in until_t.clone() {
        if env.event.revoked_sessions().contains(&case.session) {
            by.insert(env.seq, env);
        }
    }
    if f.state.locked_until(case.user, case.at.ms()).is_some() {
        let lock = case.events.iter().rev().find(|e| {
            e.at <= case.at
                && matches!(e.event, Event::UserLocked { user_id, .. } if user_id == case.user)
        });
        if let Some(lock) = lock {
            by.insert(lock.seq, lock);
        }
    }
    let key_ended = matches!(verdict, Verdict::KeyRevoked | Verdict::KeyRetired);
    if let (true, Some(kid)) = (key_ended, kid) {
        for env in until_t.filter(|e| demotes(&e.event, kid)) {
            by.insert(env.seq, env);
        }
    }
    if matches!(verdict, Verdict::RefreshExpired | Verdict::Expired) && case.token.is_none() {
        if let Some((last, _)) = f.issued.last() {
            by.insert(last.seq, last);
        }
    }
    by.into_values().cloned().collect()
}

#[cfg(test)]
#[path = "forensics_tests.rs"]
mod tests;
