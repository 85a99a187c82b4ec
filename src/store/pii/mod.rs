//! Personal data at rest, sealed per user so that erasing a user destroys
//! it (crypto-shredding): the username in `user_registered` and a known
//! user's `login_failed`, a login's device id, the client address of every
//! event about a user (`events.ip`), and a session's address, user agent
//! and device id. Each is ChaCha20-Poly1305 under the user's data key
//! (random, 32 bytes), with the user and the field as associated data; the
//! data key is stored only wrapped under a key derived from the master key
//! (`user_keys`). Erasure deletes that row: every ciphertext of the user
//! then opens to nothing, on every instance, and the rows, ids and the
//! chain over the stored bytes stay as they were.
//!
//! Writes cache unwrapped data keys (a login or refresh costs no key
//! read); reads never do, so nothing read outlives an erasure.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::head::Hash;
use super::sql::{Later, Links, Row, Tx, Val};
use super::{SessionRecord, StoreError};
use crate::events::{Event, Meta};
use crate::keys::MasterKey;

/// HKDF salt of the key that wraps data keys.
const WRAP_SALT: &[u8] = b"recall user data keys v1";
/// HKDF salt of the key of unknown usernames' login streams.
const NAMES_SALT: &[u8] = b"recall login streams v1";
/// What a sealed value starts with (ciphertexts are base64url after it).
const SEALED: &str = "pii1.";
/// The event payload's member that holds its sealed personal fields.
const MEMBER: &str = "pii";
/// Unwrapped data keys kept for writes, at most (then forgotten at once).
const CACHE_MAX: usize = 65_536;

type DataKey = [u8; 32];

/// The keys of personal data: derived from the master key when the store
/// is opened, plus the data keys this instance wrote with lately.
pub struct Vault {
    wrap: DataKey,
    names: DataKey,
    /// Write side only (see the module comment).
    cache: Mutex<HashMap<Uuid, DataKey>>,
    /// Off only in the encryption benchmark's baseline (`Store::bench_plaintext`).
    sealing: std::sync::atomic::AtomicBool,
}

impl Vault {
    /// The vault of a fleet with this master key.
    pub fn new(master: &MasterKey) -> Self {
        Vault {
            wrap: master.derive(WRAP_SALT, b"wrap"),
            names: master.derive(NAMES_SALT, b"username"),
            cache: Mutex::new(HashMap::new()),
            sealing: std::sync::atomic::AtomicBool::new(true),
        }
    }

    fn cached(&self, user: Uuid) -> Option<DataKey> {
        self.cache.lock().ok()?.get(&user).copied()
    }

