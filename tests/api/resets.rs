//! Cancel safety (G11): clients that reset their connections at random
//! points (mid-body, just after it, while the hash runs, while the store
//! commits) on every write route, many at once, on both stores. Afterwards
//! every request is served as it should be, every 2xx a client read is in
//! the log, and nothing that got no 2xx is half applied: the read models
//! agree with the log row for row.
//!
//! Against the store of before (SQLite's `BEGIN IMMEDIATE` awaited before
//! its rollback guard existed) the waves below leave the writer connection
//! inside a transaction, and every later write answers 500.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::consistency::read_models_match_the_log;
use crate::fixtures::start;
use crate::helpers::{
    assert_error, events, username, Kind, Session, TestApp, ADMIN_TOKEN, PASSWORD,
};

/// A small seeded generator (splitmix64): a failing run prints its seed,
/// and `RECALL_TEST_RESET_SEED` replays it.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// How a client treats one request.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Sends this many bytes of the request (never all), then resets.
    Cut(usize),
    /// Sends the whole request, waits this long, then resets.
    ResetAfter(Duration),
    /// Sends the whole request and reads the answer.
    Read,
}

fn plan(rng: &mut Rng, len: usize) -> Plan {
    match rng.below(100) {
        0..=24 => Plan::Cut(1 + rng.below(len.saturating_sub(1) as u64) as usize),
        // From "just after" through the hash (~16 ms a verify, more when
        // queued) to the commit.
        25..=74 => Plan::ResetAfter(Duration::from_micros(rng.below(60_000))),
        _ => Plan::Read,
    }
}

/// One HTTP/1.1 request as bytes.
fn request(method: &str, path: &str, bearer: Option<&str>, body: Option<&Value>) -> Vec<u8> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = bearer {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Sends `req` to `port` as `plan` says; the status and JSON body when read.
async fn send(port: u16, req: &[u8], plan: Plan) -> Option<(u16, Value)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    match plan {
        Plan::Cut(n) => {
            let _ = conn.write_all(&req[..n.min(req.len())]).await;
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        Plan::ResetAfter(wait) => {
            let _ = conn.write_all(req).await;
            tokio::time::sleep(wait).await;
        }
        Plan::Read => {
            conn.write_all(req).await.ok()?;
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut answer))
                .await
                .ok()?
                .ok()?;
            let text = String::from_utf8_lossy(&answer);
            let status = text.split(' ').nth(1)?.parse().ok()?;
            let body = text
                .split_once("\r\n\r\n")
                .map(|(_, b)| serde_json::from_str(b).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            return Some((status, body));
        }
    }
    // Linger 0: closing sends RST instead of FIN.
    let _ = conn.set_zero_linger();
    drop(conn);
    None
}

