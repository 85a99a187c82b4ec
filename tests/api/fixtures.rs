//! Shared test set-up: short request helpers, fresh users and sessions over
//! HTTP, fleets, and store-level fixtures (a store, its users, sessions).
//!
//! A test says only what is special about it; the set-up lives here, so a
//! change of the HTTP routes or of the store's Rust API is made in one place.

use recall::clock::Timestamp;
use recall::config::Settings;
use recall::domain::{end_session, may_log_in, SessionEnd};
use recall::events::{Meta, Stamp};
use recall::store::{EndRule, Login, SessionRecord, Store};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{username, Backend, Kind, Res, Session, TestApp, ADMIN_TOKEN};

// ------------------------------------------------------- requests, in short

impl TestApp {
    /// POST with the admin token.
    pub async fn admin_post(&self, path: &str, body: Value) -> Res {
        self.post(path, Some(ADMIN_TOKEN), body).await
    }

    /// GET with the admin token.
    pub async fn admin_get(&self, path: &str) -> Res {
        self.get(path, Some(ADMIN_TOKEN)).await
    }

    /// DELETE with an optional bearer.
    pub async fn delete(&self, path: &str, bearer: Option<&str>) -> Res {
        self.call(Method::DELETE, path, bearer, None).await
    }

    /// POSTs a form (`application/x-www-form-urlencoded`) body.
    pub async fn post_form(
        &self,
        path: &str,
        form: impl Into<Vec<u8>>,
        bearer: Option<&str>,
    ) -> Res {
        let form = form.into();
        self.raw(path, "application/x-www-form-urlencoded", form, bearer)
            .await
    }

    /// `DELETE /v1/sessions/{session_id}` with this access token.
    pub async fn delete_session(&self, access: &str, session_id: &str) -> Res {
        let path = format!("/v1/sessions/{session_id}");
        self.delete(&path, Some(access)).await
    }

    /// `POST /oauth/revoke` (RFC 7009) of this token, as a form.
    pub async fn oauth_revoke(&self, token: &str) -> Res {
        let url = format!("{}/oauth/revoke", self.base);
        let req = self.http.post(url).form(&[("token", token)]);
        Res::read(req.send().await.expect("request failed")).await
    }

    /// `POST /v1/auth/refresh` with this refresh token.
    pub async fn refresh(&self, refresh: &str) -> Res {
        let body = json!({ "refresh_token": refresh });
        self.post("/v1/auth/refresh", None, body).await
    }

    /// `POST /v1/auth/logout` with this access token.
    pub async fn logout(&self, access: &str) -> Res {
        self.post("/v1/auth/logout", Some(access), json!({})).await
    }

    /// `POST /v1/auth/login` with a name and password, whatever it answers.
    pub async fn try_login(&self, name: &str, password: &str) -> Res {
        let body = json!({ "username": name, "password": password });
        self.post("/v1/auth/login", None, body).await
    }

    /// `POST /v1/users` with a name and password, whatever it answers.
    pub async fn try_register(&self, name: &str, password: &str) -> Res {
        let body = json!({ "username": name, "password": password });
        self.post("/v1/users", None, body).await
    }

    /// `POST /v1/auth/password` from `old` to `new` with this access token.
    pub async fn change_password(&self, access: &str, old: &str, new: &str) -> Res {
        let body = json!({ "current_password": old, "new_password": new });
        self.post("/v1/auth/password", Some(access), body).await
    }

    /// Asserts `GET /v1/me` with this token answers `status`; `why` says why.
    pub async fn assert_me(&self, access: &str, status: u16, why: &str) {
        assert_eq!(self.me_status(access).await, status, "{why}");
    }

    /// `POST /v1/admin/users/{user_id}/{action}` (lock, unlock,
    /// revoke-sessions) as the bootstrap admin.
    pub async fn admin_user_action(&self, user_id: &str, action: &str, body: Value) -> Res {
        let path = format!("/v1/admin/users/{user_id}/{action}");
        self.admin_post(&path, body).await
    }

    /// `POST /v1/admin/keys/rotate` with this body.
    pub async fn rotate_key(&self, body: Value) -> Res {
        self.admin_post("/v1/admin/keys/rotate", body).await
    }

    /// The admin view of the user called `name`.
    pub async fn admin_user(&self, name: &str) -> Res {
        self.admin_get(&format!("/v1/admin/users?username={name}"))
            .await
    }

