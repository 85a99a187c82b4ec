//! The event store port. `Store` holds the domain queries, written once over
//! the `Db`/`Tx` surface; `postgres` (fleet) and `sqlite` (embedded) adapt it.
//! Every write appends its event(s) and updates the read models in one
//! transaction, and takes the sequence last so commit order is seq order.

pub mod postgres;
pub mod sql;
pub mod sqlite;

use std::sync::Arc;

use uuid::Uuid;

use crate::events::{Envelope, Event, Meta, RevokeCause, EVENT_VERSION};
use sql::{Db, Row, Tx, Val};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("query failed: {0}")]
    Query(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("store configuration: {0}")]
    Config(String),
    #[error("not found")]
    NotFound,
}

/// A registered user as the read model holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub created_at: i64,
    pub locked_until: Option<i64>,
}

impl UserRecord {
    /// Whether an admin lock is in force at `now`.
    pub fn locked_at(&self, now: i64) -> Option<i64> {
        self.locked_until.filter(|until| *until > now)
    }

    /// Whether the user holds the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

/// A session (one login) as the read model holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub client_type: String,
    pub device_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: i64,
    pub refresh_expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// A signing key row; the private half is encrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    pub public_key: Vec<u8>,
    pub private_key_enc: Vec<u8>,
    pub status: String,
    pub created_at: i64,
    pub retire_after: Option<i64>,
}

/// Failed-login bookkeeping for one lowercased username.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    pub failures: i64,
    pub lock_count: i64,
    pub locked_until: Option<i64>,
}

/// The brute-force policy: after `max_failures` consecutive failures lock
/// for `base_ms`, doubling per repeat, capped at `max_ms`.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    pub max_failures: i64,
    pub base_ms: i64,
    pub max_ms: i64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 10,
            base_ms: 15 * 60 * 1000,
            max_ms: 24 * 3600 * 1000,
        }
    }
}

impl LockoutPolicy {
    /// Lock length for the `nth` lock (1-based).
    pub fn lock_ms(&self, nth: i64) -> i64 {
        let doublings = (nth - 1).clamp(0, 30) as u32;
        self.base_ms
            .saturating_mul(1i64 << doublings)
            .min(self.max_ms)
    }
}

/// A session to create at login.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub client_type: String,
    pub device_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub refresh_hash: [u8; 32],
    pub refresh_expires_at: i64,
}

/// How a refresh attempt ended.
#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    /// The token was current: it is spent, the new one stored.
    Rotated {
        session: SessionRecord,
        event: Envelope,
    },
    /// Never issued (or already pruned).
    Unknown,
    /// The session or its refresh lifetime ended.
    Dead,
    /// Spent moments ago by a concurrent refresh: refused, session kept.
    Grace,
    /// Spent earlier: theft assumed, the session is now revoked.
    Reused { event: Envelope },
    /// The user is locked until then.
    Locked { until: i64 },
}

/// Events to rebuild the in-memory state from, read in one snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The last committed seq at the snapshot.
    pub head: i64,
    /// Events inside the revocation window, in seq order.
    pub events: Vec<Envelope>,
    /// Users whose admin lock is still in force: (user, until).
    pub locks: Vec<(Uuid, i64)>,
    /// Every signing key not yet retired.
    pub keys: Vec<KeyRecord>,
}

/// Filters for the audit listing.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub after: i64,
    pub limit: i64,
    pub user_id: Option<Uuid>,
    pub kind: Option<String>,
}

const EVENT_COLS: &str = "seq, stream, type, version, at, actor, ip, data";
const USER_COLS: &str = "id, username, password_hash, roles, created_at, locked_until";
const SESSION_COLS: &str =
    "id, user_id, client_type, device_id, ip, user_agent, created_at, refresh_expires_at, revoked_at";
const KEY_COLS: &str = "kid, alg, public_key, private_key_enc, status, created_at, retire_after";

/// The event store: domain reads and writes over either adapter.
#[derive(Clone)]
pub struct Store {
    db: Arc<dyn Db>,
}

