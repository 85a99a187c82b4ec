//! A fleet of three instances rejects revoked tokens together (G3-G5):
//! Redis notices, gap fills from the log, polling, fail-closed staleness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;
use recall::config::Settings;
use recall::events::{Event, Meta, Stamp};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::fixtures::{pg_fleet, stop_all};
use crate::helpers::{all_reject, eventually, redis_url, Backend, Kind, PASSWORD};

/// A TCP proxy the test can cut (closing every connection and refusing
/// new ones) and restore: stands between instances and Redis or PostgreSQL.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn new(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (cut, conns) = (cut.clone(), conns.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let upstream = upstream.clone();
                    conns.lock().push(tokio::spawn(async move {
                        if let Ok(mut out) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        }
                    }));
                }
            })
        };
        Proxy {
            port,
            cut,
            conns,
            accept,
        }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Settings with polling (and staleness) out of play: only notices count.
fn no_polling(s: &mut Settings) {
    s.poll_interval_ms = 3_600_000;
    s.max_staleness_ms = 3_600_000;
}

/// The Redis server's `host:port`.
fn redis_addr() -> String {
    redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned()
}

/// Case 1: logout, logout-all and password change through A; B and C
/// reject within 100 ms on the Redis notice alone (polling is off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_the_fleet_within_100ms() {
    let b = Backend::new(Kind::Postgres).await;
    let apps = b.spawn_fleet_with(3, no_polling).await;
    let (a, others) = (&apps[0], [&apps[1], &apps[2]]);
    let (name, s) = a.signup_with_sessions("fleet", 4).await;
    // Every instance accepts the tokens before anything happens.
    for app in &apps {
        assert_eq!(app.me_status(&s[0].access).await, 200);
    }
    let limit = Duration::from_millis(100);
    assert_eq!(a.logout(&s[0].access).await.status, 204);
    a.assert_me(&s[0].access, 401, "G2: the serving instance first")
        .await;
    let t = all_reject(&others, &s[0].access, limit)
        .await
        .expect("logout did not reach B and C in 100 ms");
    println!("logout propagated to B and C in {t:?}");
    let pw = a
        .change_password(&s[1].access, PASSWORD, "new password 1")
        .await;
    assert_eq!(pw.status, 204);
    let t = all_reject(&others, &s[2].access, limit)
        .await
        .expect("password change did not reach B and C in 100 ms");
    println!("password change propagated to B and C in {t:?}");
    for app in &apps {
        app.assert_me(&s[1].access, 200, "the changing session lives")
            .await;
    }
    let fresh = a.login_with(&name, "new password 1").await;
    assert_eq!(
        a.post("/v1/auth/logout-all", Some(&fresh.access), json!({}))
            .await
            .status,
        204
    );
    let t = all_reject(&others, &s[1].access, limit)
        .await
        .expect("logout-all did not reach B and C in 100 ms");
    println!("logout-all propagated to B and C in {t:?}");
    // The metrics saw notices and measured their lag.
    let m = apps[1].metrics_text().await;
    let received = m
        .lines()
        .find(|l| l.starts_with("recall_notices_received_total "))
        .unwrap();
    assert_ne!(received, "recall_notices_received_total 0");
    assert!(!m.contains("recall_propagation_lag_seconds_count 0\n"));
    stop_all(apps).await;
}

/// Case 2: Redis unreachable. A revocation still reaches B and C from the
/// log within the poll interval plus a margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_log_poll_carries_revocations() {
    let b = Backend::new(Kind::Postgres).await;
    let proxy = Proxy::new(redis_addr()).await;
    let mut apps = Vec::new();
    for _ in 0..3 {
        let mut s = b.settings();
        s.poll_interval_ms = 300;
        apps.push(b.spawn_with(s, Some(proxy.redis_url())).await);
    }
    let (_, s) = apps[0].signup_with_sessions("fleet", 1).await;
    proxy.cut();
    let cut_at = Instant::now();
    assert_eq!(apps[0].logout(&s[0].access).await.status, 204);
    let t = all_reject(
        &[&apps[1], &apps[2]],
        &s[0].access,
        Duration::from_millis(300 + 1200),
    )
    .await
    .expect("the poll did not carry the revocation");
    println!("with Redis cut, logout reached B and C in {t:?} (poll 300 ms)");
    // Both stay ready: the log still confirms they are caught up.
    for app in &apps {
        let ready = app.get("/readyz", None).await;
        assert_eq!(ready.status, 200, "{}", ready.body);
        assert_eq!(ready.body["bus"]["connected"], false, "{}", ready.body);
    }
    assert!(cut_at.elapsed() < Duration::from_secs(10));
    proxy.restore();
    // Reconnects by itself: notices flow again.
    for app in &apps {
        let up = eventually(Duration::from_secs(5), || async {
            app.get("/readyz", None).await.body["bus"]["connected"] == true
        })
        .await;
        assert!(up.is_some(), "bus did not reconnect");
    }
    stop_all(apps).await;
}

