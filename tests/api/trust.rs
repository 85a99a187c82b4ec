//! Fleet trust (G9): Redis is untrusted. Forged notices published straight
//! onto the channel change nothing; two deployments sharing a channel ignore
//! each other; a log that goes backwards makes instances fail closed and
//! rebuild. (TLS to both services: `tls.rs`.)

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use recall::bus::notice::NoticeAuth;
use recall::clock::Timestamp;
use recall::events::{Envelope, Event};
use recall::keys::MasterKey;
use serde_json::json;
use uuid::Uuid;

use crate::fixtures::stop_all;
use crate::helpers::kid_of;
use crate::helpers::{
    all_reject, eventually, redis_url, username, Backend, Kind, Session, TestApp,
};

/// The G3 bound these tests hold a real notice to (loopback, no polling).
const G3: Duration = Duration::from_millis(100);

/// Publishes raw bytes on `channel` with a plain Redis client, as anyone
/// who can reach Redis could.
async fn publish_raw(channel: &str, payload: Vec<u8>) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(receivers > 0, "nobody subscribed to {channel}");
}

fn forged(seq: i64, event: Event) -> Envelope {
    Envelope {
        seq,
        stream: "forged".into(),
        version: 1,
        at: Timestamp::now(),
        actor: Some("system".into()),
        ip: None,
        event,
    }
}

/// `/readyz` of an instance: (status, caught_up_seq, head_seq, reason).
async fn ready(app: &TestApp) -> (u16, i64, i64, String) {
    let res = app.get("/readyz", None).await;
    (
        res.status.as_u16(),
        res.body["caught_up_seq"].as_i64().unwrap_or(-1),
        res.body["head_seq"].as_i64().unwrap_or(-1),
        res.body["reason"].as_str().unwrap_or("").to_owned(),
    )
}

/// Two instances on `b`, subscribed to its channel, polling the log every
/// `poll_ms` and failing closed after `staleness_ms`.
async fn pair(b: &Backend, poll_ms: u64, staleness_ms: i64) -> Vec<TestApp> {
    b.spawn_subscribed_fleet(2, |s| {
        s.poll_interval_ms = poll_ms;
        s.max_staleness_ms = staleness_ms;
    })
    .await
}