/// What the clients know: users, live sessions, and every 2xx they read.
#[derive(Default)]
struct Known {
    users: Vec<(String, String)>,
    sessions: Vec<Session>,
    /// (route, what the answer names: a user, session or seq) per 2xx.
    acknowledged: Vec<(&'static str, Value)>,
}

/// One random write, with a random plan.
async fn one_write(app: &TestApp, known: &Mutex<Known>, rng: &mut Rng) {
    let port = app.running.port;
    let (user, session) = {
        let k = known.lock();
        let user = k.users[rng.below(k.users.len() as u64) as usize].clone();
        let session = (!k.sessions.is_empty())
            .then(|| k.sessions[rng.below(k.sessions.len() as u64) as usize].clone());
        (user, session)
    };
    let access = session.as_ref().map(|s| s.access.clone());
    let (route, req): (&'static str, Vec<u8>) = match rng.below(13) {
        0 => {
            let name = username("rst");
            let body = json!({ "username": name, "password": PASSWORD });
            ("register", request("POST", "/v1/users", None, Some(&body)))
        }
        1..=3 => {
            // Mostly the right password; now and then a wrong one.
            let password = if rng.below(4) == 0 {
                "wrong password"
            } else {
                PASSWORD
            };
            let body = json!({ "username": user.1, "password": password });
            (
                "login",
                request("POST", "/v1/auth/login", None, Some(&body)),
            )
        }
        4 | 5 => {
            let refresh = session
                .as_ref()
                .map(|s| s.refresh.clone())
                .unwrap_or_default();
            let body = json!({ "refresh_token": refresh });
            (
                "refresh",
                request("POST", "/v1/auth/refresh", None, Some(&body)),
            )
        }
        6 => (
            "logout",
            request("POST", "/v1/auth/logout", access.as_deref(), None),
        ),
        7 => (
            "logout-others",
            request("POST", "/v1/auth/logout-others", access.as_deref(), None),
        ),
        8 => {
            // The right current password and a new one that is the same,
            // so every user keeps a known password.
            let body = json!({ "current_password": PASSWORD, "new_password": PASSWORD });
            (
                "password",
                request("POST", "/v1/auth/password", access.as_deref(), Some(&body)),
            )
        }
        9 => {
            let path = format!("/v1/admin/users/{}/lock", user.0);
            let body = json!({ "duration_secs": 1 + rng.below(3), "reason": "reset test" });
            (
                "lock",
                request("POST", &path, Some(ADMIN_TOKEN), Some(&body)),
            )
        }
        10 => {
            let path = format!("/v1/admin/users/{}/unlock", user.0);
            ("unlock", request("POST", &path, Some(ADMIN_TOKEN), None))
        }
        11 => {
            let path = format!("/v1/admin/users/{}/revoke-sessions", user.0);
            let body = json!({ "reason": "reset test" });
            (
                "revoke-sessions",
                request("POST", &path, Some(ADMIN_TOKEN), Some(&body)),
            )
        }
        _ => {
            let body = json!({ "compromised": rng.below(2) == 0 });
            (
                "rotate",
                request(
                    "POST",
                    "/v1/admin/keys/rotate",
                    Some(ADMIN_TOKEN),
                    Some(&body),
                ),
            )
        }
    };
    let plan = plan(rng, req.len());
    let Some((status, body)) = send(port, &req, plan).await else {
        return;
    };
    assert!(
        status < 500 || status == 503,
        "{route} answered {status} {body} ({plan:?})"
    );
    if !(200..300).contains(&status) {
        return;
    }
    let mut k = known.lock();
    match route {
        "register" => {
            let id = body["user_id"].as_str().unwrap_or_default().to_owned();
            k.acknowledged.push((route, json!(id)));
            k.users
                .push((id, body["username"].as_str().unwrap_or_default().to_owned()));
        }
        "login" | "refresh" => {
            let sid = body["session_id"].as_str().unwrap_or_default().to_owned();
            k.acknowledged.push((route, json!(sid)));
            let owner = match (route, &session) {
                ("refresh", Some(s)) => s.user_id.clone(),
                _ => user.0.clone(),
            };
            k.sessions.push(Session::from_body(&body, &owner));
        }
        "logout" | "password" => {
            let sid = session.map(|s| s.session_id).unwrap_or_default();
            k.acknowledged.push((route, json!(sid)));
        }
        "logout-others" => {
            let uid = session.map(|s| s.user_id).unwrap_or_default();
            k.acknowledged.push((route, json!(uid)));
        }
        _ => k.acknowledged.push((route, body["seq"].clone())),
    }
}

/// Every 2xx a client read names an event of the right kind in the log.
async fn acknowledged_are_in_the_log(app: &TestApp, known: &Known) {
    let log = all_events(app).await;
    let by_seq = |seq: i64| log.iter().find(|e| e["seq"] == seq);
    let about_session = |types: &[&str], sid: &str| {
        log.iter().any(|e| {
            types.contains(&e["type"].as_str().unwrap_or_default())
                && (e["session_id"] == sid || e["data"].to_string().contains(sid))
        })
    };
    for (route, named) in &known.acknowledged {
        let found = match *route {
            "register" => log
                .iter()
                .any(|e| e["type"] == "user_registered" && e["user_id"] == *named),
            "login" => about_session(&["login_succeeded"], named.as_str().unwrap_or("?")),
            "refresh" => about_session(&["session_refreshed"], named.as_str().unwrap_or("?")),
            "logout" => {
                let sid = named.as_str().unwrap_or("?");
                // Idempotent: an already ended session answers 204 with no
                // new event, so the session's end must be in the log.
                log.iter()
                    .any(|e| e["data"].to_string().contains(sid) && ends_sessions(e))
            }
            "password" => about_session(&["password_changed"], named.as_str().unwrap_or("?")),
            "logout-others" => log
                .iter()
                .any(|e| e["type"] == "user_sessions_revoked" && e["user_id"] == *named),
            _ => {
                let seq = named.as_i64().unwrap_or(-1);
                by_seq(seq).is_some_and(|e| {
                    let t = e["type"].as_str().unwrap_or_default();
                    match *route {
                        "lock" => t == "user_locked",
                        "unlock" => t == "user_unlocked",
                        "revoke-sessions" => t == "user_sessions_revoked",
                        _ => t == "key_rotated",
                    }
                })
            }
        };
        assert!(
            found,
            "{route} answered 2xx naming {named}, but the log has no such event"
        );
    }
}

fn ends_sessions(e: &Value) -> bool {
    matches!(
        e["type"].as_str(),
        Some(
            "logged_out"
                | "session_revoked"
                | "user_sessions_revoked"
                | "user_locked"
                | "password_changed"
                | "refresh_token_reused"
        )
    )
}

async fn all_events(app: &TestApp) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let after = out.last().and_then(|e| e["seq"].as_i64()).unwrap_or(0);
        let page = events(app, &format!("after={after}")).await;
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// After the storm, each kind of write is served as it should be.
async fn writes_still_work(app: &TestApp) {
    assert_eq!(app.get("/readyz", None).await.status, 200);
    let (name, s) = app.signup("after").await;
    let user_id = s.user_id.clone();
    let r = app.refresh(&s.refresh).await;
    assert_eq!(r.status, 200, "refresh after the resets: {}", r.body);
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.me_status(&access).await, StatusCode::OK);
    let out = app.logout(&access).await;
    assert_eq!(out.status, 204, "logout after the resets: {}", out.body);
    assert_eq!(app.me_status(&access).await, StatusCode::UNAUTHORIZED);
    let lock = app.admin_user_action(&user_id, "lock", json!({})).await;
    assert_eq!(lock.status, 200, "lock after the resets: {}", lock.body);
    let refused = app.try_login(&name, PASSWORD).await;
    assert_error(&refused, 403, "account_locked");
    let unlock = app.admin_user_action(&user_id, "unlock", json!({})).await;
    assert_eq!(
        unlock.status, 200,
        "unlock after the resets: {}",
        unlock.body
    );
    app.login(&name).await;
}

