//! Reading personal data back: the keys of the users a read shows, read
//! in the same unit and never cached, so nothing read outlives an erasure.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use std::collections::HashMap;

use serde_json::Value;
use uuid::Uuid;

use super::{is_sealed, open_field, owner_in, vault_of, DataKey, Vault, MEMBER};
use crate::events::{Envelope, Event};
use crate::store::rows::envelope;
use crate::store::sql::{Row, Tx, Val};
use crate::store::{SessionRecord, StoreError};

/// The data keys of `users` that still exist, read now (never cached).
async fn read_keys(
    tx: &mut dyn Tx,
    vault: &Vault,
    users: Vec<Uuid>,
) -> Result<HashMap<Uuid, DataKey>, StoreError> {
    let mut users = users;
    users.sort();
    users.dedup();
    let mut keys = HashMap::new();
    for chunk in users.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT user_id, wrapped FROM user_keys WHERE user_id IN ({})",
            marks.join(", ")
        );
        let params: Vec<Val> = chunk.iter().map(|u| (*u).into()).collect();
        for row in tx.query(&sql, &params).await? {
            let user = row.uuid(0)?;
            if let Some(key) = vault.unwrap_key(user, &row.blob(1)?) {
                keys.insert(user, key);
            }
        }
    }
    Ok(keys)
}

/// Event rows (`EVENT_COLS`) as envelopes with their personal fields
/// opened: plaintext while the user's key exists, `None` after erasure.
pub(in crate::store) async fn open_events(
    tx: &mut dyn Tx,
    rows: Vec<Row>,
) -> Result<Vec<Envelope>, StoreError> {
    let mut envs = rows.iter().map(envelope).collect::<Result<Vec<_>, _>>()?;
    let sealed: Vec<(usize, Uuid)> = envs
        .iter()
        .enumerate()
        .filter_map(|(i, env)| {
            let member = rows[i].0.get(7).is_some_and(has_member);
            if !member && !is_sealed(&env.ip) {
                return None;
            }
            let named = match rows[i].0.get(7) {
                Some(Val::Text(data)) if member => owner_in(data),
                _ => env.ip.as_deref().and_then(owner_in),
            };
            Some((i, env.event.user_id().or(named)?))
        })
        .collect();
    if sealed.is_empty() {
        return Ok(envs);
    }
    let vault = vault_of(tx)?;
    let keys = read_keys(tx, &vault, sealed.iter().map(|(_, u)| *u).collect()).await?;
    for (i, user) in sealed {
        let key = keys.get(&user);
        let env = &mut envs[i];
        if let Some(ip) = env.ip.take() {
            env.ip = open_field(key, user, "ip", ip);
        }
        let data = rows[i].text(7)?;
        if has_member(&rows[i].0[7]) {
            env.event = open_payload(key, user, &env.event, &data)?;
        }
    }
    Ok(envs)
}

fn has_member(data: &Val) -> bool {
    matches!(data, Val::Text(t) if t.contains("\"pii\":\"pii1."))
}

/// The event of a stored payload with its sealed member opened into it
/// (or, without the key, left out: the fields read as `None`).
fn open_payload(
    key: Option<&DataKey>,
    user: Uuid,
    event: &Event,
    data: &str,
) -> Result<Event, StoreError> {
    let Some(key) = key else {
        return Ok(event.clone());
    };
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
    let mut json: Value = serde_json::from_str(data).map_err(corrupt)?;
    let Some(map) = json.as_object_mut() else {
        return Ok(event.clone());
    };
    let fields = match map.remove(MEMBER) {
        Some(Value::String(s)) => open_field(Some(key), user, "event", s),
        _ => None,
    };
    let Some(Value::Object(fields)) = fields.and_then(|f| serde_json::from_str(&f).ok()) else {
        return Ok(event.clone());
    };
    map.extend(fields);
    serde_json::from_value(json).map_err(corrupt)
}

/// Opens the sealed fields of sessions (of any users) in place.
pub(in crate::store) async fn open_sessions(
    tx: &mut dyn Tx,
    sessions: &mut [&mut SessionRecord],
) -> Result<(), StoreError> {
    let users: Vec<Uuid> = sessions
        .iter()
        .filter(|s| is_sealed(&s.ip) || is_sealed(&s.user_agent) || is_sealed(&s.device_id))
        .map(|s| s.user_id)
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    let vault = vault_of(tx)?;
    let keys = read_keys(tx, &vault, users).await?;
    for s in sessions.iter_mut() {
        let (user, key) = (s.user_id, keys.get(&s.user_id));
        let open = |field: &str, v: &mut Option<String>| {
            *v = v.take().and_then(|v| open_field(key, user, field, v));
        };
        open("device_id", &mut s.device_id);
        open("ip", &mut s.ip);
        open("user_agent", &mut s.user_agent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::seal_field;
    use super::*;

    #[test]
    fn a_sealed_payload_opens_to_the_event_or_to_none_without_the_key() {
        let (key, user): (DataKey, Uuid) = (crate::random::bytes(), Uuid::now_v7());
        let event = Event::UserRegistered {
            user_id: user,
            username: Some("mallory".into()),
            roles: vec![],
        };
        let sealed = seal_field(&key, user, "event", r#"{"username":"mallory"}"#, false);
        let data = format!(
            r#"{{"type":"user_registered","user_id":"{user}","roles":[],"pii":"{sealed}"}}"#
        );
        let stored = Event::decode("user_registered", 1, &data).unwrap();
        assert!(matches!(
            &stored,
            Event::UserRegistered { username: None, .. }
        ));
        assert_eq!(
            open_payload(Some(&key), user, &stored, &data).unwrap(),
            event
        );
        assert_eq!(open_payload(None, user, &stored, &data).unwrap(), stored);
        assert!(has_member(&Val::Text(data)));
    }
}