/// Forged notices of every dangerous kind: none moves any instance's
/// state, `caught_up_seq`, readiness, or makes it read the log; a real
/// logout afterwards still reaches every instance within the G3 bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_notices_change_nothing() {
    let b = Backend::new(Kind::Postgres).await;
    // Only notices can move anything: no polling, no staleness in play.
    let apps = pair(&b, 600_000, 1_200_000).await;
    let (a, other) = (&apps[0], &apps[1]);

    // A session signed by a key that then gets revoked (compromised rotation).
    let (alice, old) = a.signup("trust").await;
    let revoked_kid = kid_of(&old.access);
    let res = a.rotate_key(json!({"compromised": true})).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let active_kid = res.body["kid"].as_str().unwrap().to_owned();
    // A live session on the new key, and a locked user with a token.
    let live = a.login(&alice).await;
    assert_eq!(kid_of(&live.access), active_kid);
    let (_bob, bob_session) = a.signup("trust").await;
    let bob_id = bob_session.user_id.clone();
    let res = a.admin_user_action(&bob_id, "lock", json!({})).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let head = res.body["seq"].as_i64().unwrap();
    for app in &apps {
        assert!(
            eventually(G3 * 20, || async { ready(app).await.1 == head })
                .await
                .is_some(),
            "instance never reached seq {head}"
        );
    }
    // Let every real notice land (an instance hears its own too) before
    // taking the counts the forgeries must not move.
    for app in &apps {
        let mut last = -1.0;
        loop {
            let now = app.metric("recall_notices_received_total").await;
            if now == last {
                break;
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let before: Vec<(f64, f64, f64)> =
        futures_util::future::join_all(apps.iter().map(|app| async {
            (
                app.metric("recall_notices_received_total").await,
                app.metric("recall_catchup_reads_total").await,
                app.metric("recall_notices_rejected_total").await,
            )
        }))
        .await;

    let stranger = NoticeAuth::new(&MasterKey::generate(), &b.channel);
    let same_key_other_channel = NoticeAuth::new(&b.master, "recall:another-channel");
    let login_failed = |n: i64| Event::LoginFailed {
        username: Some("nobody".into()),
        user_id: None,
        failures: n,
        locked_until: None,
    };
    let revive = Event::KeyRotated {
        kid: revoked_kid.clone(),
        previous_kid: None,
        compromised: false,
        previous_retire_after: None,
        reason: None,
    };
    let kill_active = Event::KeyRotated {
        kid: "forged-kid".into(),
        previous_kid: Some(active_kid.clone()),
        compromised: true,
        previous_retire_after: None,
        reason: None,
    };
    let unlock = Event::UserUnlocked {
        user_id: bob_id.parse().unwrap(),
    };
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    // 1. The attack that was found: plain JSON, the next five seqs.
    for i in 1..=5 {
        payloads.push(serde_json::to_vec(&forged(head + i, login_failed(i))).unwrap());
    }
    // 2. The same with a made-up tag in the authenticated shape.
    let fake_tag = URL_SAFE_NO_PAD.encode([7u8; 32]);
    for event in [revive.clone(), kill_active.clone(), unlock.clone()] {
        let mut p = format!("{fake_tag}.").into_bytes();
        p.extend(serde_json::to_vec(&forged(head + 1, event)).unwrap());
        payloads.push(p);
    }
    // 3. Properly tagged under another master key: revive a revoked kid,
    //    kill the active one, unlock a locked user, and a far-ahead seq that
    //    would make an instance read the log if it were believed.
    for event in [revive.clone(), kill_active.clone(), unlock.clone()] {
        payloads.push(stranger.seal(&forged(head + 1, event)));
    }
    payloads.push(stranger.seal(&forged(head + 1000, login_failed(1))));
    // 4. This deployment's master key, but another channel's key.
    payloads.push(same_key_other_channel.seal(&forged(head + 1, unlock.clone())));
    // 5. An authentic notice, altered in one byte of its body.
    let mut altered = NoticeAuth::new(&b.master, &b.channel).seal(&forged(head + 1, revive));
    let n = altered.len();
    altered[n - 3] ^= 0x01;
    payloads.push(altered);
    let forged_count = payloads.len() as f64;
    for p in payloads {
        publish_raw(&b.channel, p).await;
    }

    // Every instance counted every forgery and changed nothing.
    for (i, app) in apps.iter().enumerate() {
        let counted = eventually(Duration::from_secs(5), || async {
            app.metric("recall_notices_rejected_total").await >= before[i].2 + forged_count
        })
        .await;
        assert!(
            counted.is_some(),
            "instance {i} did not count every forged notice"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (i, app) in apps.iter().enumerate() {
        let (status, caught_up, log_head, reason) = ready(app).await;
        assert_eq!(status, 200, "instance {i} readiness changed: {reason}");
        assert_eq!(caught_up, head, "instance {i} moved its caught_up_seq");
        assert_eq!(log_head, head);
        assert_eq!(
            app.metric("recall_notices_rejected_total").await,
            before[i].2 + forged_count
        );
        assert_eq!(
            app.metric("recall_notices_received_total").await,
            before[i].0,
            "instance {i} accepted a forged notice"
        );
        assert_eq!(
            app.metric("recall_catchup_reads_total").await,
            before[i].1,
            "a forged notice made instance {i} read the log"
        );
        app.assert_me(
            &old.access,
            401,
            &format!("instance {i}: the revoked key came back"),
        )
        .await;
        app.assert_me(
            &live.access,
            200,
            &format!("instance {i}: the active key was killed"),
        )
        .await;
        let res = app.get("/v1/me", Some(&bob_session.access)).await;
        assert_eq!(
            (res.status.as_u16(), res.error()),
            (403, "account_locked"),
            "instance {i}: the locked user was unlocked"
        );
    }

    // A real logout afterwards still reaches every instance within G3.
    assert_eq!(a.logout(&live.access).await.status, 204);
    assert!(
        all_reject(&[other], &live.access, G3).await.is_some(),
        "the real logout did not reach the other instance within {G3:?}"
    );
    stop_all(apps).await;
}

/// Two deployments (different databases and master keys) share one Redis
/// channel: each applies only its own events, and its own still propagate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_sharing_a_channel_ignore_each_other() {
    let x = Backend::new(Kind::Postgres).await;
    let mut y = Backend::new(Kind::Postgres).await;
    y.channel = x.channel.clone();
    let xs = x.spawn_subscribed_fleet(2, |_| {}).await;
    let ys = y.spawn_subscribed_fleet(2, |_| {}).await;
    let (nx, ny) = (username("deploy-x"), username("deploy-y"));
    xs[0].register(&nx).await;
    ys[0].register(&ny).await;
    let sx = xs[0].login(&nx).await;
    let sy = ys[0].login(&ny).await;
    // Both logs are at the same seq now: a believed foreign notice would be
    // taken for the next event of one's own log.
    let (hx, hy) = (ready(&xs[0]).await.1, ready(&ys[0]).await.1);
    assert_eq!(hx, hy, "both deployments should stand at the same seq");
    for app in xs.iter().chain(ys.iter()) {
        let caught_up = eventually(G3 * 20, || async { ready(app).await.1 == hx }).await;
        assert!(caught_up.is_some());
    }

    // X logs out: X's other instance applies it; Y's instances drop it.
    assert_eq!(xs[0].logout(&sx.access).await.status, 204);
    assert!(all_reject(&[&xs[1]], &sx.access, G3).await.is_some());
    for app in &ys {
        let dropped = eventually(Duration::from_secs(2), || async {
            app.metric("recall_notices_rejected_total").await >= 1.0
        })
        .await;
        assert!(dropped.is_some(), "Y did not reject X's notice");
        assert_eq!(ready(app).await.1, hy, "X's notice moved Y's seq");
        app.assert_me(&sy.access, 200, "Y revoked its own session")
            .await;
    }

    // Y logs out: the mirror image.
    assert_eq!(ys[0].logout(&sy.access).await.status, 204);
    assert!(all_reject(&[&ys[1]], &sy.access, G3).await.is_some());
    for app in &xs {
        let dropped = eventually(Duration::from_secs(2), || async {
            app.metric("recall_notices_rejected_total").await >= 1.0
        })
        .await;
        assert!(dropped.is_some(), "X did not reject Y's notice");
        assert_eq!(ready(app).await.1, hx + 1, "Y's notice moved X's seq");
    }
    for app in xs.into_iter().chain(ys) {
        app.stop().await;
    }
}

fn pg_tool(tool: &str, args: &[&str]) {
    let out = std::process::Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} must be installed (PostgreSQL client tools): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The log goes backwards under a running fleet (an older dump restored):
/// each instance fails closed, rebuilds from the log by itself, and no
/// token revoked in the restored log is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_goes_backwards_fails_closed_then_rebuilds() {
    let b = Backend::new(Kind::Postgres).await;
    let url = b.db.as_ref().unwrap().url.clone();
    let apps = pair(&b, 2000, 120_000).await;
    let (a, other) = (&apps[0], &apps[1]);
    let (name, s1) = a.signup("restore").await;
    let s2 = a.login(&name).await;

    // The backup.
    let dump = std::env::temp_dir().join(format!("recall-{}.dump", Uuid::new_v4().simple()));
    let dump_path = dump.to_string_lossy().into_owned();
    pg_tool("pg_dump", &["-Fc", "-f", &dump_path, &url]);
    let (_, backup_head, _, _) = ready(a).await;

    // Life goes on after the backup: three more logins.
    let mut later: Vec<Session> = Vec::new();
    for _ in 0..3 {
        later.push(a.login(&name).await);
    }
    let applied = backup_head + 3;
    for app in &apps {
        assert!(
            eventually(G3 * 20, || async { ready(app).await.1 == applied })
                .await
                .is_some()
        );
    }

    // Restore the older dump under the running fleet.
    pg_tool(
        "pg_restore",
        &[
            "--clean",
            "--if-exists",
            "--single-transaction",
            "-d",
            &url,
            &dump_path,
        ],
    );
    let _ = std::fs::remove_file(&dump);
    // A revocation in the restored log takes a seq the fleet has "applied".
    assert_eq!(a.logout(&s2.access).await.status, 204);
    a.assert_me(&s2.access, 401, "G2 on the serving instance")
        .await;

    // The other instance's readiness sees the log behind it and fails closed.
    let (status, caught_up, log_head, reason) = ready(other).await;
    if other.metric("recall_log_regressions_total").await >= 1.0 && status == 200 {
        // The poller found it first and already rebuilt (a 2 s tick landed
        // in the last milliseconds): the rebuilt state must hold the logout.
        println!("poller rebuilt before the probe; checking the rebuilt state");
    } else {
        assert_eq!(
            status, 503,
            "ahead of the log but ready: {caught_up} > {log_head}"
        );
        assert!(reason.contains("behind"), "{reason}");
        assert_eq!(caught_up, applied);
        assert_eq!(log_head, backup_head + 1);
        let res = other.get("/v1/me", Some(&s1.access)).await;
        assert!(
            res.status == 503 || other.metric("recall_log_regressions_total").await >= 1.0,
            "a protected request was served while ahead of the log: {}",
            res.status
        );
    }

    // Both recover by themselves, with the restored log's revocation.
    for (i, app) in apps.iter().enumerate() {
        let recovered = eventually(Duration::from_secs(10), || async {
            let (status, caught_up, log_head, _) = ready(app).await;
            status == 200 && caught_up == log_head && log_head == backup_head + 1
        })
        .await;
        assert!(
            recovered.is_some(),
            "instance {i} did not recover: {:?}",
            ready(app).await
        );
        assert!(app.metric("recall_log_regressions_total").await >= 1.0);
        app.assert_me(
            &s2.access,
            401,
            &format!("instance {i} accepts a revoked token"),
        )
        .await;
        assert_eq!(app.me_status(&s1.access).await, 200);
    }
    // Notices line up with the log again: a new logout propagates at once.
    assert_eq!(a.logout(&s1.access).await.status, 204);
    assert!(all_reject(&[other], &s1.access, G3).await.is_some());
    drop(later);
    stop_all(apps).await;
}