    fn remember(&self, user: Uuid, key: DataKey) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(user, key);
        }
    }

    /// Forgets the user's data key on this instance (erasure).
    pub(super) fn forget(&self, user: Uuid) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&user);
        }
    }

    /// Turns sealing off or on (the benchmark's baseline only).
    pub(super) fn set_sealing(&self, on: bool) {
        self.sealing.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    fn sealing(&self) -> bool {
        self.sealing.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn wrap_key(&self, user: Uuid, key: &DataKey) -> Vec<u8> {
        seal_bytes(&self.wrap, &wrap_aad(user), key)
    }

    fn unwrap_key(&self, user: Uuid, wrapped: &[u8]) -> Option<DataKey> {
        open_bytes(&self.wrap, &wrap_aad(user), wrapped)?
            .try_into()
            .ok()
    }
}

/// A keyed digest of a username: failed logins of one name share a
/// stream without the name in it. Under a known user's data key (useless
/// once the user is erased), else under a key derived from the master key.
fn digest(key: &DataKey, name: &str) -> String {
    use hmac::Mac;
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!());
    mac.update(name.as_bytes());
    let tag = mac.finalize().into_bytes();
    tag.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn wrap_aad(user: Uuid) -> String {
    format!("recall data key v1/{user}")
}

fn field_aad(user: Uuid, field: &str) -> String {
    format!("recall pii v1/{user}/{field}")
}

/// nonce || ciphertext of `plain` under `key`, bound to `aad`.
fn seal_bytes(key: &DataKey, aad: &str, plain: &[u8]) -> Vec<u8> {
    let nonce: [u8; 12] = crate::random::bytes();
    let payload = Payload {
        msg: plain,
        aad: aad.as_bytes(),
    };
    let ct = ChaCha20Poly1305::new(key.into())
        .encrypt(&Nonce::from(nonce), payload)
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend(ct);
    out
}

fn open_bytes(key: &DataKey, aad: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 12 + 16 {
        return None;
    }
    let (nonce, ct) = sealed.split_at(12);
    let payload = Payload {
        msg: ct,
        aad: aad.as_bytes(),
    };
    ChaCha20Poly1305::new(key.into())
        .decrypt(&Nonce::try_from(nonce).ok()?, payload)
        .ok()
}

/// The stored form of one personal field: `pii1.` and the ciphertext; with
/// `named`, the owner's id comes first (`pii1.<user>.`), for events that
/// name no user (a known user's failed login, whose shape must not differ
/// from an unknown name's).
fn seal_field(key: &DataKey, user: Uuid, field: &str, plain: &str, named: bool) -> String {
    let sealed = URL_SAFE_NO_PAD.encode(seal_bytes(key, &field_aad(user, field), plain.as_bytes()));
    match named {
        true => format!("{SEALED}{user}.{sealed}"),
        false => format!("{SEALED}{sealed}"),
    }
}

/// The owner a sealed value names (`seal_field` with `named`), if it
/// names one: the first sealed value in `text`.
fn owner_in(text: &str) -> Option<Uuid> {
    let at = text.find(SEALED)? + SEALED.len();
    let id = text.get(at..at + 36)?;
    (text.get(at + 36..at + 37)? == ".")
        .then(|| Uuid::parse_str(id).ok())
        .flatten()
}

/// A stored field as read: plaintext written before sealing stays
/// readable; a sealed one opens with the user's key, or reads as `None`.
fn open_field(key: Option<&DataKey>, user: Uuid, field: &str, stored: String) -> Option<String> {
    let Some(rest) = stored.strip_prefix(SEALED) else {
        return Some(stored);
    };
    let b64 = rest.rsplit('.').next()?;
    let sealed = URL_SAFE_NO_PAD.decode(b64).ok()?;
    let plain = open_bytes(key?, &field_aad(user, field), &sealed)?;
    String::from_utf8(plain).ok()
}

fn is_sealed(stored: &Option<String>) -> bool {
    stored.as_deref().is_some_and(|s| s.starts_with(SEALED))
}

// ---------------------------------------------------------------- writing

/// What `append` stores for one event: its payload, its client address
/// and its stream, with everything personal sealed.
pub(super) struct Sealed {
    pub data: String,
    pub ip: Option<String>,
    pub stream: String,
}

/// Whether the event carries a personal field of its payload.
fn personal(event: &Event) -> bool {
    matches!(
        event,
        Event::UserRegistered {
            username: Some(_),
            ..
        } | Event::LoginFailed {
            username: Some(_),
            user_id: Some(_),
            ..
        } | Event::LoginSucceeded {
            device_id: Some(_),
            ..
        }
    )
}

/// The stored form of `event` appended with `meta`: a payload about a
/// user (or a failed login of a known user's name) keeps its personal
/// fields only sealed under the user's key (in its `pii` member), the
/// address only sealed; a user without a key (erased) gets neither.
pub(super) async fn seal(
    tx: &mut dyn Tx,
    event: &Event,
    meta: &Meta,
) -> Result<Sealed, StoreError> {
    let vault = vault_of(tx)?;
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
    let plain = |data: String, ip: Option<String>, stream: String| Sealed { data, ip, stream };
    let name = match event {
        Event::LoginFailed {
            user_id: None,
            username: Some(name),
            ..
        } => Some(name.as_str()),
        _ => None,
    };
    if !vault.sealing() {
        let data = serde_json::to_string(event).map_err(corrupt)?;
        return Ok(plain(data, meta.ip.clone(), event.stream()));
    }
    // A failed login names no user, known or not (the log must not tell
    // them apart), but a known user's name is still theirs to erase.
    let owner = match name {
        Some(name) => known_user(tx, name).await?,
        None => None,
    };
    let fields = personal(event) || owner.is_some();
    let Some(user) = event.user_id().or(owner) else {
        let data = serde_json::to_string(event).map_err(corrupt)?;
        let stream = match name {
            Some(name) => format!("username:{}", digest(&vault.names, name)),
            None => event.stream(),
        };
        return Ok(plain(data, meta.ip.clone(), stream));
    };
    let key = match fields || meta.ip.is_some() {
        true => {
            write_key(
                tx,
                &vault,
                user,
                matches!(event, Event::UserRegistered { .. }),
            )
            .await?
        }
        false => None,
    };
    let stream = match name {
        Some(name) => format!(
            "username:{}",
            digest(key.as_ref().unwrap_or(&vault.names), name)
        ),
        None => event.stream(),
    };
    let named = owner.is_some();
    let ip = match (&key, &meta.ip) {
        (Some(key), Some(ip)) => Some(seal_field(key, user, "ip", ip, named)),
        _ => None,
    };
    if !fields {
        let data = serde_json::to_string(event).map_err(corrupt)?;
        return Ok(plain(data, ip, stream));
    }
    let mut json = serde_json::to_value(event).map_err(corrupt)?;
    let map = json
        .as_object_mut()
        .ok_or_else(|| StoreError::Corrupt(format!("{} is not an object", event.kind())))?;
    let mut taken = Map::new();
    for name in ["username", "device_id"] {
        if let Some(v) = map.remove(name).filter(|v| !v.is_null()) {
            taken.insert(name.to_owned(), v);
        }
    }
    if let Some(key) = &key {
        let sealed = seal_field(key, user, "event", &Value::Object(taken).to_string(), named);
        map.insert(MEMBER.to_owned(), Value::String(sealed));
    }
    Ok(plain(json.to_string(), ip, stream))
}

/// The user a username names, if any (and not erased: an erased user's
/// name is a tombstone no login can name).
async fn known_user(tx: &mut dyn Tx, username: &str) -> Result<Option<Uuid>, StoreError> {
    let rows = tx
        .query(
            "SELECT id FROM users WHERE username = $1",
            &[username.into()],
        )
        .await?;
    rows.first().map(|r| r.uuid(0)).transpose()
}

/// A session's device id, address and user agent as stored: sealed under
/// its user's key (or none, for a user without one).
pub(super) async fn seal_session(
    tx: &mut dyn Tx,
    s: &SessionRecord,
) -> Result<[Val; 3], StoreError> {
    let vault = vault_of(tx)?;
    if !vault.sealing() {
        return Ok([
            s.device_id.clone().into(),
            s.ip.clone().into(),
            s.user_agent.clone().into(),
        ]);
    }
    let key = write_key(tx, &vault, s.user_id, false).await?;
    let seal = |field: &str, v: &Option<String>| -> Val {
        match (&key, v) {
            (Some(key), Some(v)) => seal_field(key, s.user_id, field, v, false).into(),
            _ => Val::Null,
        }
    };
    Ok([
        seal("device_id", &s.device_id),
        seal("ip", &s.ip),
        seal("user_agent", &s.user_agent),
    ])
}

const READ_KEY: &str = "SELECT wrapped FROM user_keys WHERE user_id = $1";

/// The user's data key for a write: cached, read, or made. A new user's
/// key is made with its row; one of a user from before sealing, on its
/// first write; an erased (or unknown) user never gets one again.
async fn write_key(
    tx: &mut dyn Tx,
    vault: &Vault,
    user: Uuid,
    new_user: bool,
) -> Result<Option<DataKey>, StoreError> {
    if let Some(key) = vault.cached(user) {
        return Ok(Some(key));
    }
    let made: DataKey = crate::random::bytes();
    let wrapped = vault.wrap_key(user, &made);
    if new_user {
        let insert: Later = (
            "INSERT INTO user_keys (user_id, wrapped) VALUES ($1, $2)",
            vec![user.into(), wrapped.into()],
        );
        tx.exec_later(vec![insert]).await?;
        vault.remember(user, made);
        return Ok(Some(made));
    }
    let mut found = tx.query(READ_KEY, &[user.into()]).await?;
    if found.is_empty() {
        tx.exec(
            "INSERT INTO user_keys (user_id, wrapped) SELECT $1, $2 \
             WHERE EXISTS (SELECT 1 FROM users WHERE id = $1 AND erased_at IS NULL) \
             ON CONFLICT (user_id) DO NOTHING",
            &[user.into(), wrapped.into()],
        )
        .await?;
        found = tx.query(READ_KEY, &[user.into()]).await?;
    }
    let Some(row) = found.first() else {
        return Ok(None);
    };
    let key = vault
        .unwrap_key(user, &row.blob(0)?)
        .ok_or_else(|| StoreError::Corrupt(format!("data key of {user}: wrong master key")))?;
    vault.remember(user, key);
    Ok(Some(key))
}

fn vault_of(tx: &dyn Tx) -> Result<Arc<Vault>, StoreError> {
    tx.vault()
        .and_then(|any| any.downcast::<Vault>().ok())
        .ok_or_else(|| StoreError::Config("a transaction without the store's keys".into()))
}

mod open;
pub(in crate::store) use open::{open_events, open_sessions};

// ---------------------------------------------------------------- the wrapper

/// A transaction of the store's, carrying its vault to `seal` and the
/// readers; every call goes to the adapter's own (batched) transaction.
pub(super) struct WithVault {
    pub inner: Box<dyn Tx>,
    pub vault: Arc<Vault>,
}

#[async_trait]
impl Tx for WithVault {
    async fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        self.inner.exec(sql, params).await
    }
    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        self.inner.query(sql, params).await
    }
    async fn query_all(&mut self, queries: &[(&str, &[Val])]) -> Result<Vec<Vec<Row>>, StoreError> {
        self.inner.query_all(queries).await
    }
    async fn exec_later(&mut self, statements: Vec<Later>) -> Result<(), StoreError> {
        self.inner.exec_later(statements).await
    }
    async fn take_seqs(&mut self, n: i64) -> Result<Links, StoreError> {
        self.inner.take_seqs(n).await
    }
    async fn set_head(&mut self, head: Hash) -> Result<(), StoreError> {
        self.inner.set_head(head).await
    }
    fn vault(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(self.vault.clone())
    }
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.inner.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_open_only_with_their_key_user_and_field() {
        let (key, other): (DataKey, DataKey) = (crate::random::bytes(), crate::random::bytes());
        let (user, someone) = (Uuid::now_v7(), Uuid::now_v7());
        let sealed = seal_field(&key, user, "ip", "203.0.113.7", false);
        let named = seal_field(&key, user, "ip", "203.0.113.7", true);
        assert_eq!(owner_in(&named), Some(user));
        assert_eq!(owner_in(&sealed), None);
        assert_eq!(
            open_field(Some(&key), user, "ip", named).as_deref(),
            Some("203.0.113.7")
        );
        assert!(!sealed.contains("203.0.113.7"));
        let open = |k: Option<&DataKey>, u, f: &str| open_field(k, u, f, sealed.clone());
        assert_eq!(open(Some(&key), user, "ip").as_deref(), Some("203.0.113.7"));
        assert_eq!(open(Some(&other), user, "ip"), None);
        assert_eq!(open(Some(&key), someone, "ip"), None);
        assert_eq!(open(Some(&key), user, "user_agent"), None);
        assert_eq!(open(None, user, "ip"), None);
        // Written before sealing: read as it is.
        assert_eq!(
            open_field(None, user, "ip", "198.51.100.1".into()).as_deref(),
            Some("198.51.100.1")
        );
    }

    #[test]
    fn data_keys_unwrap_only_for_their_user_under_the_same_master_key() {
        let master = MasterKey::generate();
        let vault = Vault::new(&master);
        let (user, key): (Uuid, DataKey) = (Uuid::now_v7(), crate::random::bytes());
        let wrapped = vault.wrap_key(user, &key);
        assert_eq!(vault.unwrap_key(user, &wrapped), Some(key));
        assert_eq!(Vault::new(&master).unwrap_key(user, &wrapped), Some(key));
        assert_eq!(vault.unwrap_key(Uuid::now_v7(), &wrapped), None);
        assert_eq!(
            Vault::new(&MasterKey::generate()).unwrap_key(user, &wrapped),
            None
        );
        let names = Vault::new(&master).names;
        assert_eq!(digest(&vault.names, "alice"), digest(&names, "alice"));
        assert_ne!(digest(&names, "alice"), digest(&names, "alicf"));
        assert_ne!(digest(&names, "alice"), digest(&key, "alice"));
        assert!(!digest(&names, "alice").contains("alice"));
    }
}
