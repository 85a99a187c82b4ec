//! Test harness: a real PostgreSQL database per test (created and dropped),
//! a Redis channel per test, and in-process Recall instances on port 0.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use recall::bus::{redis::RedisBus, Bus, LocalBus};
use recall::config::Settings;
use recall::events::Meta;
use recall::keys::MasterKey;
use recall::server::{Application, Running};
use recall::service::Recall;
use recall::store::Store;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

pub use crate::scratch::{TempDir, TestDb};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdefghij";
pub const PASSWORD: &str = "correct horse battery";

/// The Redis server of the tests.
pub fn redis_url() -> String {
    std::env::var("RECALL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Which event store a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Sqlite,
}

/// A store a test (or several instances) can share.
pub struct Backend {
    pub db: Option<TestDb>,
    pub dir: TempDir,
    pub master: MasterKey,
    pub channel: String,
    pub local_bus: LocalBus,
}

impl Backend {
    pub async fn new(kind: Kind) -> Self {
        let db = match kind {
            Kind::Postgres => Some(TestDb::new().await),
            Kind::Sqlite => None,
        };
        Backend {
            db,
            dir: TempDir::new(),
            master: MasterKey::generate(),
            channel: format!("recall:test:{}", Uuid::new_v4().simple()),
            local_bus: LocalBus::default(),
        }
    }

    /// Settings for one instance on this backend.
    pub fn settings(&self) -> Settings {
        self.settings_with(&[])
    }

    /// `settings` with more flags, parsed as `recall` parses them (so
    /// `--public-url` sets what RECALL_PUBLIC_URL would, and leaving it out
    /// is what an unset RECALL_PUBLIC_URL is).
    pub fn settings_with(&self, flags: &[&str]) -> Settings {
        // The product's defaults (as `recall` parses its flags), then what
        // tests need: this backend, and room for many logins from 127.0.0.1.
        let defaults = [
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            &self.dir.0.to_string_lossy(),
            "--master-key",
            &self.master.to_base64(),
            "--redis-channel",
            &self.channel,
            "--admin-token",
            ADMIN_TOKEN,
        ];
        let flags = defaults.iter().chain(flags).copied();
        let mut s = Settings::from_flags(flags).expect("test settings");
        s.database_url = self.db.as_ref().map(|d| d.url.clone());
        s.rate_limit_per_min = 1_000_000;
        s.hash_workers = 2;
        s.hash_queue = 64;
        s
    }

    /// A store handle on this backend.
    pub async fn store(&self) -> Store {
        let s = self.settings();
        let store =
            Store::open(s.database_url.as_deref(), &s.sqlite_path(), &s.master_key).unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Starts an instance with `settings`; `redis` picks the Redis bus at
    /// that URL (a proxy, say) instead of the shared in-process one.
    pub async fn spawn_with(&self, settings: Settings, redis: Option<String>) -> TestApp {
        let store = settings.open_store().unwrap();
        store.migrate().await.unwrap();
        let bus: Arc<dyn Bus> = match redis {
            Some(url) => Arc::new(
                RedisBus::new(
                    &url,
                    &settings.redis_channel,
                    settings.notice_auth(),
                    settings.redis_ca_file.as_deref(),
                )
                .unwrap(),
            ),
            None => Arc::new(self.local_bus.clone()),
        };
        let (core, tasks) = recall::startup::start_with(settings, store, bus)
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let app = Application::with_core(listener, core, tasks, 1, false).unwrap();
        TestApp::new(app.spawn())
    }

    /// Starts `n` instances sharing this store and a Redis channel of their
    /// own (each with its own pool, state and Redis connection), every one
    /// subscribed before this returns.
    pub async fn spawn_fleet(&self, n: usize) -> Vec<TestApp> {
        self.spawn_subscribed_fleet(n, |_| {}).await
    }

    /// `spawn_fleet`, each instance's settings first changed by `tune`.
    pub async fn spawn_fleet_with(&self, n: usize, tune: impl Fn(&mut Settings)) -> Vec<TestApp> {
        let mut apps = Vec::new();
        for _ in 0..n {
            let mut s = self.settings();
            tune(&mut s);
            let redis = s.redis_url.clone().unwrap_or_else(redis_url);
            apps.push(self.spawn_with(s, Some(redis)).await);
        }
        apps
    }

    /// Starts `n` instances like `spawn_fleet_with` and waits until every
    /// one is subscribed to the bus, so a notice reaches all of them.
    pub async fn spawn_subscribed_fleet(
        &self,
        n: usize,
        tune: impl Fn(&mut Settings),
    ) -> Vec<TestApp> {
        let apps = self.spawn_fleet_with(n, tune).await;
        wait_subscribed(&apps).await;
        apps
    }

    /// Starts an instance with default test settings on the in-process bus.
    pub async fn spawn(&self) -> TestApp {
        self.spawn_with(self.settings(), None).await
    }
}

/// A running instance and an HTTP client for it.
pub struct TestApp {
    pub running: Running,
    pub base: String,
    pub http: reqwest::Client,
}

/// A response: status, headers and JSON body (Null when empty or not JSON).
pub struct Res {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Res {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

/// A logged-in session.
#[derive(Clone, Debug)]
pub struct Session {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
    pub user_id: String,
}

impl TestApp {
    fn new(running: Running) -> Self {
        TestApp {
            base: running.url(),
            running,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub fn recall(&self) -> &Arc<Recall> {
        &self.running.recall
    }

    /// Sends a request with an optional bearer and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Res {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request failed");
        Res::read(res).await
    }

    /// Sends raw bytes with a content type.
    pub async fn raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        bearer: Option<&str>,
    ) -> Res {
        let mut req = self
            .http
            .post(format!("{}{}", self.base, path))
            .header("content-type", content_type)
            .body(body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        Res::read(req.send().await.expect("request failed")).await
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Res {
        self.call(Method::GET, path, bearer, None).await
    }

    pub async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> Res {
        self.call(Method::POST, path, bearer, Some(body)).await
    }

    pub async fn register(&self, username: &str) -> String {
        let res = self
            .post(
                "/v1/users",
                None,
                json!({ "username": username, "password": PASSWORD }),
            )
            .await;
        assert_eq!(res.status, 201, "register {username}: {}", res.body);
        res.body["user_id"].as_str().unwrap().to_owned()
    }

    pub async fn login(&self, username: &str) -> Session {
        self.login_with(username, PASSWORD).await
    }

    pub async fn login_with(&self, username: &str, password: &str) -> Session {
        let res = self.try_login(username, password).await;
        assert_eq!(res.status, 200, "login {username}: {}", res.body);
        let me = self.get("/v1/me", res.body["access_token"].as_str()).await;
        Session::from_body(&res.body, me.body["user_id"].as_str().unwrap_or_default())
    }

    /// One counter or gauge from `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics request failed")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// GET /v1/me with this token: its status.
    pub async fn me_status(&self, access: &str) -> StatusCode {
        self.get("/v1/me", Some(access)).await.status
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

impl Session {
    pub fn from_body(body: &Value, user_id: &str) -> Self {
        Session {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
            session_id: body["session_id"].as_str().unwrap().to_owned(),
            user_id: user_id.to_owned(),
        }
    }
}

impl Res {
    pub async fn read(res: reqwest::Response) -> Res {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Res {
            status,
            headers,
            body,
        }
    }
}

/// Polls `check` every millisecond until it holds or `limit` passes;
/// returns how long it took.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// Waits until `apps` all answer 401 for this token; returns the slowest
/// instance's time.
pub async fn all_reject(apps: &[&TestApp], access: &str, limit: Duration) -> Option<Duration> {
    let mut slowest = Duration::ZERO;
    let start = std::time::Instant::now();
    for app in apps {
        let left = limit.saturating_sub(start.elapsed());
        eventually(left, || async { app.me_status(access).await == 401 }).await?;
        slowest = slowest.max(start.elapsed());
    }
    Some(slowest)
}

/// Waits (up to 10 s) until every app's bus subscription is up.
pub async fn wait_subscribed(apps: &[TestApp]) {
    for (i, app) in apps.iter().enumerate() {
        let up = eventually(Duration::from_secs(10), || async {
            app.get("/readyz", None).await.body["bus"]["connected"] == true
        })
        .await;
        assert!(up.is_some(), "instance {i} never subscribed to the bus");
    }
}

/// A unique username.
pub fn username(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..10])
}

// ------------------------------------------------- shared by the admin tests

/// How long a fleet has to apply a revocation in these tests.
pub const FLEET: Duration = Duration::from_secs(2);

/// The `kid` in an access token's header.
pub fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// The `iss` claim of an access token (read, not verified).
pub fn iss_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["iss"].as_str().unwrap().to_owned()
}

/// Events of the audit log (admin token), after a query string.
pub async fn events(app: &TestApp, query: &str) -> Vec<Value> {
    let res = app
        .admin_get(&format!("/v1/admin/events?limit=1000&{query}"))
        .await;
    assert_eq!(res.status, 200, "events?{query}: {}", res.body);
    res.body["events"].as_array().unwrap().clone()
}

/// The `at` of an audit event, in ms.
pub fn at_ms(event: &Value) -> i64 {
    rfc3339_ms(event["at"].as_str().unwrap())
}

pub fn rfc3339_ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_millis()
}

/// `kid -> status` from `GET /v1/admin/keys`.
pub async fn key_statuses(app: &TestApp) -> Vec<(String, String)> {
    let res = app.admin_get("/v1/admin/keys").await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["alg"], "EdDSA");
            rfc3339_ms(k["created_at"].as_str().unwrap());
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub fn status_of<'a>(keys: &'a [(String, String)], kid: &str) -> Option<&'a str> {
    keys.iter().find(|(k, _)| k == kid).map(|(_, s)| s.as_str())
}

/// The kids JWKS publishes.
pub async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let res = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(res.status, 200);
    res.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["kty"], "OKP");
            assert_eq!(k["crv"], "Ed25519");
            assert_eq!(k["use"], "sig");
            assert_eq!(k["alg"], "EdDSA");
            k["kid"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Asserts every app answers `GET /v1/me` with this token with `status`
/// and `error` within the fleet bound.
pub async fn answers_everywhere(apps: &[&TestApp], token: &str, status: u16, error: &str) {
    for (i, app) in apps.iter().enumerate() {
        let took = eventually(FLEET, || async move {
            let res = app.get("/v1/me", Some(token)).await;
            res.status == status && (error.is_empty() || res.error() == error)
        })
        .await;
        let last = app.get("/v1/me", Some(token)).await;
        assert!(
            took.is_some(),
            "instance {i}: expected {status} {error} within {FLEET:?}, got {} {}",
            last.status,
            last.body
        );
    }
}

pub fn assert_error(res: &Res, status: u16, error: &str) {
    assert_eq!(res.status, status, "{}", res.body);
    assert_eq!(res.error(), error, "{}", res.body);
    assert!(
        res.body["error_description"].is_string(),
        "error_description: {}",
        res.body
    );
}

/// Registers a user with the admin role on this instance's core.
pub async fn register_admin(app: &TestApp, name: &str) -> String {
    let (id, _) = app
        .recall()
        .admin()
        .create_user(name, PASSWORD.to_owned(), true, &Meta::system())
        .await
        .unwrap();
    id.to_string()
}
