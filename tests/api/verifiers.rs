//! Reach, on the user's side: verifier sidecars (`recall verifier`, real
//! processes with no database, Redis or master key) following a fleet of
//! three Recall instances on PostgreSQL and Redis. Every revocation kind
//! reaches them; a killed upstream is resumed from another by
//! Last-Event-ID; a cut feed fails closed and recovers.

use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::feed::{admin_delete, create_service, post_204, user};
use crate::fixtures::{introspect, pg_fleet, stop_all};
use crate::fleet::Proxy;
use crate::helpers::{eventually, Backend, Kind, Session, TestApp};

/// A generous bound for a revocation to reach a verifier (the benchmark
/// measures the real figure).
const BOUND: Duration = Duration::from_secs(3);

/// Reads a child's stdout until the line `prefix<port>`; returns the port.
pub async fn port_from(child: &mut Child, prefix: &str) -> u16 {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(p) = line.strip_prefix(prefix) {
                return p.trim().parse::<u16>().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("the process never printed {prefix:?}"))
}

/// A `recall verifier` process.
pub struct Sidecar {
    child: Child,
    pub base: String,
    pub http: reqwest::Client,
}

impl Sidecar {
    /// Starts one on a free loopback port and waits until it is ready.
    pub async fn start(upstreams: &[String], token: &str, staleness_ms: u64) -> Sidecar {
        Sidecar::start_with(upstreams, token, staleness_ms, &[]).await
    }

