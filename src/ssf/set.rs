//! A Security Event Token (RFC 8417) for one receiver: the claims for a
//! stream, and the media type. Signing is the keyring's (`sign_json` with
//! `SET_TYP`, Recall's active key), so receivers verify SETs with the same
//! JWKS as access tokens.
//!
//! May import: what `ssf` may (its top comment).

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::SecurityEvent;

/// The JWT `typ` of a SET (RFC 8417 section 2.3).
pub const SET_TYP: &str = "secevent+jwt";

/// A SET's `jti`: the stream, the log event and the position within it.
/// Deterministic, so a redelivery carries the same `jti` and a receiver
/// can drop duplicates (delivery is at least once).
pub fn jti(stream_id: Uuid, seq: i64, index: usize) -> String {
    format!("{stream_id}.{seq}.{index}")
}

/// The claims of the SET that carries `event` on stream `stream_id` to a
/// receiver whose audience is `aud`, issued at `iat` (seconds).
pub fn set_claims(
    event: &SecurityEvent,
    issuer: &str,
    aud: &str,
    stream_id: Uuid,
    iat: i64,
) -> Value {
    let mut events = Map::new();
    events.insert(
        event.event_type.to_owned(),
        Value::Object(event.claims.clone()),
    );
    json!({
        "iss": issuer,
        "aud": aud,
        "iat": iat,
        "jti": jti(stream_id, event.seq, event.index),
        // Every SET of one log event shares its transaction (RFC 8417 2.2).
        "txn": format!("recall:{}", event.seq),
        "sub_id": event.sub_id(),
        "events": events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssf::{Subject, SESSION_REVOKED};

    #[test]
    fn a_set_names_its_receiver_subject_and_one_event() {
        let (stream, user, session) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut claims = Map::new();
        claims.insert("initiating_entity".into(), json!("user"));
        let event = SecurityEvent {
            seq: 42,
            index: 1,
            event_type: SESSION_REVOKED,
            subject: Subject {
                user,
                session: Some(session),
            },
            claims,
            stream: None,
        };
        let set = set_claims(
            &event,
            "https://auth.example.com",
            "https://rp.example",
            stream,
            1_700_000_000,
        );
        assert_eq!(set["iss"], "https://auth.example.com");
        assert_eq!(set["aud"], "https://rp.example");
        assert_eq!(set["jti"], format!("{stream}.42.1"));
        assert_eq!(set["txn"], "recall:42");
        assert_eq!(set["sub_id"]["format"], "complex");
        let events = set["events"].as_object().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[SESSION_REVOKED]["initiating_entity"], "user");
        assert_eq!(
            jti(stream, 42, 1),
            jti(stream, 42, 1),
            "redeliveries keep their jti"
        );
        assert_ne!(jti(stream, 42, 1), jti(Uuid::now_v7(), 42, 1));
    }
}
