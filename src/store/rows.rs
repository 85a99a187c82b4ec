//! Row-level helpers of the store: appending events, reading rows into
//! records, and the shared read-model updates.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use uuid::Uuid;

use super::chain;
use super::pii::{self, Sealed};
use super::sql::{Later, Row, Tx, Val};
use super::{SessionRecord, StoreError, UserRecord, KEY_COLS, SESSION_COLS};
use crate::clock::Timestamp;
use crate::domain::KeyStatus;
use crate::domain::SessionTerms;
use crate::events::{Envelope, Event, Stamp, EVENT_VERSION};
use crate::keys::KeyRecord;

/// Sets one column of a user row; `NotFound` when there is no such user.
pub(super) async fn update_user(
    tx: &mut dyn Tx,
    set: &str,
    user_id: Uuid,
    value: Val,
) -> Result<(), StoreError> {
    let sql = format!("UPDATE users SET {set} WHERE id = $1");
    if tx.exec(&sql, &[user_id.into(), value]).await? == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(super) async fn commit_one(
    tx: Box<dyn Tx>,
    event: Event,
    stamp: &Stamp,
) -> Result<Envelope, StoreError> {
    commit_one_after(tx, Vec::new(), event, stamp).await
}

/// `commit_one`, with `writes` (read-model statements the event records,
/// none depending on another's result) sent with the event's insert.
pub(super) async fn commit_one_after(
    mut tx: Box<dyn Tx>,
    writes: Vec<Later>,
    event: Event,
    stamp: &Stamp,
) -> Result<Envelope, StoreError> {
    let mut envs = append_after(&mut *tx, writes, vec![event], stamp).await?;
    tx.commit().await?;
    envs.pop()
        .ok_or_else(|| StoreError::Corrupt("append returned nothing".into()))
}

/// Appends events, taking their sequence numbers last: the counter row stays
/// locked until commit, so no later seq can become visible first (G6).
pub(super) async fn append(
    tx: &mut dyn Tx,
    events: Vec<Event>,
    stamp: &Stamp,
) -> Result<Vec<Envelope>, StoreError> {
    append_after(tx, Vec::new(), events, stamp).await
}

/// `append`, with `writes` held back with the event inserts
/// (`Tx::exec_later`: no round trip of their own in a write batch).
pub(super) async fn append_after(
    tx: &mut dyn Tx,
    writes: Vec<Later>,
    events: Vec<Event>,
    stamp: &Stamp,
) -> Result<Vec<Envelope>, StoreError> {
    let (meta, at) = (&stamp.meta, stamp.at);
    let n = events.len() as i64;
    let links = tx.take_seqs(n).await?;
    let mut prev = links.prev;
    let mut statements = writes;
    let mut out = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let seq = links.last - n + 1 + i as i64;
        let Sealed { data, ip, stream } = pii::seal(tx, &event, meta).await?;
        // The order of `chain::HASHED_COLS`, then the event's own hash.
        let mut cols: Vec<Val> = vec![
            seq.into(),
            stream.as_str().into(),
            event.kind().into(),
            EVENT_VERSION.into(),
            at.into(),
            meta.actor.clone().into(),
            ip.into(),
            event.user_id().into(),
            event.session_id().into(),
            data.into(),
            prev.to_vec().into(),
        ];
        prev = chain::digest(&cols);
        cols.push(prev.to_vec().into());
        statements.push((
            "INSERT INTO events (seq, stream, type, version, at, actor, ip, user_id, session_id, data, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            cols,
        ));
        out.push(Envelope {
            seq,
            stream,
            version: EVENT_VERSION,
            at,
            actor: meta.actor.clone(),
            ip: meta.ip.clone(),
            event,
        });
    }
    tx.exec_later(statements).await?;
    if n > 0 {
        tx.set_head(prev).await?;
    }
    Ok(out)
}

/// The statement that stores a refresh token (by its hash).
pub(super) fn insert_refresh_statement(
    hash: &[u8; 32],
    session_id: Uuid,
    now: Timestamp,
) -> (&'static str, Vec<Val>) {
    let sql = "INSERT INTO refresh_tokens (hash, session_id, issued_at) VALUES ($1, $2, $3)";
    (
        sql,
        vec![hash.as_slice().into(), session_id.into(), now.into()],
    )
}

