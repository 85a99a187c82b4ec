//! SSF push delivery (RFC 8935) to real HTTP receivers, separate listeners:
//! at least once through an outage, and a lease taken over when the
//! instance holding it dies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::both_stores;
use crate::feed::{create_service, post_204, user};
use crate::fixtures::{start, stop_all};
use crate::helpers::{eventually, redis_url, Backend, Kind, TestApp};

/// A push receiver: answers `status` (202 by default) and records every
/// SET it accepted with a 2xx, by jti, with how often it came.
#[derive(Clone)]
struct Receiver {
    port: u16,
    status: Arc<AtomicU16>,
    got: Arc<Mutex<HashMap<String, (String, usize)>>>,
    /// jtis in the order they were accepted.
    order: Arc<Mutex<Vec<String>>>,
    /// Reset every connection (RST) once part of the request has come.
    reset: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(auth: &'static str) -> Receiver {
        Self::start_on(auth, 0).await
    }

    /// A receiver on `port` (0: any free one).
    async fn start_on(auth: &'static str, port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let r = Receiver {
            port: listener.local_addr().unwrap().port(),
            status: Arc::new(AtomicU16::new(202)),
            got: Arc::default(),
            order: Arc::default(),
            reset: Arc::default(),
        };
        let me = r.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
                        if let Some(end) = head_end {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len])
                                    .to_string();
                                let typed = head.contains("content-type: application/secevent+jwt");
                                let authed = head.contains(&format!(
                                    "authorization: {}",
                                    auth.to_ascii_lowercase()
                                ));
                                let status = if !typed || !authed {
                                    400
                                } else {
                                    me.status.load(Ordering::SeqCst)
                                };
                                if (200..300).contains(&status) {
                                    let claims = crate::ssf::claims_of(&body);
                                    let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
                                    me.order.lock().push(jti.clone());
                                    let mut got = me.got.lock();
                                    let entry = got.entry(jti).or_insert((body.clone(), 0));
                                    entry.1 += 1;
                                }
                                let res = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                                let _ = sock.write_all(res.as_bytes()).await;
                                return;
                            }
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        if me.reset.load(Ordering::SeqCst) {
                            // Mid-request: linger 0 makes the close an RST.
                            let _ = sock.set_zero_linger();
                            return;
                        }
                    }
                });
            }
        });
        r
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/events", self.port)
    }

    fn sessions(&self) -> Vec<String> {
        self.got
            .lock()
            .values()
            .map(|(set, _)| crate::ssf::claims_of(set))
            .filter_map(|c| c["sub_id"]["session"]["id"].as_str().map(str::to_owned))
            .collect()
    }

    fn duplicates(&self) -> usize {
        self.got.lock().values().map(|(_, n)| n - 1).sum()
    }

    /// Waits up to `limit` until `n` sessions have arrived.
    async fn received(&self, n: usize, limit: Duration) -> bool {
        let took = eventually(limit, || async { self.sessions().len() == n }).await;
        took.is_some()
    }
}

/// Asserts the receiver gets exactly the `expected` sessions (in any
/// order) within `limit`; `what` names the moment.
async fn assert_received(receiver: &Receiver, expected: &[String], limit: Duration, what: &str) {
    let arrived = receiver.received(expected.len(), limit).await;
    let got = receiver.sessions();
    assert!(
        arrived,
        "{what}: {} of {}: {got:?}",
        got.len(),
        expected.len()
    );
    let (mut got, mut want) = (got, expected.to_vec());
    got.sort();
    want.sort();
    assert_eq!(got, want, "{what}: every revocation, none lost");
}

async fn push_stream(app: &TestApp, receiver: &Receiver, auth: &str) -> String {
    push_stream_to(app, &receiver.url(), auth).await
}

