//! The event store port. `Store` holds the domain queries, written once over
//! the `Db`/`Tx` surface; `postgres` (fleet) and `sqlite` (embedded) adapt it.
//! Every write appends its event(s) and updates the read models in one
//! transaction, and takes the sequence last so commit order is seq order.
//!
//! May import: state, tokens, keys, ssf, domain, events, clock, files, tls
//! (the types it persists; it calls no domain decision, it is handed them).
//! The layers: docs/DESIGN.md, "Parts".

mod batch;
pub mod chain;
mod erase;
pub mod evidence;
mod fleet;
mod forensics;
mod head;
mod keys;
mod pg_url;
mod pii;
mod policies;
pub mod postgres;
mod records;
mod rows;
mod services;
mod sessions;
pub mod sql;
pub mod sqlite;
mod ssf;
mod throttle;
mod window;
mod work;

use std::sync::Arc;

use uuid::Uuid;

use crate::clock::Timestamp;
use crate::domain::{RefreshFacts, RefreshRefusal, SessionFacts};
use crate::events::{Envelope, Event, Stamp};
use crate::keys::MasterKey;
use rows::{
    append, commit_one, commit_one_after, envelope, first, insert_refresh_statement, locked_until,
    revoke_all_rows, revoke_session_rows, spend_refresh, update_user, user, Spend,
};
use sql::{Db, Val};
use work::first_of;

pub use pii::Vault;
pub use records::{
    EndRule, EventFilter, Guess, GuessRules, Login, LoginRule, RefreshRefused, RefreshRules,
    Refreshed, SessionRecord, Throttle, UserRecord,
};
pub use services::ServiceRecord;
pub use ssf::StreamRecord;
pub use throttle::PASSWORD_FAILURES_PER_SESSION;

/// What can go wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
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

const EVENT_COLS: &str = "seq, stream, type, version, at, actor, ip, data";
const USER_COLS: &str = "id, username, password_hash, roles, created_at, locked_until";
const SESSION_COLS: &str =
    "id, user_id, client_type, device_id, ip, user_agent, created_at, refresh_expires_at, revoked_at, terms";
const KEY_COLS: &str = "kid, alg, public_key, private_key_enc, status, created_at, retire_after";

/// The query of `Store::events` and its parameters.
fn events_query(filter: &EventFilter) -> (String, Vec<Val>) {
    let sql = format!(
        "SELECT {EVENT_COLS} FROM events WHERE seq > $1 \
         AND ($2 = '' OR user_id = $2) AND ($3 = '' OR type = $3) ORDER BY seq LIMIT $4"
    );
    let user = filter.user_id.map(|u| u.to_string()).unwrap_or_default();
    let kind = filter.kind.clone().unwrap_or_default();
    let params = vec![
        filter.after.into(),
        user.into(),
        kind.into(),
        filter.limit.into(),
    ];
    (sql, params)
}

/// The event store: domain reads and writes over either adapter.
#[derive(Clone)]
pub struct Store {
    db: Arc<dyn Db>,
    /// The keys of users' personal data (`pii`), from the master key.
    vault: Arc<Vault>,
}

impl Store {
    /// Wraps an adapter; `master` gives the keys of personal data.
    pub fn new(db: Arc<dyn Db>, master: &MasterKey) -> Self {
        Store {
            db,
            vault: Arc::new(Vault::new(master)),
        }
    }

    /// Opens PostgreSQL when `url` is set, else SQLite at `sqlite_path`.
    pub fn open(
        url: Option<&str>,
        sqlite_path: &std::path::Path,
        master: &MasterKey,
    ) -> Result<Self, StoreError> {
        Store::open_tls(url, sqlite_path, None, master)
    }

    /// `open`, trusting `ca_file` (`RECALL_DATABASE_CA_FILE`) for PostgreSQL TLS.
    pub fn open_tls(
        url: Option<&str>,
        sqlite_path: &std::path::Path,
        ca_file: Option<&std::path::Path>,
        master: &MasterKey,
    ) -> Result<Self, StoreError> {
        let db: Arc<dyn Db> = match url {
            Some(url) => Arc::new(postgres::PgDb::connect_tls(url, 16, ca_file)?),
            None => Arc::new(sqlite::SqliteDb::open(sqlite_path)?),
        };
        Ok(Store::new(db, master))
    }