/// Case 3: a lost notice. An event is committed without a notice; the
/// next notice shows a gap, which is filled from the log at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_between_notices_is_filled_from_the_log() {
    let b = Backend::new(Kind::Postgres).await;
    let apps = b.spawn_fleet_with(2, no_polling).await;
    let (_, s) = apps[0].signup_with_sessions("fleet", 2).await;
    let user_id = Uuid::parse_str(&s[0].user_id).unwrap();
    let silent = Uuid::parse_str(&s[0].session_id).unwrap();
    // Committed, never announced: as if its notice were lost.
    let store = b.store().await;
    store
        .append_raw(
            vec![Event::LoggedOut {
                user_id,
                session_id: silent,
            }],
            &Stamp::now(&Meta::system()),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    apps[1]
        .assert_me(&s[0].access, 200, "nobody told B yet")
        .await;
    // The next notice arrives with seq = last + 2.
    assert_eq!(apps[0].logout(&s[1].access).await.status, 204);
    let t = all_reject(&[&apps[1]], &s[0].access, Duration::from_secs(1))
        .await
        .expect("gap not filled");
    println!("gap detected and filled in {t:?}");
    let m = apps[1].metrics_text().await;
    assert!(m.contains("recall_gaps_detected_total 1"), "{m}");
    stop_all(apps).await;
}

/// Case 4: an instance that reaches neither Redis nor the log fails closed
/// after RECALL_MAX_STALENESS_MS, then recovers with what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_instance_fails_closed_and_recovers() {
    let b = Backend::new(Kind::Postgres).await;
    let db = b.db.as_ref().unwrap();
    let pg_proxy = Proxy::new("127.0.0.1:5432".into()).await;
    let redis_proxy = Proxy::new(redis_addr()).await;
    let a = b.spawn_with(b.settings(), Some(redis_url())).await;
    let mut s = b.settings();
    s.database_url = Some(format!(
        "postgres://postgres@127.0.0.1:{}/{}",
        pg_proxy.port, db.name
    ));
    s.poll_interval_ms = 200;
    s.max_staleness_ms = 1500;
    let c = b.spawn_with(s, Some(redis_proxy.redis_url())).await;
    let (_, sessions) = a.signup_with_sessions("fleet", 2).await;
    // Forward auth is purely in-memory: it shows the fail-closed rule itself
    // (routes that read the store would 503 on the cut store anyway).
    let verify = |token: String| {
        let c = &c;
        async move { c.get("/v1/auth/verify", Some(&token)).await.status.as_u16() }
    };
    assert_eq!(verify(sessions[0].access.clone()).await, 204);
    pg_proxy.cut();
    redis_proxy.cut();
    let cut_at = Instant::now();
    // A revocation C cannot hear about.
    assert_eq!(a.logout(&sessions[1].access).await.status, 204);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        verify(sessions[0].access.clone()).await,
        204,
        "still within the staleness bound"
    );
    let closed = eventually(Duration::from_secs(6), || async {
        verify(sessions[0].access.clone()).await == 503
    })
    .await;
    assert!(closed.is_some(), "C never failed closed");
    println!(
        "C failed closed {:?} after the cut (bound 1500 ms)",
        cut_at.elapsed()
    );
    // Staleness counts from the last confirmed poll, at most one poll
    // interval (200 ms) before the cut.
    assert!(
        cut_at.elapsed() >= Duration::from_millis(1250),
        "not before the staleness bound"
    );
    let res = c.get("/v1/auth/verify", Some(&sessions[1].access)).await;
    assert_eq!(res.status, 503, "fail closed, even for the revoked token");
    assert_eq!(res.error(), "unavailable");
    let ready = c.get("/readyz", None).await;
    assert_eq!(ready.status, 503);
    assert!(ready.body["reason"].is_string());
    pg_proxy.restore();
    redis_proxy.restore();
    let back = eventually(Duration::from_secs(10), || async {
        c.get("/readyz", None).await.status == 200
    })
    .await;
    assert!(back.is_some(), "C did not recover");
    assert_eq!(
        verify(sessions[0].access.clone()).await,
        204,
        "honoured again"
    );
    assert_eq!(
        verify(sessions[1].access.clone()).await,
        401,
        "the missed revocation applied"
    );
    assert_eq!(c.me_status(&sessions[0].access).await, 200);
    a.stop().await;
    c.stop().await;
}