async fn push_stream_to(app: &TestApp, url: &str, auth: &str) -> String {
    let (_, token) = create_service(app, "pusher").await;
    let res = app
        .post(
            "/ssf/streams",
            Some(&token),
            json!({
                "aud": "https://receiver.example",
                "events_requested": [recall::ssf::SESSION_REVOKED],
                "delivery": { "method": "urn:ietf:rfc:8935", "endpoint_url": url, "authorization_header": auth },
            }),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert!(
        res.body["delivery"].get("authorization_header").is_none(),
        "never echoed"
    );
    res.body["stream_id"].as_str().unwrap().to_owned()
}

async fn push_survives_a_receiver_outage(kind: Kind) {
    let (_b, app) = start(kind).await;
    let receiver = Receiver::start("Bearer receiver-secret").await;
    let stream = push_stream(&app, &receiver, "Bearer receiver-secret").await;
    receiver.status.store(503, Ordering::SeqCst);
    let mut sessions = Vec::new();
    for i in 0..5 {
        let s = user(&app, &format!("out{i}")).await;
        post_204(&app, "/v1/auth/logout", &s.access).await;
        sessions.push(s.session_id);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        receiver.sessions().is_empty(),
        "nothing was accepted while it answered 503"
    );
    receiver.status.store(202, Ordering::SeqCst);
    assert_eq!(sessions.len(), 5);
    assert_received(&receiver, &sessions, Duration::from_secs(20), "back up").await;
    assert_eq!(receiver.duplicates(), 0, "202s are never resent");
    // Per-stream metrics: delivered, failed attempts, and no lag left.
    let label = format!("{{stream=\"{stream}\"}}");
    let delivered = app
        .metric(&format!("recall_ssf_sets_delivered_total{label}"))
        .await;
    let failed = app
        .metric(&format!("recall_ssf_sets_failed_total{label}"))
        .await;
    assert_eq!(delivered, 5.0);
    assert!(failed >= 1.0, "the 503s were counted: {failed}");
    let lag = eventually(Duration::from_secs(3), || async {
        app.metric(&format!("recall_ssf_lag_events{label}")).await == 0.0
    })
    .await;
    assert!(lag.is_some());
    let jwks = app.get("/.well-known/jwks.json", None).await.body;
    for (set, _) in receiver.got.lock().values() {
        let (_, claims) = crate::ssf::verify_with_jwks(set, &jwks);
        assert_eq!(claims["aud"], "https://receiver.example");
    }
    app.stop().await;
}

both_stores!(push_survives_a_receiver_outage);

/// A receiver that resets every delivery mid-request (G11): nothing counts
/// as delivered, the cursor stays, and once it answers again every SET
/// comes once, in log order.
async fn deliveries_reset_mid_request_are_retried_whole(kind: Kind) {
    let (_b, app) = start(kind).await;
    let receiver = Receiver::start("Bearer receiver-secret").await;
    let stream = push_stream(&app, &receiver, "Bearer receiver-secret").await;
    receiver.reset.store(true, Ordering::SeqCst);
    let mut sessions = Vec::new();
    for i in 0..5 {
        let s = user(&app, &format!("rst{i}")).await;
        post_204(&app, "/v1/auth/logout", &s.access).await;
        sessions.push(s.session_id);
    }
    let label = format!("{{stream=\"{stream}\"}}");
    let failed = eventually(Duration::from_secs(10), || async {
        app.metric(&format!("recall_ssf_sets_failed_total{label}"))
            .await
            >= 1.0
    })
    .await;
    assert!(
        failed.is_some(),
        "the reset deliveries were counted as failed"
    );
    assert!(receiver.sessions().is_empty(), "nothing was accepted");
    receiver.reset.store(false, Ordering::SeqCst);
    let all = eventually(Duration::from_secs(30), || async {
        receiver.sessions().len() == 5
    })
    .await;
    assert!(all.is_some(), "got {:?}", receiver.sessions());
    assert_eq!(receiver.duplicates(), 0, "each SET once");
    // In log order: the receiver saw the sessions as they were logged out.
    let got: Vec<String> = receiver
        .order
        .lock()
        .iter()
        .map(|jti| crate::ssf::claims_of(&receiver.got.lock()[jti].0))
        .filter_map(|c| c["sub_id"]["session"]["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(got, sessions, "in log order");
    app.stop().await;
}

both_stores!(deliveries_reset_mid_request_are_retried_whole);

/// How long the receiver stays down in `a_receiver_down_for_minutes_gets_everything`
/// (`RECALL_TEST_RECEIVER_DOWN_SECS`, default 150).
fn outage() -> Duration {
    let secs = std::env::var("RECALL_TEST_RECEIVER_DOWN_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    Duration::from_secs(secs)
}

/// The receiver is not even listening (connections refused) for minutes
/// while revocations keep coming; Recall backs off to its 30 s ceiling and
/// keeps trying. When the receiver comes back on its address, every SET
/// arrives, once each, in log order, within one backoff ceiling.
async fn a_receiver_down_for_minutes_gets_everything(kind: Kind) {
    let (_b, app) = start(kind).await;
    // Reserve an address, then leave it closed: the receiver is down.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/events");
    let stream = push_stream_to(&app, &url, "Bearer long").await;
    let label = format!("{{stream=\"{stream}\"}}");
    let down = outage();
    let started = tokio::time::Instant::now();
    let mut expected = Vec::new();
    let mut i = 0;
    while started.elapsed() < down {
        let s = user(&app, &format!("down{i}")).await;
        post_204(&app, "/v1/auth/logout", &s.access).await;
        expected.push(s.session_id);
        i += 1;
        tokio::time::sleep((down / 12).max(Duration::from_millis(200))).await;
    }
    let failed = app
        .metric(&format!("recall_ssf_sets_failed_total{label}"))
        .await;
    let lag = app.metric(&format!("recall_ssf_lag_seconds{label}")).await;
    tracing::info!(
        ?down,
        failed,
        lag,
        events = expected.len(),
        "receiver coming back"
    );
    assert!(failed >= 1.0, "refused connections were counted: {failed}");
    assert!(
        lag >= down.as_secs_f64() / 2.0,
        "the lag gauge shows the outage: {lag} s after {down:?}"
    );
    assert_eq!(
        app.metric(&format!("recall_ssf_sets_delivered_total{label}"))
            .await,
        0.0
    );
    // The receiver comes back on the same address.
    let receiver = Receiver::start_on("Bearer long", port).await;
    let limit = Duration::from_secs(60);
    assert_received(&receiver, &expected, limit, "after the outage").await;
    assert_eq!(receiver.duplicates(), 0, "each accepted once");
    // In log order: the jti is `stream.seq.index`.
    let seqs: Vec<(i64, i64)> = receiver
        .order
        .lock()
        .iter()
        .map(|jti| {
            let mut parts = jti.rsplitn(3, '.');
            let index = parts.next().unwrap().parse().unwrap();
            let seq = parts.next().unwrap().parse().unwrap();
            (seq, index)
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "log order: {seqs:?}");
    app.stop().await;
}

both_stores!(a_receiver_down_for_minutes_gets_everything);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lease_holder_is_taken_over_from_the_cursor() {
    let b = Backend::new(Kind::Postgres).await;
    let first = b.spawn_with(b.settings(), Some(redis_url())).await;
    let receiver = Receiver::start("Bearer r").await;
    push_stream(&first, &receiver, "Bearer r").await;
    // The first instance delivers (and holds the lease) before a second starts.
    let s0 = user(&first, "lease0").await;
    post_204(&first, "/v1/auth/logout", &s0.access).await;
    assert!(eventually(Duration::from_secs(5), || async {
        receiver.sessions().len() == 1
    })
    .await
    .is_some());
    let second = b.spawn_with(b.settings(), Some(redis_url())).await;
    let mut expected = vec![s0.session_id.clone()];
    for i in 0..6 {
        let s = user(&second, &format!("lease{}", i + 1)).await;
        if i == 3 {
            first.running.stop().await;
            post_204(&second, "/v1/auth/logout", &s.access).await;
            expected.push(s.session_id);
            for j in 4..6 {
                let s = user(&second, &format!("lease{}", j + 1)).await;
                post_204(&second, "/v1/auth/logout", &s.access).await;
                expected.push(s.session_id);
            }
            break;
        }
        post_204(&second, "/v1/auth/logout", &s.access).await;
        expected.push(s.session_id);
    }
    let limit = Duration::from_secs(30);
    assert_received(&receiver, &expected, limit, "after the holder died").await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_every_instance_loses_nothing() {
    let b = Backend::new(Kind::Postgres).await;
    let receiver = Receiver::start("Bearer r").await;
    let fleet = b.spawn_fleet(2).await;
    push_stream(&fleet[0], &receiver, "Bearer r").await;
    // The receiver is down while revocations happen, then every instance dies.
    receiver.status.store(503, Ordering::SeqCst);
    let mut expected = Vec::new();
    for (i, app) in fleet.iter().enumerate() {
        let s = user(app, &format!("restart{i}")).await;
        post_204(app, "/v1/auth/logout", &s.access).await;
        expected.push(s.session_id);
    }
    stop_all(fleet).await;
    // A new fleet starts; the receiver comes back: everything arrives.
    receiver.status.store(202, Ordering::SeqCst);
    let fresh = b.spawn_fleet(2).await;
    let limit = Duration::from_secs(30);
    assert_received(&receiver, &expected, limit, "after the restart").await;
    assert_eq!(receiver.duplicates(), 0);
    stop_all(fresh).await;
}