    /// `GET path` as it comes: status, headers and body unread.
    pub async fn get_raw(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{}", self.base, path);
        self.http.get(url).send().await.expect("request failed")
    }

    /// The body of `GET path` as text (metrics, HTML).
    pub async fn text(&self, path: &str) -> String {
        let url = format!("{}{}", self.base, path);
        let res = self.http.get(url).send().await.expect("request failed");
        res.text().await.expect("a text body")
    }

    /// The `/metrics` page as text.
    pub async fn metrics_text(&self) -> String {
        self.text("/metrics").await
    }

    /// Registers a fresh user named after `prefix` and logs it in once.
    pub async fn signup(&self, prefix: &str) -> (String, Session) {
        let name = username(prefix);
        let user_id = self.register(&name).await;
        let s = self.login(&name).await;
        assert_eq!(s.user_id, user_id, "{name} logged in as someone else");
        (name, s)
    }

    /// Registers a fresh user named after `prefix` with `N` sessions, as an
    /// array a test can take apart.
    pub async fn signup_many<const N: usize>(&self, prefix: &str) -> (String, [Session; N]) {
        let (name, sessions) = self.signup_with_sessions(prefix, N).await;
        (name, sessions.try_into().expect("N sessions"))
    }

    /// Registers a fresh user named after `prefix` with `n` sessions.
    pub async fn signup_with_sessions(&self, prefix: &str, n: usize) -> (String, Vec<Session>) {
        let name = username(prefix);
        self.register(&name).await;
        let mut sessions = Vec::new();
        for _ in 0..n {
            sessions.push(self.login(&name).await);
        }
        (name, sessions)
    }
}

/// `POST {base}/oauth/introspect` with this form, and a bearer if given.
pub async fn introspect(
    http: &reqwest::Client,
    base: &str,
    bearer: Option<&str>,
    form: &[(&str, &str)],
) -> Res {
    let mut req = http.post(format!("{base}/oauth/introspect")).form(form);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    Res::read(req.send().await.expect("introspect request failed")).await
}

/// A fresh backend of `kind` and one instance on its in-process bus.
pub async fn start(kind: Kind) -> (Backend, TestApp) {
    let b = Backend::new(kind).await;
    let app = b.spawn().await;
    (b, app)
}

/// A fresh backend of `kind` and one instance whose settings `tune` set.
pub async fn start_tuned(kind: Kind, tune: impl FnOnce(&mut Settings)) -> (Backend, TestApp) {
    let b = Backend::new(kind).await;
    let mut settings = b.settings();
    tune(&mut settings);
    let app = b.spawn_with(settings, None).await;
    (b, app)
}

/// A fresh PostgreSQL backend and `n` instances subscribed to its Redis
/// channel.
pub async fn pg_fleet(n: usize) -> (Backend, Vec<TestApp>) {
    let b = Backend::new(Kind::Postgres).await;
    let fleet = b.spawn_fleet(n).await;
    (b, fleet)
}

/// A fresh PostgreSQL fleet of three and a user registered through the
/// first: the fleet, the user's name and id.
pub async fn fleet_with_user(prefix: &str) -> (Backend, Vec<TestApp>, String, String) {
    let (b, fleet) = pg_fleet(3).await;
    let name = username(prefix);
    let user_id = fleet[0].register(&name).await;
    (b, fleet, name, user_id)
}

/// The first three instances of a fleet, by reference.
pub fn trio(fleet: &[TestApp]) -> [&TestApp; 3] {
    [&fleet[0], &fleet[1], &fleet[2]]
}

/// Stops every instance of a fleet.
pub async fn stop_all(fleet: Vec<TestApp>) {
    for app in fleet {
        app.stop().await;
    }
}

/// The strings of a JSON array, sorted.
pub fn sorted_strings(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

/// The session ids of these sessions, sorted.
pub fn sorted_session_ids(sessions: &[&Session]) -> Vec<String> {
    let mut out: Vec<String> = sessions.iter().map(|s| s.session_id.clone()).collect();
    out.sort();
    out
}

// ------------------------------------------------------------ store level

/// The "now" of the store-level tests.
pub const NOW: Timestamp = Timestamp::from_ms(1_800_000_000_000);

/// `NOW` moved by `ms` milliseconds (negative: earlier).
pub fn now_plus(ms: i64) -> Timestamp {
    Timestamp::from_ms(NOW.ms() + ms)
}

/// A session to log in: its record and its refresh token's hash.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub record: SessionRecord,
    pub refresh_hash: [u8; 32],
}