    /// `start`, with more flags (`--public-url`, `--trusted-proxies`).
    pub async fn start_with(
        upstreams: &[String],
        token: &str,
        staleness_ms: u64,
        flags: &[&str],
    ) -> Sidecar {
        let mut child = Command::new(env!("CARGO_BIN_EXE_recall"))
            .args(["verifier", "--upstream", &upstreams.join(",")])
            .args(["--service-token", token, "--bind", "127.0.0.1:0"])
            .args(["--max-staleness-ms", &staleness_ms.to_string()])
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("recall verifier starts");
        let port = port_from(&mut child, "recall verifier listening on port ").await;
        let sidecar = Sidecar {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let ready = eventually(Duration::from_secs(10), || async {
            sidecar.get("/readyz").await == 200
        })
        .await;
        assert!(ready.is_some(), "the sidecar never became ready");
        sidecar
    }

    async fn get(&self, path: &str) -> u16 {
        match self.http.get(format!("{}{path}", self.base)).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// A request without a body; the response as it comes.
    pub async fn raw(&self, method: Method, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        let req = self.http.request(method, url);
        req.send().await.expect("sidecar answers")
    }

    /// Forward auth: the status, and `X-User-Id` when admitted.
    pub async fn verify(&self, access: &str) -> (u16, Option<String>) {
        let res = self
            .http
            .get(format!("{}/v1/auth/verify", self.base))
            .bearer_auth(access)
            .send()
            .await
            .expect("sidecar answers");
        let user = res
            .headers()
            .get("x-user-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (res.status().as_u16(), user)
    }

    /// Waits until the sidecar answers `status` for `access`.
    pub async fn until(&self, access: &str, status: u16, limit: Duration) -> Option<Duration> {
        eventually(limit, || async { self.verify(access).await.0 == status }).await
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

async fn both(sidecars: &[Sidecar], access: &str, status: u16, what: &str) {
    for (i, s) in sidecars.iter().enumerate() {
        let took = s.until(access, status, BOUND).await;
        assert!(
            took.is_some(),
            "{what}: verifier {i} never answered {status}"
        );
    }
}

fn upstreams(fleet: &[TestApp]) -> Vec<String> {
    fleet.iter().map(|a| a.base.clone()).collect()
}

/// A PostgreSQL fleet of `n`, the token of a service credential called
/// `name`, and a
/// sidecar following the whole fleet with this staleness bound (ms).
async fn fleet_with_sidecar(
    n: usize,
    name: &str,
    staleness_ms: u64,
) -> (Backend, Vec<TestApp>, String, Sidecar) {
    let (b, fleet) = pg_fleet(n).await;
    let (_, token) = create_service(&fleet[0], name).await;
    let sidecar = Sidecar::start(&upstreams(&fleet), &token, staleness_ms).await;
    (b, fleet, token, sidecar)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_revocation_kind_reaches_both_verifiers() {
    let b = Backend::new(Kind::Postgres).await;
    // No concurrent-refresh grace, so a reused refresh token is theft at once.
    let fleet = b
        .spawn_subscribed_fleet(3, |s| s.refresh_grace_secs = 0)
        .await;
    let (_, token) = create_service(&fleet[0], "sidecars").await;
    let ups = upstreams(&fleet);
    let sidecars = vec![
        Sidecar::start(&ups, &token, 5000).await,
        Sidecar::start(&ups[1..], &token, 5000).await,
    ];
    let (a, bb, c) = (&fleet[0], &fleet[1], &fleet[2]);
    let s = user(a, "reach").await;
    for v in &sidecars {
        // Fresh within the bound (a loaded machine may blip stale: fail closed).
        assert!(v.until(&s.access, 204, BOUND).await.is_some());
        let (status, who) = v.verify(&s.access).await;
        assert_eq!(status, 204);
        assert_eq!(who.as_deref(), Some(s.user_id.as_str()));
        assert_eq!(v.verify("not.a.token").await.0, 401);
    }
    // logout
    post_204(bb, "/v1/auth/logout", &s.access).await;
    both(&sidecars, &s.access, 401, "logout").await;
    // logout-all
    let name = crate::helpers::username("all");
    a.register(&name).await;
    let (s1, s2) = (a.login(&name).await, c.login(&name).await);
    post_204(c, "/v1/auth/logout-all", &s1.access).await;
    both(&sidecars, &s2.access, 401, "logout-all").await;
    // logout-others
    let name = crate::helpers::username("others");
    a.register(&name).await;
    let (keep, other) = (a.login(&name).await, bb.login(&name).await);
    post_204(a, "/v1/auth/logout-others", &keep.access).await;
    both(&sidecars, &other.access, 401, "logout-others").await;
    both(
        &sidecars,
        &keep.access,
        204,
        "logout-others keeps the caller",
    )
    .await;
    // admin revoke
    let r = user(bb, "revoked").await;
    let res = c
        .admin_user_action(&r.user_id, "revoke-sessions", json!({}))
        .await;
    assert_eq!(res.status, 200);
    both(&sidecars, &r.access, 401, "admin revoke").await;
    // lock: 403 account_locked, as Recall answers
    let l = user(a, "locked").await;
    let res = bb
        .admin_user_action(&l.user_id, "lock", json!({ "duration_secs": 600 }))
        .await;
    assert_eq!(res.status, 200);
    both(&sidecars, &l.access, 403, "lock").await;
    // password change (other sessions)
    let name = crate::helpers::username("pw");
    a.register(&name).await;
    let (here, there) = (a.login(&name).await, c.login(&name).await);
    let res = a
        .post(
            "/v1/auth/password",
            Some(&here.access),
            json!({ "current_password": crate::helpers::PASSWORD, "new_password": "another password 2" }),
        )
        .await;
    assert_eq!(res.status, 204);
    both(&sidecars, &there.access, 401, "password change").await;
    // refresh-token reuse
    let u = user(c, "reuse").await;
    let rotated = a.refresh(&u.refresh).await;
    assert_eq!(rotated.status, 200);
    let again = bb.refresh(&u.refresh).await;
    assert_eq!(again.status, 401);
    assert!(again.body["error_description"]
        .as_str()
        .is_some_and(|d| d.contains("reuse")));
    both(&sidecars, &u.access, 401, "refresh-token reuse").await;
    let successor = rotated.body["access_token"].as_str().unwrap();
    both(&sidecars, successor, 401, "reuse ends the whole session").await;
    // compromised rotation: old tokens die, refreshed ones (new key) pass
    let k = user(a, "key").await;
    let res = c.rotate_key(json!({ "compromised": true })).await;
    assert_eq!(res.status, 200);
    both(&sidecars, &k.access, 401, "compromised rotation").await;
    let renewed = bb.refresh(&k.refresh).await;
    assert_eq!(renewed.status, 200);
    let fresh = renewed.body["access_token"].as_str().unwrap();
    both(&sidecars, fresh, 204, "a token of the new key").await;
    // service revoke: the credential the sidecars use ends; they fail closed.
    let list = a.admin_get("/v1/admin/services").await;
    let id = list.body["services"][0]["service_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let del = admin_delete(bb, &format!("/v1/admin/services/{id}")).await;
    assert_eq!(del.status, 204);
    for (i, v) in sidecars.iter().enumerate() {
        let took = v.until(fresh, 503, Duration::from_secs(10)).await;
        assert!(
            took.is_some(),
            "verifier {i} kept answering after its credential ended"
        );
    }
    for s in sidecars {
        s.stop().await;
    }
    stop_all(fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upstream_is_resumed_elsewhere_without_missing_an_item() {
    // The verifier follows A first, then B, then C.
    let (_b, mut fleet, _, v) = fleet_with_sidecar(3, "failover", 5000).await;
    let mut sessions: Vec<Session> = Vec::new();
    for _ in 0..30 {
        sessions.push(user(&fleet[1], "burst").await);
    }
    for s in &sessions {
        assert!(v.until(&s.access, 204, BOUND).await.is_some());
    }
    // A burst of revocations through B, with A killed in the middle.
    let a = fleet.remove(0);
    for (i, s) in sessions.iter().enumerate() {
        if i == 10 {
            a.running.stop().await;
            break;
        }
        post_204(&fleet[0], "/v1/auth/logout", &s.access).await;
    }
    for s in &sessions[10..] {
        post_204(&fleet[0], "/v1/auth/logout", &s.access).await;
    }
    for (i, s) in sessions.iter().enumerate() {
        let took = v.until(&s.access, 401, Duration::from_secs(10)).await;
        assert!(took.is_some(), "revocation {i} never reached the verifier");
    }
    let survivor = user(&fleet[1], "after").await;
    assert!(v.until(&survivor.access, 204, BOUND).await.is_some());
    v.stop().await;
    stop_all(fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_feed_fails_closed_within_the_bound_and_recovers() {
    let (_b, fleet) = pg_fleet(1).await;
    let (_, token) = create_service(&fleet[0], "cut").await;
    let proxy = Proxy::new(fleet[0].base.trim_start_matches("http://").to_owned()).await;
    let staleness = 1500;
    let v = Sidecar::start(
        &[format!("http://127.0.0.1:{}", proxy.port)],
        &token,
        staleness,
    )
    .await;
    let s = user(&fleet[0], "cut").await;
    assert!(v.until(&s.access, 204, BOUND).await.is_some());
    proxy.cut();
    let cut_at = tokio::time::Instant::now();
    let took = v.until(&s.access, 503, Duration::from_secs(10)).await;
    assert!(
        took.is_some(),
        "the verifier kept answering with the feed cut"
    );
    assert!(
        cut_at.elapsed() <= Duration::from_millis(staleness + 3000),
        "failed closed only after {:?}",
        cut_at.elapsed()
    );
    // Revoked while cut: once the feed is back, the verifier knows.
    let other = user(&fleet[0], "cut2").await;
    post_204(&fleet[0], "/v1/auth/logout", &s.access).await;
    proxy.restore();
    assert!(v
        .until(&other.access, 204, Duration::from_secs(10))
        .await
        .is_some());
    assert!(v.until(&s.access, 401, BOUND).await.is_some());
    v.stop().await;
    stop_all(fleet).await;
}

/// Found by the soak (bench/SOAK.md): the verifier moved its cursor only on
/// `revocations` frames, so while the log's newest events were logins and
/// refreshes (no revocation items), no `head` found it caught up and it
/// failed closed with 503 one staleness bound after the last revocation,
/// with its upstream healthy. A head now moves the cursor to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stretch_without_revocations_is_not_staleness() {
    let staleness = 1500;
    let (_b, fleet, _, v) = fleet_with_sidecar(1, "quiet", staleness).await;
    let first = user(&fleet[0], "quiet").await;
    post_204(&fleet[0], "/v1/auth/logout", &first.access).await;
    assert!(v.until(&first.access, 401, BOUND).await.is_some());
    // Only logins and refreshes from here, for three staleness bounds.
    let s = user(&fleet[0], "quiet").await;
    let until = tokio::time::Instant::now() + Duration::from_millis(3 * staleness);
    while tokio::time::Instant::now() < until {
        let _ = user(&fleet[0], "quieter").await;
        let (status, _) = v.verify(&s.access).await;
        assert_eq!(
            status, 204,
            "a healthy upstream with no revocations is not stale"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // And revocations still arrive.
    post_204(&fleet[0], "/v1/auth/logout", &s.access).await;
    assert!(v.until(&s.access, 401, BOUND).await.is_some());
    v.stop().await;
    stop_all(fleet).await;
}

/// The sidecar answers RFC 7662 introspection from its own state, so any
/// language's introspection client works against localhost: the same
/// answer as Recall's, `active: false` once revoked, 503 when stale; a
/// wrong method is 405 with `Allow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_answers_introspection_and_fails_closed() {
    let (_b, mut fleet, token, sidecar) = fleet_with_sidecar(1, "introspect", 1000).await;
    let s = user(&fleet[0], "sideintro").await;
    let ask = |t: String| {
        sidecar
            .http
            .post(format!("{}/oauth/introspect", sidecar.base))
            .form(&[("token", t)])
            .send()
    };
    let res = ask(s.access.clone()).await.unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["sub"], s.user_id.as_str());
    assert_eq!(body["sid"], s.session_id.as_str());
    assert_eq!(body["token_type"], "Bearer");
    // Recall's own answer agrees on every field it shares.
    let form = [("token", s.access.as_str())];
    let recall = introspect(&fleet[0].http, &fleet[0].base, Some(&token), &form)
        .await
        .body;
    for field in [
        "active",
        "iss",
        "aud",
        "sub",
        "sid",
        "jti",
        "exp",
        "iat",
        "client_type",
    ] {
        assert_eq!(body[field], recall[field], "{field}");
    }
    let forged = ask("not.a.token".into()).await.unwrap();
    assert_eq!(
        forged.json::<serde_json::Value>().await.unwrap(),
        json!({ "active": false })
    );
    post_204(&fleet[0], "/v1/auth/logout", &s.access).await;
    let gone = eventually(BOUND, || async {
        let r = ask(s.access.clone()).await.unwrap();
        r.json::<serde_json::Value>().await.unwrap()["active"] == false
    })
    .await;
    assert!(gone.is_some(), "the sidecar kept a logged-out token active");
    let get = sidecar.raw(Method::GET, "/oauth/introspect").await;
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let post = sidecar.raw(Method::POST, "/v1/auth/verify").await;
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET");
    // Recall gone: once stale, 503 with Retry-After, never a guess.
    for app in fleet.drain(..) {
        app.stop().await;
    }
    let s2 = s.access.clone();
    let closed = eventually(Duration::from_secs(10), || async {
        ask(s2.clone()).await.is_ok_and(|r| r.status() == 503)
    })
    .await;
    assert!(closed.is_some(), "the sidecar never failed closed");
    let res = ask(s.access.clone()).await.unwrap();
    assert!(res.headers().contains_key("retry-after"));
    sidecar.stop().await;
}