/// Case 5: an instance restarted after missing events rejects the revoked
/// tokens from its very first request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_knows_what_it_missed() {
    let (b, mut apps) = pg_fleet(3).await;
    let (_, s) = apps[0].signup_with_sessions("fleet", 3).await;
    let c = apps.pop().unwrap();
    c.stop().await;
    assert_eq!(apps[0].logout(&s[0].access).await.status, 204);
    let path = format!("/v1/admin/users/{}/revoke-sessions", s[1].user_id);
    let admin = apps[1].admin_post(&path, json!({})).await;
    assert_eq!(admin.status, 200);
    assert_eq!(admin.body["revoked_sessions"], 2);
    let c = b.spawn_with(b.settings(), Some(redis_url())).await;
    assert_eq!(c.me_status(&s[0].access).await, 401);
    assert_eq!(c.me_status(&s[2].access).await, 401);
    stop_all(apps).await;
    c.stop().await;
}

/// G7: notices carry ids and the event only; never a password hash or key
/// material.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_carry_no_secrets() {
    let b = Backend::new(Kind::Postgres).await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&b.channel).await.unwrap();
    let app = b.spawn_with(b.settings(), Some(redis_url())).await;
    let (name, s) = app.signup_with_sessions("fleet", 1).await;
    let pw = app
        .change_password(&s[0].access, PASSWORD, "second password")
        .await;
    assert_eq!(pw.status, 204);
    let rot = app.rotate_key(json!({ "compromised": true })).await;
    assert_eq!(rot.status, 200);
    let head = app.recall().store().head().await.unwrap();
    let mut notices = Vec::new();
    let mut stream = pubsub.on_message();
    while notices.len() < head as usize - 1 {
        let msg = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap();
        notices.push(String::from_utf8(msg.get_payload_bytes().to_vec()).unwrap());
    }
    let keys = app.recall().store().keys().await.unwrap();
    let user = app
        .recall()
        .store()
        .user_by_name(&name)
        .await
        .unwrap()
        .unwrap();
    for n in &notices {
        // `tag.json`: authenticated under this deployment's key (G9).
        let opened = b.settings().notice_auth().open(n.as_bytes());
        assert!(opened.is_ok(), "{n}: {opened:?}");
        let (_tag, json) = n.split_once('.').unwrap();
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert!(v["seq"].is_i64(), "{n}");
        assert!(!n.contains("$argon2"), "password hash in {n}");
        assert!(!n.contains(&user.password_hash));
        assert!(!n.contains(crate::helpers::PASSWORD) && !n.contains("second password"));
        for k in &keys {
            let der = b.master.open(&k.kid, &k.private_key_enc).unwrap();
            let signing = <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_der(&der).unwrap();
            assert_eq!(signing.verifying_key().to_bytes().to_vec(), k.public_key);
            let seed = signing.to_bytes();
            for form in [
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, seed),
                base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, seed),
                seed.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    &k.private_key_enc,
                ),
            ] {
                assert!(!n.contains(&form), "key material in {n}");
            }
        }
    }
    assert!(notices.iter().any(|n| n.contains("password_changed")));
    assert!(notices.iter().any(|n| n.contains("key_rotated")));
    app.stop().await;
}