impl std::ops::Deref for NewSession {
    type Target = SessionRecord;

    fn deref(&self) -> &SessionRecord {
        &self.record
    }
}

impl std::ops::DerefMut for NewSession {
    fn deref_mut(&mut self) -> &mut SessionRecord {
        &mut self.record
    }
}

/// A fresh store of one kind, and the backend it lives on.
pub struct StoreFixture {
    pub b: Backend,
    pub store: Store,
}

impl StoreFixture {
    /// A migrated, empty store of `kind`.
    pub async fn new(kind: Kind) -> Self {
        let b = Backend::new(kind).await;
        let store = b.store().await;
        StoreFixture { b, store }
    }

    /// Registers `name` (a fake hash, no roles) at `NOW`; its id.
    pub async fn user(&self, name: &str) -> Uuid {
        let id = Uuid::now_v7();
        self.user_with(id, name, "$argon2id$fake").await;
        id
    }

    /// Registers the user `id` called `name` with this password hash at `NOW`.
    pub async fn user_with(&self, id: Uuid, name: &str, hash: &str) {
        self.store
            .register(id, name, hash, &[], &Stamp::new(&Meta::system(), NOW))
            .await
            .unwrap();
    }

    /// Logs `session` in at `now` (its creation time); what the store answers.
    pub async fn login_at(&self, session: &NewSession, now: Timestamp) -> Login {
        let record = SessionRecord {
            created_at: now,
            ..session.record.clone()
        };
        self.store
            .login(
                &record,
                &session.refresh_hash,
                may_log_in,
                &Stamp::new(&Meta::system(), now),
            )
            .await
            .unwrap()
    }

    /// A new session of `user` (see `new_session`), logged in at `NOW`.
    pub async fn session(&self, user: Uuid, n: u8) -> NewSession {
        let s = new_session(user, n);
        self.login_at(&s, NOW).await;
        s
    }
}

/// Ending `session_id` as the service asks the store to (the owner's, or
/// any when `owner` is None), by the domain's decision.
pub fn end_rule(session_id: Uuid, owner: Option<Uuid>, how: SessionEnd) -> EndRule {
    Box::new(move |found| {
        end_session(
            session_id,
            found.map(|s| s.user_id),
            found.is_some_and(|s| s.revoked_at.is_some()),
            owner,
            how,
        )
    })
}

/// A new web session of `user` whose refresh token hashes to `[n; 32]`,
/// its refresh token valid for an hour after `NOW`.
pub fn new_session(user: Uuid, n: u8) -> NewSession {
    NewSession {
        record: SessionRecord {
            id: Uuid::now_v7(),
            user_id: user,
            client_type: "web".into(),
            device_id: None,
            ip: Some("127.0.0.1".into()),
            user_agent: None,
            created_at: NOW,
            refresh_expires_at: now_plus(3_600_000),
            revoked_at: None,
            terms: Default::default(),
        },
        refresh_hash: [n; 32],
    }
}

/// G6 under load: `writers` tasks spread over `stores` (one per instance,
/// or one shared), each appending `each` events one per call, while a
/// reader on `reader` polls "after last seen". Every seq the reader saw,
/// in the order it saw them.
pub async fn appends_seen_by_a_poller(
    stores: &[Store],
    reader: Store,
    writers: usize,
    each: usize,
) -> Vec<i64> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let poller = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut last = 0;
            loop {
                let finished = done.load(Ordering::Acquire);
                let page = reader.read_after(last, 1000).await.unwrap();
                for e in &page {
                    seen.push(e.seq);
                    last = e.seq;
                }
                if finished && page.is_empty() {
                    return seen;
                }
            }
        })
    };
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = stores[w % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..each {
                let e = recall::events::Event::LoggedOut {
                    user_id: Uuid::now_v7(),
                    session_id: Uuid::now_v7(),
                };
                store
                    .append_raw(vec![e], &Stamp::new(&Meta::system(), NOW))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, Ordering::Release);
    poller.await.unwrap()
}