impl Store {
    /// Wraps an adapter.
    pub fn new(db: Arc<dyn Db>) -> Self {
        Store { db }
    }

    /// Opens PostgreSQL when `url` is set, else SQLite at `sqlite_path`.
    pub fn open(url: Option<&str>, sqlite_path: &std::path::Path) -> Result<Self, StoreError> {
        let db: Arc<dyn Db> = match url {
            Some(url) => Arc::new(postgres::PgDb::connect(url, 16)?),
            None => Arc::new(sqlite::SqliteDb::open(sqlite_path)?),
        };
        Ok(Store::new(db))
    }

    /// "postgres" or "sqlite".
    pub fn kind(&self) -> &'static str {
        self.db.kind()
    }

    /// Runs the migrations (safe to race).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.db.migrate().await
    }

    /// The last committed sequence number.
    pub async fn head(&self) -> Result<i64, StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        let rows = tx
            .query("SELECT last FROM recall_seq WHERE id = 1", &[])
            .await?;
        first(rows)?.int(0)
    }

    /// Up to `limit` events after `after`, oldest first.
    pub async fn read_after(&self, after: i64, limit: i64) -> Result<Vec<Envelope>, StoreError> {
        self.events(&EventFilter {
            after,
            limit,
            ..EventFilter::default()
        })
        .await
    }

    /// The audit listing: events after a cursor, optionally of one user or type.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Envelope>, StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        let sql = format!(
            "SELECT {EVENT_COLS} FROM events WHERE seq > $1 \
             AND ($2 = '' OR user_id = $2) AND ($3 = '' OR type = $3) ORDER BY seq LIMIT $4"
        );
        let user = filter.user_id.map(|u| u.to_string()).unwrap_or_default();
        let kind = filter.kind.clone().unwrap_or_default();
        let rows = tx
            .query(
                &sql,
                &[
                    filter.after.into(),
                    user.into(),
                    kind.into(),
                    filter.limit.into(),
                ],
            )
            .await?;
        rows.iter().map(envelope).collect()
    }

    /// Everything needed to rebuild the revocation state: events since
    /// `window_start` plus the locks and keys that outlive the window (G8).
    pub async fn snapshot(&self, window_start: i64, now: i64) -> Result<Snapshot, StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        let head = first(
            tx.query("SELECT last FROM recall_seq WHERE id = 1", &[])
                .await?,
        )?
        .int(0)?;
        let sql = format!("SELECT {EVENT_COLS} FROM events WHERE at >= $1 ORDER BY seq");
        let events = tx
            .query(&sql, &[window_start.into()])
            .await?
            .iter()
            .map(envelope)
            .collect::<Result<Vec<_>, _>>()?;
        let locks = tx
            .query(
                "SELECT id, locked_until FROM users WHERE locked_until > $1",
                &[now.into()],
            )
            .await?
            .iter()
            .map(|r| Ok((r.uuid(0)?, r.int(1)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let keys = query_keys(&mut *tx, "WHERE status <> 'retired'").await?;
        Ok(Snapshot {
            head,
            events,
            locks,
            keys,
        })
    }

    /// A user by lowercased username.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        let sql = format!("SELECT {USER_COLS} FROM users WHERE username = $1");
        let rows = tx.query(&sql, &[username.into()]).await?;
        rows.first().map(user).transpose()
    }

    /// A user by id.
    pub async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
        let rows = tx.query(&sql, &[id.into()]).await?;
        rows.first().map(user).transpose()
    }

    /// Creates a user; `Conflict` when the username is taken.
    pub async fn register(
        &self,
        user_id: Uuid,
        username: &str,
        password_hash: &str,
        roles: &[String],
        meta: &Meta,
        now: i64,
    ) -> Result<Envelope, StoreError> {
        let mut tx = self.db.begin().await?;
        tx.exec(
            "INSERT INTO users (id, username, password_hash, roles, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[
                user_id.into(),
                username.into(),
                password_hash.into(),
                roles.join(",").into(),
                now.into(),
            ],
        )
        .await?;
        let event = Event::UserRegistered {
            user_id,
            username: username.to_owned(),
            roles: roles.to_vec(),
        };
        commit_one(tx, event, meta, now).await
    }

    /// The brute-force counters of a username.
    pub async fn throttle(&self, username: &str) -> Result<Throttle, StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        let rows = tx
            .query(
                "SELECT failures, lock_count, locked_until FROM login_throttle WHERE username = $1",
                &[username.into()],
            )
            .await?;
        match rows.first() {
            None => Ok(Throttle::default()),
            Some(r) => Ok(Throttle {
                failures: r.int(0)?,
                lock_count: r.int(1)?,
                locked_until: r.opt_int(2)?,
            }),
        }
    }

    /// Counts a failed login; the tenth in a row locks the username.
    pub async fn login_failed(
        &self,
        username: &str,
        user_id: Option<Uuid>,
        policy: &LockoutPolicy,
        meta: &Meta,
        now: i64,
    ) -> Result<Envelope, StoreError> {
        let mut tx = self.db.begin().await?;
        let row = first(
            tx.query(
                "INSERT INTO login_throttle (username, failures, lock_count) VALUES ($1, 1, 0) \
                 ON CONFLICT (username) DO UPDATE SET failures = login_throttle.failures + 1 \
                 RETURNING failures, lock_count",
                &[username.into()],
            )
            .await?,
        )?;
        let failures = row.int(0)?;
        let mut locked_until = None;
        if failures >= policy.max_failures {
            let nth = row.int(1)? + 1;
            let until = now + policy.lock_ms(nth);
            tx.exec(
                "UPDATE login_throttle SET failures = 0, lock_count = $2, locked_until = $3 WHERE username = $1",
                &[username.into(), nth.into(), until.into()],
            )
            .await?;
            locked_until = Some(until);
        }
        let event = Event::LoginFailed {
            username: username.to_owned(),
            user_id,
            failures,
            locked_until,
        };
        commit_one(tx, event, meta, now).await
    }

    /// Creates a session with its first refresh token; clears the failure count.
    pub async fn login(
        &self,
        s: &NewSession,
        meta: &Meta,
        now: i64,
    ) -> Result<Envelope, StoreError> {
        let mut tx = self.db.begin().await?;
        tx.exec(
            "DELETE FROM login_throttle WHERE username IN (SELECT username FROM users WHERE id = $1)",
            &[s.user_id.into()],
        )
        .await?;
        tx.exec(
            &format!("INSERT INTO sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)"),
            &[
                s.id.into(),
                s.user_id.into(),
                s.client_type.as_str().into(),
                s.device_id.clone().into(),
                s.ip.clone().into(),
                s.user_agent.clone().into(),
                now.into(),
                s.refresh_expires_at.into(),
            ],
        )
        .await?;
        insert_refresh(&mut *tx, &s.refresh_hash, s.id, now).await?;
        let event = Event::LoginSucceeded {
            user_id: s.user_id,
            session_id: s.id,
            client_type: s.client_type.clone(),
            device_id: s.device_id.clone(),
        };
        commit_one(tx, event, meta, now).await
    }

    /// Spends a refresh token by compare-and-swap and stores its successor.
    pub async fn refresh(
        &self,
        old_hash: &[u8; 32],
        new_hash: &[u8; 32],
        new_expires_at: i64,
        grace_ms: i64,
        meta: &Meta,
        now: i64,
    ) -> Result<RefreshOutcome, StoreError> {
        let mut tx = self.db.begin().await?;
        // The CAS: only one transaction can move spent_at from NULL.
        let spent = tx
            .query(
                "UPDATE refresh_tokens SET spent_at = $2 WHERE hash = $1 AND spent_at IS NULL RETURNING session_id",
                &[old_hash.as_slice().into(), now.into()],
            )
            .await?;
        if spent.is_empty() {
            let rows = tx
                .query(
                    "SELECT session_id, spent_at FROM refresh_tokens WHERE hash = $1",
                    &[old_hash.as_slice().into()],
                )
                .await?;
            let Some(row) = rows.first() else {
                return Ok(RefreshOutcome::Unknown);
            };
            let session_id = row.uuid(0)?;
            let spent_at = row.int(1)?;
            let Some(session) = session_in(&mut *tx, session_id).await? else {
                return Ok(RefreshOutcome::Unknown);
            };
            if session.revoked_at.is_some() {
                return Ok(RefreshOutcome::Dead);
            }
            if now - spent_at <= grace_ms {
                return Ok(RefreshOutcome::Grace);
            }
            // Theft detection: a token spent earlier came back. Kill the session.
            revoke_session_rows(&mut *tx, &[session_id], now).await?;
            let event = Event::RefreshTokenReused {
                user_id: session.user_id,
                session_id,
            };
            let event = commit_one(tx, event, meta, now).await?;
            return Ok(RefreshOutcome::Reused { event });
        }
        let session_id = first(spent)?.uuid(0)?;
        let Some(session) = session_in(&mut *tx, session_id).await? else {
            return Ok(RefreshOutcome::Unknown);
        };
        if session.revoked_at.is_some() || session.refresh_expires_at <= now {
            return Ok(RefreshOutcome::Dead);
        }
        let locked = tx
            .query(
                "SELECT locked_until FROM users WHERE id = $1 AND locked_until > $2",
                &[session.user_id.into(), now.into()],
            )
            .await?;
        if let Some(row) = locked.first() {
            return Ok(RefreshOutcome::Locked { until: row.int(0)? });
        }
        insert_refresh(&mut *tx, new_hash, session_id, now).await?;
        tx.exec(
            "UPDATE sessions SET refresh_expires_at = $2 WHERE id = $1",
            &[session_id.into(), new_expires_at.into()],
        )
        .await?;
        let event = Event::SessionRefreshed {
            user_id: session.user_id,
            session_id,
        };
        let event = commit_one(tx, event, meta, now).await?;
        Ok(RefreshOutcome::Rotated {
            session: SessionRecord {
                refresh_expires_at: new_expires_at,
                ..session
            },
            event,
        })
    }

    /// The session a refresh token belongs to, if the token was ever issued.
    pub async fn session_by_refresh(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        let rows = tx
            .query(
                "SELECT session_id FROM refresh_tokens WHERE hash = $1",
                &[hash.as_slice().into()],
            )
            .await?;
        match rows.first() {
            None => Ok(None),
            Some(r) => session_in(&mut *tx, r.uuid(0)?).await,
        }
    }

    /// One session by id, revoked or not.
    pub async fn session(&self, id: Uuid) -> Result<Option<SessionRecord>, StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        session_in(&mut *tx, id).await
    }

    /// The user's sessions that are neither revoked nor past their refresh lifetime.
    pub async fn live_sessions(
        &self,
        user_id: Uuid,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        let sql = format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
             AND refresh_expires_at > $2 ORDER BY created_at, id"
        );
        let rows = tx.query(&sql, &[user_id.into(), now.into()]).await?;
        rows.iter().map(session).collect()
    }

    /// Ends one session. `owner` restricts it to that user's sessions
    /// (`NotFound` otherwise). Already revoked: `Ok(None)` (idempotent).
    pub async fn revoke_session(
        &self,
        session_id: Uuid,
        owner: Option<Uuid>,
        how: SessionEnd,
        meta: &Meta,
        now: i64,
    ) -> Result<Option<Envelope>, StoreError> {
        let mut tx = self.db.begin().await?;
        let found = session_in(&mut *tx, session_id).await?;
        let Some(found) = found.filter(|s| owner.is_none_or(|o| o == s.user_id)) else {
            return Err(StoreError::NotFound);
        };
        if found.revoked_at.is_some() {
            return Ok(None);
        }
        revoke_session_rows(&mut *tx, &[session_id], now).await?;
        let user_id = found.user_id;
        let event = match how {
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
        };
        commit_one(tx, event, meta, now).await.map(Some)
    }

    /// Ends every live session of a user at once (the per-user cut-off).
    pub async fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        cause: RevokeCause,
        reason: Option<String>,
        meta: &Meta,
        now: i64,
    ) -> Result<Envelope, StoreError> {
        let mut tx = self.db.begin().await?;
        require_user(&mut *tx, user_id).await?;
        let session_ids = revoke_all_rows(&mut *tx, user_id, None, now).await?;
        let event = Event::UserSessionsRevoked {
            user_id,
            session_ids,
            cause,
            reason,
        };
        commit_one(tx, event, meta, now).await
    }

    /// Stores a new password hash and ends every other session.
    pub async fn change_password(
        &self,
        user_id: Uuid,
        new_hash: &str,
        keep: Option<Uuid>,
        meta: &Meta,
        now: i64,
    ) -> Result<Envelope, StoreError> {
        let mut tx = self.db.begin().await?;
        let n = tx
            .exec(
                "UPDATE users SET password_hash = $2 WHERE id = $1",
                &[user_id.into(), new_hash.into()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        let revoked = revoke_all_rows(&mut *tx, user_id, keep, now).await?;
        let event = Event::PasswordChanged {
            user_id,
            kept_session_id: keep,
            revoked_session_ids: revoked,
        };
        commit_one(tx, event, meta, now).await
    }

    /// Locks a user until `until` and ends every session.
    pub async fn lock(
        &self,
        user_id: Uuid,
        until: i64,
        reason: Option<String>,
        meta: &Meta,
        now: i64,
    ) -> Result<Envelope, StoreError> {
        let mut tx = self.db.begin().await?;
        let n = tx
            .exec(
                "UPDATE users SET locked_until = $2 WHERE id = $1",
                &[user_id.into(), until.into()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        let revoked = revoke_all_rows(&mut *tx, user_id, None, now).await?;
        let event = Event::UserLocked {
            user_id,
            until,
            revoked_session_ids: revoked,
            reason,
        };
        commit_one(tx, event, meta, now).await
    }

    /// Lifts an admin lock (and any brute-force lock on the username).
    pub async fn unlock(
        &self,
        user_id: Uuid,
        meta: &Meta,
        now: i64,
    ) -> Result<Envelope, StoreError> {
        let mut tx = self.db.begin().await?;
        let n = tx
            .exec(
                "UPDATE users SET locked_until = NULL WHERE id = $1",
                &[user_id.into()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        tx.exec(
            "DELETE FROM login_throttle WHERE username IN (SELECT username FROM users WHERE id = $1)",
            &[user_id.into()],
        )
        .await?;
        commit_one(tx, Event::UserUnlocked { user_id }, meta, now).await
    }

    /// Every signing key, newest first.
    pub async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        query_keys(&mut *tx, "").await
    }

    /// Installs `key` as the first active key unless one exists already
    /// (instances starting together race here; one wins).
    pub async fn ensure_active_key(
        &self,
        key: &KeyRecord,
        meta: &Meta,
        now: i64,
    ) -> Result<Option<Envelope>, StoreError> {
        let mut tx = self.db.begin().await?;
        // Take the log lock first so two starting instances serialise here.
        tx.exec("UPDATE recall_seq SET last = last WHERE id = 1", &[])
            .await?;
        let active = query_keys(&mut *tx, "WHERE status = 'active'").await?;
        if !active.is_empty() {
            return Ok(None);
        }
        insert_key(&mut *tx, key).await?;
        let event = Event::KeyRotated {
            kid: key.kid.clone(),
            previous_kid: None,
            compromised: false,
            previous_retire_after: None,
            reason: Some("initial key".to_owned()),
        };
        commit_one(tx, event, meta, now).await.map(Some)
    }

    /// Makes `key` the active key. The previous one keeps verifying until
    /// `retire_after`, or is revoked at once when `compromised`.
    pub async fn rotate_key(
        &self,
        key: &KeyRecord,
        compromised: bool,
        retire_after: i64,
        reason: Option<String>,
        meta: &Meta,
        now: i64,
    ) -> Result<Envelope, StoreError> {
        let mut tx = self.db.begin().await?;
        tx.exec("UPDATE recall_seq SET last = last WHERE id = 1", &[])
            .await?;
        let previous = query_keys(&mut *tx, "WHERE status = 'active'").await?;
        let previous_kid = previous.first().map(|k| k.kid.clone());
        let (status, retire) = if compromised {
            ("revoked", None)
        } else {
            ("verifying", Some(retire_after))
        };
        tx.exec(
            "UPDATE signing_keys SET status = $1, retire_after = $2 WHERE status = 'active'",
            &[status.into(), retire.into()],
        )
        .await?;
        insert_key(&mut *tx, key).await?;
        let event = Event::KeyRotated {
            kid: key.kid.clone(),
            previous_kid,
            compromised,
            previous_retire_after: retire,
            reason,
        };
        commit_one(tx, event, meta, now).await
    }

    /// Retires verifying keys whose tokens have all expired; one event each.
    pub async fn retire_keys(&self, meta: &Meta, now: i64) -> Result<Vec<Envelope>, StoreError> {
        let mut tx = self.db.begin().await?;
        let due = tx
            .query(
                "UPDATE signing_keys SET status = 'retired' WHERE status = 'verifying' \
                 AND retire_after <= $1 RETURNING kid",
                &[now.into()],
            )
            .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut events = Vec::new();
        for row in &due {
            events.push(Event::KeyRetired { kid: row.text(0)? });
        }
        let envs = append(&mut *tx, events, meta, now).await?;
        tx.commit().await?;
        Ok(envs)
    }

    /// Appends raw events with no read-model change (tests and tools use it
    /// to make gaps and backdated history).
    pub async fn append_raw(
        &self,
        events: Vec<Event>,
        meta: &Meta,
        at: i64,
    ) -> Result<Vec<Envelope>, StoreError> {
        let mut tx = self.db.begin().await?;
        let envs = append(&mut *tx, events, meta, at).await?;
        tx.commit().await?;
        Ok(envs)
    }

    /// Grants the admin role.
    pub async fn grant_admin(&self, user_id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        tx.exec(
            "UPDATE users SET roles = 'admin' WHERE id = $1",
            &[user_id.into()],
        )
        .await?;
        tx.commit().await
    }
}

/// How one session ends.
#[derive(Debug, Clone)]
pub enum SessionEnd {
    /// The user's own logout.
    Logout,
    /// Revoked by the user from elsewhere, an admin or RFC 7009.
    Revoked {
        cause: RevokeCause,
        reason: Option<String>,
    },
}

async fn commit_one(
    mut tx: Box<dyn Tx>,
    event: Event,
    meta: &Meta,
    now: i64,
) -> Result<Envelope, StoreError> {
    let mut envs = append(&mut *tx, vec![event], meta, now).await?;
    tx.commit().await?;
    envs.pop()
        .ok_or_else(|| StoreError::Corrupt("append returned nothing".into()))
}

/// Appends events, taking their sequence numbers last: the counter row stays
/// locked until commit, so no later seq can become visible first (G6).
async fn append(
    tx: &mut dyn Tx,
    events: Vec<Event>,
    meta: &Meta,
    at: i64,
) -> Result<Vec<Envelope>, StoreError> {
    let n = events.len() as i64;
    let last = first(
        tx.query(
            "UPDATE recall_seq SET last = last + $1 WHERE id = 1 RETURNING last",
            &[n.into()],
        )
        .await?,
    )?
    .int(0)?;
    let mut out = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let seq = last - n + 1 + i as i64;
        let data = serde_json::to_string(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let stream = event.stream();
        tx.exec(
            "INSERT INTO events (seq, stream, type, version, at, actor, ip, user_id, session_id, data) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                seq.into(),
                stream.as_str().into(),
                event.kind().into(),
                EVENT_VERSION.into(),
                at.into(),
                meta.actor.clone().into(),
                meta.ip.clone().into(),
                event.user_id().into(),
                event.session_id().into(),
                data.into(),
            ],
        )
        .await?;
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
    Ok(out)
}

async fn insert_refresh(
    tx: &mut dyn Tx,
    hash: &[u8; 32],
    session_id: Uuid,
    now: i64,
) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO refresh_tokens (hash, session_id, issued_at) VALUES ($1, $2, $3)",
        &[hash.as_slice().into(), session_id.into(), now.into()],
    )
    .await?;
    Ok(())
}

async fn insert_key(tx: &mut dyn Tx, k: &KeyRecord) -> Result<(), StoreError> {
    tx.exec(
        &format!("INSERT INTO signing_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
        &[
            k.kid.as_str().into(),
            k.alg.as_str().into(),
            k.public_key.clone().into(),
            k.private_key_enc.clone().into(),
            "active".into(),
            k.created_at.into(),
            Val::Null,
        ],
    )
    .await?;
    Ok(())
}

async fn query_keys(tx: &mut dyn Tx, filter: &str) -> Result<Vec<KeyRecord>, StoreError> {
    let sql = format!("SELECT {KEY_COLS} FROM signing_keys {filter} ORDER BY created_at DESC, kid");
    let rows = tx.query(&sql, &[]).await?;
    rows.iter()
        .map(|r| {
            Ok(KeyRecord {
                kid: r.text(0)?,
                alg: r.text(1)?,
                public_key: r.blob(2)?,
                private_key_enc: r.blob(3)?,
                status: r.text(4)?,
                created_at: r.int(5)?,
                retire_after: r.opt_int(6)?,
            })
        })
        .collect()
}

async fn require_user(tx: &mut dyn Tx, user_id: Uuid) -> Result<(), StoreError> {
    let rows = tx
        .query("SELECT id FROM users WHERE id = $1", &[user_id.into()])
        .await?;
    if rows.is_empty() {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

async fn session_in(tx: &mut dyn Tx, id: Uuid) -> Result<Option<SessionRecord>, StoreError> {
    let sql = format!("SELECT {SESSION_COLS} FROM sessions WHERE id = $1");
    let rows = tx.query(&sql, &[id.into()]).await?;
    rows.first().map(session).transpose()
}

async fn revoke_session_rows(tx: &mut dyn Tx, ids: &[Uuid], now: i64) -> Result<(), StoreError> {
    for id in ids {
        tx.exec(
            "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[(*id).into(), now.into()],
        )
        .await?;
    }
    Ok(())
}

/// Revokes every unrevoked session of a user but `keep`; returns their ids.
async fn revoke_all_rows(
    tx: &mut dyn Tx,
    user_id: Uuid,
    keep: Option<Uuid>,
    now: i64,
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

fn first(rows: Vec<Row>) -> Result<Row, StoreError> {
    rows.into_iter()
        .next()
        .ok_or_else(|| StoreError::Corrupt("expected a row".into()))
}

fn envelope(r: &Row) -> Result<Envelope, StoreError> {
    let kind = r.text(2)?;
    let version = r.int(3)?;
    let event = Event::decode(&kind, version, &r.text(7)?).map_err(StoreError::Corrupt)?;
    Ok(Envelope {
        seq: r.int(0)?,
        stream: r.text(1)?,
        version,
        at: r.int(4)?,
        actor: r.opt_text(5)?,
        ip: r.opt_text(6)?,
        event,
    })
}

fn user(r: &Row) -> Result<UserRecord, StoreError> {
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
        created_at: r.int(4)?,
        locked_until: r.opt_int(5)?,
    })
}

fn session(r: &Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: r.uuid(0)?,
        user_id: r.uuid(1)?,
        client_type: r.text(2)?,
        device_id: r.opt_text(3)?,
        ip: r.opt_text(4)?,
        user_agent: r.opt_text(5)?,
        created_at: r.int(6)?,
        refresh_expires_at: r.int(7)?,
        revoked_at: r.opt_int(8)?,
    })
}