    /// "postgres" or "sqlite".
    pub fn kind(&self) -> &'static str {
        self.db.kind()
    }

    /// The write batches run so far, and the units they carried.
    pub fn write_batches(&self) -> sql::WriteBatches {
        self.db.write_batches()
    }

    /// Runs the migrations (safe to race).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.db.migrate().await?;
        self.chain_unlinked().await.map(|_| ())
    }

    /// The last committed sequence number.
    pub async fn head(&self) -> Result<i64, StoreError> {
        self.read(|mut tx| async move {
            let rows = tx
                .query("SELECT last FROM recall_seq WHERE id = 1", &[])
                .await?;
            first(rows)?.int(0)
        })
        .await
    }

    /// Up to `limit` events after `after`, oldest first.
    pub async fn read_after(&self, after: i64, limit: i64) -> Result<Vec<Envelope>, StoreError> {
        self.events_sealed(&EventFilter {
            after,
            limit,
            ..EventFilter::default()
        })
        .await
    }

    /// The audit listing: events after a cursor, optionally of one user or
    /// type, their personal fields opened (`None` for an erased user).
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Envelope>, StoreError> {
        let (sql, params) = events_query(filter);
        self.read(move |mut tx| async move {
            let rows = tx.query(&sql, &params).await?;
            pii::open_events(&mut *tx, rows).await
        })
        .await
    }

    /// The log as the fold and the feeds read it: ids and kinds, personal
    /// fields left sealed (they read as `None`; no key is read).
    async fn events_sealed(&self, filter: &EventFilter) -> Result<Vec<Envelope>, StoreError> {
        let (sql, params) = events_query(filter);
        self.rows(sql, params, envelope).await
    }

    /// A user by lowercased username.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE username = $1");
        self.rows(sql, vec![username.into()], user)
            .await
            .map(first_of)
    }

    /// A user by id.
    pub async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
        self.rows(sql, vec![id.into()], user).await.map(first_of)
    }

    /// Creates a user; `Conflict` when the username is taken.
    pub async fn register(
        &self,
        user_id: Uuid,
        username: &str,
        password_hash: &str,
        roles: &[String],
        stamp: &Stamp,
    ) -> Result<Envelope, StoreError> {
        let params = vec![
            user_id.into(),
            username.into(),
            password_hash.into(),
            roles.join(",").into(),
            stamp.at.into(),
        ];
        let event = Event::UserRegistered {
            user_id,
            username: Some(username.to_owned()),
            roles: roles.to_vec(),
        };
        self.exec_and_append(
            "INSERT INTO users (id, username, password_hash, roles, created_at) VALUES ($1, $2, $3, $4, $5)",
            params,
            event,
            stamp,
        )
        .await
    }

    /// Creates session `s` with its first refresh token (`refresh_hash`);
    /// clears the failure count.
    /// A lock (brute-force or admin) that committed while the hash ran
    /// wins: both are checked again inside this transaction by `admits`
    /// (`domain::may_log_in`), and a lock in force is never cleared by a
    /// success.
    pub async fn login(
        &self,
        s: &SessionRecord,
        refresh_hash: &[u8; 32],
        admits: LoginRule,
        stamp: &Stamp,
    ) -> Result<Login, StoreError> {
        let (s, stamp, refresh_hash) = (s.clone(), stamp.clone(), *refresh_hash);
        self.write(move |mut tx| async move {
        // A success clears the counts. The delete locks the row (waiting for
        // a concurrent lock to commit, then seeing it); a lock in force
        // returns before commit, which rolls the delete back.
        let throttle = tx
            .query(
                "DELETE FROM login_throttle \
                 WHERE username IN (SELECT username FROM users WHERE id = $1) RETURNING locked_until",
                &[s.user_id.into()],
            )
            .await?;
        let throttled = match throttle.first() {
            Some(r) => r.opt_ts(0)?,
            None => None,
        };
        let admin_lock = locked_until(&mut *tx, s.user_id, stamp.at).await?;
        if let Err(until) = admits(throttled, admin_lock, stamp.at) {
            return Ok(Login::Locked { until });
        }
        static INSERT_SESSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!("INSERT INTO sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9)")
        });
        // What is personal in it is stored sealed under the user's key.
        let [device_id, ip, user_agent] = pii::seal_session(&mut *tx, &s).await?;
        // The session, its first refresh token and the event go out
        // together (no round trip of their own in a batch).
        let writes = vec![
            (
                INSERT_SESSION.as_str(),
                vec![
                    s.id.into(),
                    s.user_id.into(),
                    s.client_type.as_str().into(),
                    device_id,
                    ip,
                    user_agent,
                    s.created_at.into(),
                    s.refresh_expires_at.into(),
                    rows::terms_json(&s.terms)?.into(),
                ],
            ),
            insert_refresh_statement(&refresh_hash, s.id, stamp.at),
        ];
        let event = Event::LoginSucceeded {
            user_id: s.user_id,
            session_id: s.id,
            client_type: s.client_type.clone(),
            device_id: s.device_id.clone(),
        };
        Ok(Login::Created(commit_one_after(tx, writes, event, &stamp).await?))
        })
        .await
    }

    /// Spends a refresh token by compare-and-swap and, as `rules` decide,
    /// stores its successor, revokes the session (reuse) or rolls back.
    pub async fn refresh(
        &self,
        old_hash: &[u8; 32],
        new_hash: &[u8; 32],
        rules: RefreshRules,
        stamp: &Stamp,
    ) -> Result<Result<Refreshed, RefreshRefused>, StoreError> {
        let (old_hash, new_hash, stamp) = (*old_hash, *new_hash, stamp.clone());
        let refused = |refusal, session| {
            Ok(Err(RefreshRefused {
                refusal,
                session,
                event: None,
            }))
        };
        self.write(move |mut tx| async move {
            let Spend {
                spent_now,
                spent_at,
                issued_at,
                session: found,
            } = spend_refresh(&mut *tx, &old_hash, stamp.at).await?;
            let issued_at = issued_at.unwrap_or(stamp.at);
            let facts = found.as_ref().map(|(s, locked_until)| SessionFacts {
                created_at: s.created_at,
                refresh_expires_at: s.refresh_expires_at,
                revoked_at: s.revoked_at,
                locked_until: *locked_until,
                last_used_at: issued_at,
                idle_timeout: s.terms.idle_timeout(),
                refresh_ttl: s.terms.refresh_ttl(),
                session_max: s.terms.session_max(),
            });
            let session = found.map(|(s, _)| s);
            let decision = (rules.decide)(&RefreshFacts {
                spent_now,
                spent_at,
                session: facts,
            });
            // Every refusal returns without commit, which rolls the spend back.
            let (expires_at, session) = match (decision, session) {
                (Err(RefreshRefusal::Reused), Some(session)) => {
                    revoke_session_rows(&mut *tx, &[session.id], stamp.at).await?;
                    let event = Event::RefreshTokenReused {
                        user_id: session.user_id,
                        session_id: session.id,
                    };
                    let event = commit_one(tx, event, &stamp).await?;
                    return Ok(Err(RefreshRefused {
                        refusal: RefreshRefusal::Reused,
                        session: Some(session),
                        event: Some(event),
                    }));
                }
                (Err(refusal), session) => return refused(refusal, session),
                (Ok(_), None) => return refused(RefreshRefusal::Unknown, None),
                (Ok(expires_at), Some(session)) => (expires_at, session),
            };
            let session = SessionRecord {
                refresh_expires_at: expires_at,
                ..session
            };
            // Bound elsewhere: nothing is written, so the spend rolls back.
            if let Some(refusal) = (rules.check)(&session) {
                return refused(RefreshRefusal::Elsewhere(refusal), Some(session));
            }
            // The successor, the session's new expiry and the event go out
            // together (one round trip in a PostgreSQL batch).
            let writes = vec![
                insert_refresh_statement(&new_hash, session.id, stamp.at),
                (
                    "UPDATE sessions SET refresh_expires_at = $2 WHERE id = $1",
                    vec![session.id.into(), session.refresh_expires_at.into()],
                ),
            ];
            let event = Event::SessionRefreshed {
                user_id: session.user_id,
                session_id: session.id,
            };
            let event = commit_one_after(tx, writes, event, &stamp).await?;
            Ok(Ok(Refreshed { session, event }))
        })
        .await
    }

    /// Stores a new password hash and ends every other session.
    pub async fn change_password(
        &self,
        user_id: Uuid,
        new_hash: &str,
        keep: Option<Uuid>,
        stamp: &Stamp,
    ) -> Result<Envelope, StoreError> {
        let (new_hash, stamp) = (new_hash.to_owned(), stamp.clone());
        self.write(move |mut tx| async move {
        update_user(&mut *tx, "password_hash = $2", user_id, new_hash.into()).await?;
        // The right current password: a success clears the counts (but
        // never a brute-force lock in force).
        tx.exec(
            "DELETE FROM login_throttle WHERE username IN (SELECT username FROM users WHERE id = $1) \
             AND (locked_until IS NULL OR locked_until <= $2)",
            &[user_id.into(), stamp.at.into()],
        )
        .await?;
        if let Some(kept) = keep {
            let sql = "UPDATE sessions SET password_failures = 0 WHERE id = $1";
            tx.exec(sql, &[kept.into()]).await?;
        }
        let revoked = revoke_all_rows(&mut *tx, user_id, keep, stamp.at).await?;
        let event = Event::PasswordChanged {
            user_id,
            kept_session_id: keep,
            revoked_session_ids: revoked,
        };
        commit_one(tx, event, &stamp).await
        })
        .await
    }

    /// Locks a user until `until` and ends every session.
    pub async fn lock(
        &self,
        user_id: Uuid,
        until: Timestamp,
        reason: Option<String>,
        stamp: &Stamp,
    ) -> Result<Envelope, StoreError> {
        self.write_as(stamp, move |mut tx, stamp| async move {
            update_user(&mut *tx, "locked_until = $2", user_id, until.into()).await?;
            let revoked = revoke_all_rows(&mut *tx, user_id, None, stamp.at).await?;
            let event = Event::UserLocked {
                user_id,
                until,
                revoked_session_ids: revoked,
                reason,
            };
            commit_one(tx, event, &stamp).await
        })
        .await
    }

    /// Lifts an admin lock (and any brute-force lock on the username).
    pub async fn unlock(&self, user_id: Uuid, stamp: &Stamp) -> Result<Envelope, StoreError> {
        self.write_as(stamp, move |mut tx, stamp| async move {
            update_user(&mut *tx, "locked_until = $2", user_id, Val::Null).await?;
            let sql = "DELETE FROM login_throttle WHERE username IN (SELECT username FROM users WHERE id = $1)";
            tx.exec(sql, &[user_id.into()]).await?;
            commit_one(tx, Event::UserUnlocked { user_id }, &stamp).await
        })
        .await
    }

    /// Appends events that change no read model: SSF verification requests,
    /// and, for tests and tools, gaps and backdated history.
    pub async fn append_raw(
        &self,
        events: Vec<Event>,
        stamp: &Stamp,
    ) -> Result<Vec<Envelope>, StoreError> {
        self.write_as(stamp, move |mut tx, stamp| async move {
            let envs = append(&mut *tx, events, &stamp).await?;
            tx.commit().await?;
            Ok(envs)
        })
        .await
    }

    /// Deletes refresh-token hashes of sessions that ended before `before`:
    /// a token of an ended session is refused either way, so only live
    /// sessions need their spent tokens for theft detection. Returns how many.
    pub async fn prune_refresh_tokens(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.exec_alone(
            "DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions \
             WHERE revoked_at < $1 OR refresh_expires_at < $1)"
                .into(),
            vec![before.into()],
        )
        .await
    }
}
