//! Event payloads as the store reads them back: `Event::decode(kind,
//! version, data)` (with its upcasting of older versions), then what follows
//! a decode: the envelope, the revocation items of the event
//! (`recall::state::items`) and their fold into the revocation state.
//!
//! Input: byte 0 picks the type column (`recall::events::KINDS`), byte 1 the
//! version column and the event time, the rest is the payload (JSON).
//! A decoded event must re-encode and decode to the same event, its envelope
//! must round-trip, and folding its items must revoke every session the
//! event says it revokes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recall::clock::Timestamp;
use recall::events::{Envelope, Event, EVENT_VERSION, KINDS};
use recall::state::{items, KeyStatus, RevocationState};

const VERSIONS: [i64; 8] = [
    EVENT_VERSION,
    0,
    -1,
    EVENT_VERSION + 1,
    i64::MAX,
    i64::MIN,
    1,
    2,
];
const TIMES: [i64; 4] = [1_700_000_000_000, 0, i64::MAX, i64::MIN];
const RETENTION_MS: i64 = 330_000;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let kind = KINDS[data[0] as usize % KINDS.len()];
    let version = VERSIONS[data[1] as usize % VERSIONS.len()];
    let at = TIMES[(data[1] as usize >> 3) % TIMES.len()];
    let payload = String::from_utf8_lossy(&data[2..]);

    let Ok(event) = Event::decode(kind, version, &payload) else {
        return;
    };
    assert!(version <= EVENT_VERSION, "decoded a version from the future");
    assert_eq!(event.kind(), kind, "decoded an event of another type");
    assert!(KINDS.contains(&event.kind()));

    // Re-encode as the store writes it today, and read it back.
    let stored = serde_json::to_string(&event).expect("events serialize");
    let again = Event::decode(event.kind(), EVENT_VERSION, &stored)
        .unwrap_or_else(|e| panic!("a re-encoded event does not decode: {e}: {stored}"));
    assert_eq!(again, event, "re-encoding changed the event: {stored}");

    // The envelope, as notices and the admin event stream carry it.
    let env = Envelope {
        seq: 1,
        stream: event.stream(),
        version: EVENT_VERSION,
        at: Timestamp::from_ms(at),
        actor: Some("system".into()),
        ip: None,
        event: event.clone(),
    };
    let json = serde_json::to_vec(&env).expect("envelopes serialize");
    let back: Envelope = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("an envelope does not read back: {e}"));
    assert_eq!(back, env, "the envelope changed on a round trip");
    let _ = (event.user_id(), event.session_id());

    // Its revocation items, folded.
    let revs = items(&env);
    assert!(revs.iter().all(|r| r.seq == env.seq && r.at == env.at.ms()));
    let mut state = RevocationState::new(RETENTION_MS);
    state.apply(env.seq, &revs);
    assert_eq!(state.last_seq(), env.seq);
    for sid in event.revoked_sessions() {
        assert!(
            state.is_session_revoked(sid),
            "{kind}: session {sid} listed as revoked but not revoked after the fold"
        );
    }
    match &event {
        Event::UserLocked { user_id, until, .. } if until.ms() > i64::MIN => {
            assert_eq!(
                state.locked_until(*user_id, until.ms() - 1),
                Some(until.ms())
            );
        }
        Event::UserUnlocked { user_id } => {
            assert_eq!(state.locked_until(*user_id, i64::MIN), None);
        }
        Event::KeyRotated {
            kid, previous_kid, ..
        } if previous_kid.as_deref() != Some(kid.as_str()) => {
            assert_eq!(state.key_status(kid, i64::MIN), Some(KeyStatus::Active));
            assert_eq!(state.active_kid().is_some(), true);
        }
        Event::KeyRetired { kid } => {
            assert_eq!(state.key_status(kid, 0), Some(KeyStatus::Retired));
        }
        _ => {}
    }
    // Applying the same event again changes nothing (the fold is idempotent).
    let sizes = state.sizes();
    state.apply(env.seq, &revs);
    assert_eq!(state.sizes(), sizes, "{kind}: folding twice differs");
    state.prune(at);
});
