//! G1 under crashes: a 2xx is a promise. The `recall` process is SIGKILLed
//! the moment a logout, a lock or a compromised rotation is acknowledged,
//! many times over, on both stores (for SQLite that process is the one
//! holding the file); after each restart the acknowledged event is in the
//! log and enforced. And a private PostgreSQL is stopped in immediate mode
//! (a crash: no checkpoint, WAL recovery on start) in the middle of a burst
//! of logouts: every acknowledged one survives.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::helpers::{eventually, kid_of, username, Backend, Kind, Session, ADMIN_TOKEN, PASSWORD};
use crate::verifiers::port_from;

/// Kill-after-acknowledgement rounds per action and store
/// (`RECALL_TEST_CRASH_ROUNDS`, default 5).
fn rounds() -> usize {
    std::env::var("RECALL_TEST_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// A `recall serve` process on `b`'s store.
struct Proc {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Proc {
    async fn start(b: &Backend) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_recall"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RECALL_BIND", "127.0.0.1:0")
            // Fixed, so the issuer is the same across restarts.
            .env("RECALL_PUBLIC_URL", "http://recall.crash.test")
            .env("RECALL_DATA_DIR", &b.dir.0)
            .env("RECALL_MASTER_KEY", b.master.to_base64())
            .env("RECALL_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RECALL_RATE_LIMIT_PER_MIN", "1000000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(db) = &b.db {
            cmd.env("RECALL_DATABASE_URL", &db.url);
        }
        let mut child = cmd.spawn().expect("recall starts");
        let port = port_from(&mut child, "recall listening on port ").await;
        let p = Proc {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let ready = eventually(Duration::from_secs(20), || async {
            p.send(reqwest::Method::GET, "/readyz", None, None).await.0 == 200
        })
        .await;
        assert!(ready.is_some(), "recall never became ready");
        p
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                (status, res.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, bearer, Some(body))
            .await
    }

    async fn user(&self) -> (String, Session) {
        let name = username("crash");
        let login = json!({ "username": name, "password": PASSWORD });
        let (status, body) = self.post("/v1/users", None, login.clone()).await;
        assert_eq!(status, 201, "{body}");
        let user_id = body["user_id"].as_str().unwrap().to_owned();
        let (status, body) = self.post("/v1/auth/login", None, login).await;
        assert_eq!(status, 200, "{body}");
        (name, Session::from_body(&body, &user_id))
    }

    /// SIGKILL, and wait for it to be gone.
    async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
    }

    async fn events(&self, kind: &str, user_id: &str) -> Vec<Value> {
        let path = format!("/v1/admin/events?type={kind}&user_id={user_id}&limit=1000");
        let (status, body) = self
            .send(reqwest::Method::GET, &path, Some(ADMIN_TOKEN), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["events"].as_array().cloned().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Logout,
    Lock,
    CompromisedRotation,
}

async fn killed_right_after_the_2xx(kind: Kind) {
    let b = Backend::new(kind).await;
    let mut p = Proc::start(&b).await;
    let mut checked = 0;
    for round in 0..rounds() {
        for action in [Action::Logout, Action::Lock, Action::CompromisedRotation] {
            let (name, s) = p.user().await;
            // The acknowledgement, then SIGKILL at once.
            let (status, body) = match action {
                Action::Logout => p.post("/v1/auth/logout", Some(&s.access), json!({})).await,
                Action::Lock => {
                    let path = format!("/v1/admin/users/{}/lock", s.user_id);
                    p.post(&path, Some(ADMIN_TOKEN), json!({"duration_secs": 3600}))
                        .await
                }
                Action::CompromisedRotation => {
                    p.post(
                        "/v1/admin/keys/rotate",
                        Some(ADMIN_TOKEN),
                        json!({"compromised": true}),
                    )
                    .await
                }
            };
            assert!(
                (200..300).contains(&status),
                "{action:?} round {round}: {status} {body}"
            );
            p.kill().await;
            p = Proc::start(&b).await;
            // The acknowledged event is in the log and enforced.
            let me = p
                .send(reqwest::Method::GET, "/v1/me", Some(&s.access), None)
                .await;
            match action {
                Action::Logout => {
                    assert_eq!(me.0, 401, "{action:?} round {round}: {}", me.1);
                    assert_eq!(p.events("logged_out", &s.user_id).await.len(), 1);
                }
                Action::Lock => {
                    assert_eq!(me.0, 403, "{action:?} round {round}: {}", me.1);
                    let login = json!({ "username": name, "password": PASSWORD });
                    let (status, body) = p.post("/v1/auth/login", None, login).await;
                    assert_eq!(status, 403, "still locked after the crash: {body}");
                    assert_eq!(body["error"], "account_locked");
                    assert_eq!(p.events("user_locked", &s.user_id).await.len(), 1);
                }
                Action::CompromisedRotation => {
                    assert_eq!(me.0, 401, "{action:?} round {round}: {}", me.1);
                    let old = kid_of(&s.access);
                    let (_, keys) = p
                        .send(
                            reqwest::Method::GET,
                            "/v1/admin/keys",
                            Some(ADMIN_TOKEN),
                            None,
                        )
                        .await;
                    let status = keys["keys"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|k| k["kid"] == old.as_str())
                        .map(|k| k["status"].clone());
                    assert_eq!(status, Some(json!("revoked")), "{keys}");
                    assert_eq!(body["previous_kid"], old.as_str());
                }
            }
            checked += 1;
        }
    }
    tracing::info!(?kind, checked, "acknowledged events survived SIGKILL");
    p.kill().await;
}

crate::both_stores!(killed_right_after_the_2xx);

/// Group commit under SIGKILL: 32 clients log sessions out as fast as they
/// can, so the instance's write batches carry many logouts each, and the
/// process is killed mid-burst (mid-batch: the metrics show batches of more
/// than one). No client got a 2xx for a logout the log lacks after the
/// restart, and each acknowledged one is enforced.
async fn killed_mid_batch(kind: Kind) {
    const CLIENTS: usize = 32;
    let b = Backend::new(kind).await;
    let p = Proc::start(&b).await;
    let mut sessions = Vec::new();
    for _ in 0..48 {
        let (name, first) = p.user().await;
        let login = json!({ "username": name, "password": PASSWORD });
        for _ in 0..3 {
            let (status, body) = p.post("/v1/auth/login", None, login.clone()).await;
            assert_eq!(status, 200, "{body}");
            sessions.push(Session::from_body(&body, &first.user_id));
        }
        sessions.push(first);
    }
    let total = sessions.len();
    let pid = p.child.id().expect("recall runs");
    let p = Arc::new(p);
    let queue = Arc::new(Mutex::new(sessions));
    let acked: Arc<Mutex<Vec<Session>>> = Arc::default();
    let enough = Arc::new(tokio::sync::Notify::new());
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (p, queue, acked, enough) = (p.clone(), queue.clone(), acked.clone(), enough.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let Some(s) = queue.lock().pop() else { return };
                let (status, _) = p.post("/v1/auth/logout", Some(&s.access), json!({})).await;
                if status == 204 {
                    let mut acked = acked.lock();
                    acked.push(s);
                    if acked.len() == total / 4 {
                        enough.notify_one();
                    }
                }
            }
        }));
    }
    enough.notified().await;
    let metrics = p.http.get(format!("{}/metrics", p.base)).send().await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    for c in clients {
        c.await.unwrap();
    }
    let metrics = metrics.expect("metrics answered").text().await.unwrap();
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    let (batches, units) = (
        counter("recall_store_write_batches_total "),
        counter("recall_store_write_units_total "),
    );
    assert!(
        units > batches,
        "logouts shared batches: {units} units in {batches} batches"
    );
    let acked = acked.lock().clone();
    assert!(acked.len() < total, "the kill landed mid-burst");
    if let Ok(p) = Arc::try_unwrap(p) {
        p.kill().await;
    }
    let p = Proc::start(&b).await;
    let mut logged_out = std::collections::HashSet::new();
    let users: std::collections::BTreeSet<&str> =
        acked.iter().map(|s| s.user_id.as_str()).collect();
    for user in users {
        for e in p.events("logged_out", user).await {
            logged_out.insert(e["session_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    for s in &acked {
        assert!(
            logged_out.contains(&s.session_id),
            "acknowledged logout of {} is in the log",
            s.session_id
        );
        let me = p
            .send(reqwest::Method::GET, "/v1/me", Some(&s.access), None)
            .await;
        assert_eq!(
            me.0, 401,
            "acknowledged logout of {} is enforced",
            s.session_id
        );
    }
    tracing::info!(
        ?kind,
        acked = acked.len(),
        units,
        batches,
        "killed mid-batch"
    );
    p.kill().await;
}

crate::both_stores!(killed_mid_batch);

/// A PostgreSQL cluster of this test's own, so that crashing it touches no
/// other test. Runs as the `postgres` OS user when the test runs as root.
struct PrivatePg {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl PrivatePg {
    fn new() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("pg_ctl").exists())
            .max()
            .expect("a PostgreSQL bin directory with pg_ctl");
        let dir =
            std::env::temp_dir().join(format!("recall-pgcrash-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePg { bin, dir, port };
        if is_root() {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&pg.dir)
                .status()
                .unwrap();
            assert!(ok.success(), "chown the cluster directory to postgres");
        }
        pg.run(
            "initdb",
            &[
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "-D",
            ],
            true,
        );
        pg.start();
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    /// A PostgreSQL tool, as the postgres OS user when we are root
    /// (initdb and postgres refuse to run as root), from `/`.
    fn tool(&self, tool: &str) -> std::process::Command {
        let program = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        cmd.current_dir("/");
        cmd
    }

    fn run(&self, tool: &str, args: &[&str], with_data: bool) {
        let mut cmd = self.tool(tool);
        cmd.args(args);
        if with_data {
            cmd.arg(self.data());
        }
        let out = cmd.output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").to_string_lossy().into_owned();
        self.run(
            "pg_ctl",
            &["-w", "-o", &opts, "-l", &log, "start", "-D"],
            true,
        );
    }

    /// `pg_ctl stop -m immediate`: every server process quits at once, with
    /// no checkpoint; the next start replays the WAL, as after a crash.
    fn crash(&self) {
        self.run("pg_ctl", &["-w", "-m", "immediate", "stop", "-D"], true);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .args(["-m", "immediate", "stop", "-D", &self.data()])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_crashing_mid_burst_loses_no_acknowledged_logout() {
    let pg = Arc::new(PrivatePg::new());
    let b = Backend::new(Kind::Sqlite).await;
    let mut settings = b.settings();
    settings.database_url = Some(pg.url());
    let app = b.spawn_with(settings.clone(), None).await;
    let mut sessions = Vec::new();
    for _ in 0..120 {
        sessions.push(crate::feed::user(&app, "burst").await);
    }
    // Four clients log the sessions out as fast as they can; PostgreSQL
    // crashes as soon as the first logout is acknowledged.
    let acked: Arc<Mutex<Vec<Session>>> = Arc::default();
    let failed = Arc::new(Mutex::new(0usize));
    let crashed = Arc::new(AtomicBool::new(false));
    let first = Arc::new(tokio::sync::Notify::new());
    let queue = Arc::new(Mutex::new(sessions.clone()));
    let app = Arc::new(app);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (app, queue, acked, failed, first) = (
            app.clone(),
            queue.clone(),
            acked.clone(),
            failed.clone(),
            first.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let Some(s) = queue.lock().pop() else { return };
                let res = app.logout(&s.access).await;
                if res.status == 204 {
                    acked.lock().push(s);
                    first.notify_one();
                } else {
                    *failed.lock() += 1;
                }
            }
        }));
    }
    first.notified().await;
    let crasher = {
        let pg = pg.clone();
        let crashed = crashed.clone();
        tokio::task::spawn_blocking(move || {
            pg.crash();
            crashed.store(true, Ordering::SeqCst);
        })
    };
    crasher.await.unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().clone();
    let failed = *failed.lock();
    tracing::info!(acked = acked.len(), failed, "burst over a PostgreSQL crash");
    assert!(!acked.is_empty());
    assert!(
        failed > 0,
        "the crash landed mid-burst: {} acked, {failed} failed",
        acked.len()
    );
    // Nothing acknowledged while it was down.
    assert!(crashed.load(Ordering::SeqCst));

    // PostgreSQL recovers from its WAL; the same instance reconnects, and a
    // fresh one folds the log from scratch: both reject every acknowledged
    // logout, and the log holds each one.
    let pg_restart = pg.clone();
    tokio::task::spawn_blocking(move || pg_restart.start())
        .await
        .unwrap();
    let ready = eventually(Duration::from_secs(30), || async {
        app.get("/readyz", None).await.status == 200
    })
    .await;
    assert!(ready.is_some(), "the instance came back with the database");
    let fresh = b.spawn_with(settings, None).await;
    let logged_out = crate::helpers::events(&fresh, "type=logged_out").await;
    for s in &acked {
        assert!(
            logged_out
                .iter()
                .any(|e| e["session_id"] == s.session_id.as_str()),
            "acknowledged logout of {} is in the log",
            s.session_id
        );
        for instance in [&*app, &fresh] {
            assert_eq!(instance.me_status(&s.access).await, 401);
        }
    }
    fresh.stop().await;
    if let Ok(app) = Arc::try_unwrap(app) {
        app.stop().await;
    }
}