pub(super) async fn insert_key(tx: &mut dyn Tx, k: &KeyRecord) -> Result<(), StoreError> {
    tx.exec(
        &format!("INSERT INTO signing_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
        &[
            k.kid.as_str().into(),
            k.alg.as_str().into(),
            k.public_key.clone().into(),
            k.private_key_enc.clone().into(),
            k.status.as_str().into(),
            k.created_at.into(),
            Val::Null,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn query_keys(
    tx: &mut dyn Tx,
    filter: &str,
) -> Result<Vec<KeyRecord>, StoreError> {
    let sql = format!("SELECT {KEY_COLS} FROM signing_keys {filter} ORDER BY created_at DESC, kid");
    let rows = tx.query(&sql, &[]).await?;
    rows.iter()
        .map(|r| {
            Ok(KeyRecord {
                kid: r.text(0)?,
                alg: r.text(1)?,
                public_key: r.blob(2)?,
                private_key_enc: r.blob(3)?,
                status: {
                    let text = r.text(4)?;
                    KeyStatus::parse(&text)
                        .ok_or_else(|| StoreError::Corrupt(format!("key status {text:?}")))?
                },
                created_at: r.ts(5)?,
                retire_after: r.opt_ts(6)?,
            })
        })
        .collect()
}

pub(super) async fn require_user(tx: &mut dyn Tx, user_id: Uuid) -> Result<(), StoreError> {
    let rows = tx
        .query("SELECT id FROM users WHERE id = $1", &[user_id.into()])
        .await?;
    if rows.is_empty() {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(super) async fn session_in(
    tx: &mut dyn Tx,
    id: Uuid,
) -> Result<Option<SessionRecord>, StoreError> {
    let sql = format!("SELECT {SESSION_COLS} FROM sessions WHERE id = $1");
    let rows = tx.query(&sql, &[id.into()]).await?;
    rows.first().map(session).transpose()
}

pub(super) async fn revoke_session_rows(
    tx: &mut dyn Tx,
    ids: &[Uuid],
    now: Timestamp,
) -> Result<(), StoreError> {
    for id in ids {
        let sql = "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
        tx.exec(sql, &[(*id).into(), now.into()]).await?;
    }
    Ok(())
}

/// Revokes every unrevoked session of a user but `keep`; returns their ids.
pub(super) async fn revoke_all_rows(
    tx: &mut dyn Tx,
    user_id: Uuid,
    keep: Option<Uuid>,
    now: Timestamp,
) -> Result<Vec<Uuid>, StoreError> {
    let keep = keep.map(|k| k.to_string()).unwrap_or_default();
    let rows = tx
        .query(
            "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL \
             AND refresh_expires_at > $2 AND id <> $3 RETURNING id",
            &[user_id.into(), now.into(), keep.into()],
        )
        .await?;
    let mut ids = rows
        .iter()
        .map(|r| r.uuid(0))
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort();
    Ok(ids)
}

pub(super) fn first(rows: Vec<Row>) -> Result<Row, StoreError> {
    rows.into_iter()
        .next()
        .ok_or_else(|| StoreError::Corrupt("expected a row".into()))
}

pub(super) fn envelope(r: &Row) -> Result<Envelope, StoreError> {
    let kind = r.text(2)?;
    let version = r.int(3)?;
    let event = Event::decode(&kind, version, &r.text(7)?).map_err(StoreError::Corrupt)?;
    Ok(Envelope {
        seq: r.int(0)?,
        stream: r.text(1)?,
        version,
        at: r.ts(4)?,
        actor: r.opt_text(5)?,
        ip: r.opt_text(6)?,
        event,
    })
}

pub(super) fn user(r: &Row) -> Result<UserRecord, StoreError> {
    let roles = r.text(3)?;
    Ok(UserRecord {
        id: r.uuid(0)?,
        username: r.text(1)?,
        password_hash: r.text(2)?,
        roles: roles
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: r.ts(4)?,
        locked_until: r.opt_ts(5)?,
    })
}

pub(super) fn session(r: &Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: r.uuid(0)?,
        user_id: r.uuid(1)?,
        client_type: r.text(2)?,
        device_id: r.opt_text(3)?,
        ip: r.opt_text(4)?,
        user_agent: r.opt_text(5)?,
        created_at: r.ts(6)?,
        refresh_expires_at: r.ts(7)?,
        revoked_at: r.opt_ts(8)?,
        terms: match r.opt_text(9)? {
            None => SessionTerms::default(),
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("session terms: {e}")))?,
        },
    })
}

/// A session's terms as stored (NULL when there are none).
pub(super) fn terms_json(terms: &SessionTerms) -> Result<Option<String>, StoreError> {
    if *terms == SessionTerms::default() {
        return Ok(None);
    }
    serde_json::to_string(terms)
        .map(Some)
        .map_err(|e| StoreError::Query(format!("session terms: {e}")))
}

/// When the user's admin lock ends, if it is in force at `now`.
/// A refresh token spent by compare-and-swap, and what decides the
/// refresh, read in the same round trip (in a PostgreSQL write batch).
pub(super) struct Spend {
    /// This call moved `spent_at` from NULL (the CAS won).
    pub spent_now: bool,
    /// When it had been spent before, if it had.
    pub spent_at: Option<Timestamp>,
    pub issued_at: Option<Timestamp>,
    /// Its session, and until when its user is locked at `now`, if so.
    pub session: Option<(SessionRecord, Option<Timestamp>)>,
}

/// Spends the refresh token `hash` at `now` if nobody has, and reads it,
/// its session and its user's lock: two statements sent together, the
/// read after the spend.
pub(super) async fn spend_refresh(
    tx: &mut dyn Tx,
    hash: &[u8; 32],
    now: Timestamp,
) -> Result<Spend, StoreError> {
    static READ: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let cols: Vec<String> = SESSION_COLS.split(", ").map(|c| format!("s.{c}")).collect();
        format!(
            "SELECT {}, CASE WHEN u.locked_until > $2 THEN u.locked_until END, r.spent_at, r.issued_at \
             FROM refresh_tokens r LEFT JOIN sessions s ON s.id = r.session_id \
             LEFT JOIN users u ON u.id = s.user_id WHERE r.hash = $1",
            cols.join(", ")
        )
    });
    // The CAS: only one transaction can move spent_at from NULL.
    let cas = "UPDATE refresh_tokens SET spent_at = $2 WHERE hash = $1 AND spent_at IS NULL RETURNING session_id";
    let params: [Val; 2] = [hash.as_slice().into(), now.into()];
    let mut answers = tx
        .query_all(&[(cas, &params[..]), (READ.as_str(), &params[..])])
        .await?
        .into_iter();
    let (Some(spent), Some(read)) = (answers.next(), answers.next()) else {
        return Err(StoreError::Corrupt("a query went unanswered".into()));
    };
    let spent_now = !spent.is_empty();
    let Some(row) = read.first() else {
        return Ok(Spend {
            spent_now,
            spent_at: None,
            issued_at: None,
            session: None,
        });
    };
    let width = SESSION_COLS.split(", ").count();
    let session = match row.opt_uuid(0)? {
        Some(_) => Some((session(row)?, row.opt_ts(width)?)),
        None => None,
    };
    Ok(Spend {
        spent_now,
        spent_at: if spent_now {
            None
        } else {
            row.opt_ts(width + 1)?
        },
        issued_at: Some(row.ts(width + 2)?),
        session,
    })
}

pub(super) async fn locked_until(
    tx: &mut dyn Tx,
    user_id: Uuid,
    now: Timestamp,
) -> Result<Option<Timestamp>, StoreError> {
    let sql = "SELECT locked_until FROM users WHERE id = $1 AND locked_until > $2";
    let rows = tx.query(sql, &[user_id.into(), now.into()]).await?;
    rows.first().map(|r| r.ts(0)).transpose()
}