async fn random_resets_leave_nothing_behind(kind: Kind) {
    let seed = std::env::var("RECALL_TEST_RESET_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand_seed);
    println!("reset test seed {seed} ({kind:?}); replay with RECALL_TEST_RESET_SEED={seed}");
    let _ = tracing_subscriber::fmt()
        .with_env_filter("recall=warn")
        .with_test_writer()
        .try_init();
    let (b, app) = start(kind).await;
    let known = Arc::new(Mutex::new(Known::default()));
    for _ in 0..6 {
        let (name, s) = app.signup("rst").await;
        let id = s.user_id.clone();
        let mut k = known.lock();
        k.users.push((id, name));
        k.sessions.push(s);
    }
    let app = Arc::new(app);
    let clients: Vec<_> = (0..24u64)
        .map(|n| {
            let (app, known) = (app.clone(), known.clone());
            tokio::spawn(async move {
                let mut rng = Rng(seed ^ n.wrapping_mul(0xA24B_AED4_963E_E407));
                for _ in 0..40 {
                    one_write(&app, &known, &mut rng).await;
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("a client panicked");
    }
    let known = Arc::try_unwrap(known)
        .ok()
        .expect("clients done")
        .into_inner();
    println!(
        "{} writes acknowledged of {} users",
        known.acknowledged.len(),
        known.users.len()
    );
    // The server may still finish what reset clients started: let it settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    writes_still_work(&app).await;
    acknowledged_are_in_the_log(&app, &known).await;
    read_models_match_the_log(&b).await;
    // Every user still logs in with their password once unlocked.
    for (id, name) in &known.users {
        let unlock = app.admin_user_action(id, "unlock", json!({})).await;
        assert_eq!(unlock.status, 200, "unlock {name}: {}", unlock.body);
        let res = app.try_login(name, PASSWORD).await;
        assert_eq!(
            res.status, 200,
            "login of {name} after the resets: {}",
            res.body
        );
    }
    Arc::try_unwrap(app).ok().expect("one owner").stop().await;
}

fn rand_seed() -> u64 {
    u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap())
}

/// The reproduction: 8 waves of 100 logins, half for a real user,
/// half for unknown names, each reset 50 ms after it was sent.
async fn login_waves_reset_after_50ms(kind: Kind) {
    let (b, app) = start(kind).await;
    let victim = username("victim");
    let victim_id = app.register(&victim).await;
    for wave in 0..8 {
        let sends: Vec<_> = (0..100)
            .map(|i| {
                let name = if i % 2 == 0 {
                    victim.clone()
                } else {
                    username("nobody")
                };
                let body = json!({ "username": name, "password": PASSWORD });
                let req = request("POST", "/v1/auth/login", None, Some(&body));
                let port = app.running.port;
                async move {
                    send(port, &req, Plan::ResetAfter(Duration::from_millis(50))).await;
                }
            })
            .collect();
        futures_util::future::join_all(sends).await;
        println!("wave {wave} sent");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    writes_still_work(&app).await;
    // Fifty parallel guesses at one username lock it by design (the budget
    // counts guesses before their hashes run, G10); the lock is all they
    // leave: lifted, the victim logs in.
    let res = app.try_login(&victim, PASSWORD).await;
    assert!(
        res.status == 200 || res.error() == "account_locked",
        "the victim's login: {} {}",
        res.status,
        res.body
    );
    let unlock = app.admin_user_action(&victim_id, "unlock", json!({})).await;
    assert_eq!(unlock.status, 200, "{}", unlock.body);
    app.login(&victim).await;
    read_models_match_the_log(&b).await;
    app.stop().await;
}

crate::both_stores!(
    random_resets_leave_nothing_behind,
    login_waves_reset_after_50ms
);
