//! Limits that end things (G10): the admin stream ends with its caller's
//! rights, sessions have an absolute lifetime, `/oauth/revoke` ignores
//! revoked keys, the publish queue is bounded, and secrets at rest are
//! owner-only.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use recall::events::{Meta, Stamp};
use reqwest::StatusCode;
use serde_json::json;

use crate::fixtures::{start, start_tuned};
use crate::helpers::{register_admin, username, Backend, Kind, ADMIN_TOKEN, PASSWORD};

/// Reads an SSE stream until it ends; returns how long it took and the
/// last `end` event's data.
async fn until_stream_ends(res: reqwest::Response, limit: Duration) -> Option<(Duration, String)> {
    let start = Instant::now();
    let mut stream = res.bytes_stream();
    let mut text = String::new();
    tokio::time::timeout(limit, async {
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .ok()?;
    let end = text
        .split("event: end\ndata: ")
        .nth(1)
        .map(|t| t.lines().next().unwrap_or("").to_owned())
        .unwrap_or_default();
    Some((start.elapsed(), end))
}

/// Asserts the stream ends, within `bound` of `since`, because of `why`.
async fn assert_ends(res: reqwest::Response, since: Instant, bound: Duration, why: &str) {
    let (_, ended) = until_stream_ends(res, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(since.elapsed() <= bound, "{:?}", since.elapsed());
    assert_eq!(ended, why);
}

/// The admin event stream ends when the caller's token expires, and within
/// a second of it being revoked, locked, or losing the admin role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_stream_ends_with_the_callers_rights() {
    let (b, app) = start_tuned(Kind::Postgres, |s| {
        s.access_ttl_secs = 3;
    })
    .await;
    let name = username("streamer");
    let admin_id = register_admin(&app, &name).await;
    let open = |token: String| {
        let (http, url) = (
            app.http.clone(),
            format!("{}/v1/admin/events/stream", app.base),
        );
        async move {
            let res = http.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res
        }
    };
    let bound = Duration::from_millis(2500);

    // Expiry: a 3 s token.
    let s = app.login(&name).await;
    let res = open(s.access.clone()).await;
    let (took, why) = until_stream_ends(res, Duration::from_secs(10))
        .await
        .expect("the stream outlived its token");
    assert!(took <= Duration::from_secs(4), "{took:?}");
    assert_eq!(why, "token_expired");

    // Revoked: its session deleted by another admin.
    let s = app.login(&name).await;
    let res = open(s.access.clone()).await;
    let t = Instant::now();
    let path = format!("/v1/admin/sessions/{}", s.session_id);
    let del = app.delete(&path, Some(ADMIN_TOKEN)).await;
    assert_eq!(del.status, 204);
    assert_ends(res, t, bound, "invalid_token").await;

    // The admin role taken away (in the store).
    let s = app.login(&name).await;
    let res = open(s.access.clone()).await;
    let db = b.db.as_ref().unwrap();
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let t = Instant::now();
    client
        .execute("UPDATE users SET roles = '' WHERE id = $1", &[&admin_id])
        .await
        .unwrap();
    assert_ends(res, t, bound, "forbidden").await;
    client
        .execute(
            "UPDATE users SET roles = 'admin' WHERE id = $1",
            &[&admin_id],
        )
        .await
        .unwrap();

    // Locked.
    let s = app.login(&name).await;
    let res = open(s.access.clone()).await;
    let t = Instant::now();
    let lock = app.admin_user_action(&admin_id, "lock", json!({})).await;
    assert_eq!(lock.status, 200);
    assert_ends(res, t, bound, "account_locked").await;
    app.stop().await;
}

/// A session ends `RECALL_SESSION_MAX_SECS` after login however often it is
/// refreshed: refresh after that answers 401 `invalid_grant`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_have_an_absolute_lifetime() {
    let (_b, app) = start_tuned(Kind::Sqlite, |s| {
        s.access_ttl_secs = 1;
        s.session_max_secs = 3;
    })
    .await;
    let (_name, s) = app.signup("max").await;
    let started = Instant::now();
    let mut token = s.refresh.clone();
    // Refresh every 500 ms: each answer's refresh lifetime shrinks to the cap.
    let mut last_left = i64::MAX;
    while started.elapsed() < Duration::from_millis(2400) {
        let res = app.refresh(&token).await;
        assert_eq!(res.status, 200, "{}", res.body);
        let left = res.body["refresh_expires_in"].as_i64().unwrap();
        assert!(left <= 3 && left <= last_left, "{left}");
        last_left = left;
        token = res.body["refresh_token"].as_str().unwrap().to_owned();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(started.elapsed())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = app.refresh(&token).await;
    assert_eq!((res.status.as_u16(), res.error()), (401, "invalid_grant"));
    app.stop().await;
}

/// `/oauth/revoke` with an access token signed by a revoked key ends
/// nothing: a key that no longer counts proves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_revoke_ignores_tokens_of_revoked_keys() {
    let (_b, app) = start(Kind::Sqlite).await;
    let (_name, s) = app.signup("revk").await;
    let rotate = app.rotate_key(json!({ "compromised": true })).await;
    assert_eq!(rotate.status, 200);
    let res = app.oauth_revoke(&s.access).await;
    assert_eq!(res.status, 200, "RFC 7009: 200 always");
    // The session lives: its refresh token still works.
    let res = app.refresh(&s.refresh).await;
    assert_eq!(res.status, 200, "the session was ended: {}", res.body);
    // A current token does end it.
    let fresh = res.body["access_token"].as_str().unwrap().to_owned();
    let res = app.oauth_revoke(&fresh).await;
    assert_eq!(res.status, 200);
    assert_eq!(app.me_status(&fresh).await, 401);
    app.stop().await;
}

/// With Redis unreachable, notices pile up in a bounded queue: the oldest
/// are dropped and counted, and every event is still in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_queue_is_bounded() {
    let b = Backend::new(Kind::Postgres).await;
    let mut settings = b.settings();
    settings.publish_queue = 4;
    // A black hole: accepts connections and never answers, so each publish
    // waits for its timeout while notices keep coming.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hole.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = hole.accept().await {
            held.push(conn);
        }
    });
    let app = b
        .spawn_with(settings, Some(format!("redis://127.0.0.1:{port}")))
        .await;
    let name = username("q");
    app.register(&name).await;
    let head_before = app.recall().store().head().await.unwrap();
    for _ in 0..20 {
        let s = app.login(&name).await;
        assert_eq!(app.logout(&s.access).await.status, 204);
    }
    let dropped = app.metric("recall_notices_dropped_total").await;
    assert!(dropped >= 30.0, "dropped {dropped} of 40 with room for 4");
    let head = app.recall().store().head().await.unwrap();
    assert_eq!(head - head_before, 40, "every event is in the log");
    app.stop().await;
    holder.abort();
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The data directory is 0700; the database, its WAL and the generated
/// master key are 0600.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_at_rest_are_owner_only() {
    let dir = crate::helpers::TempDir::new();
    let data = dir.0.join("data");
    let settings =
        recall::config::Settings::from_flags(["--data-dir", data.to_str().unwrap()]).unwrap();
    let store = settings.open_store().unwrap();
    store.migrate().await.unwrap();
    let name = username("perm");
    let hash = recall::passwords::hash_blocking(PASSWORD.as_bytes());
    store
        .register(
            uuid::Uuid::now_v7(),
            &name,
            &hash,
            &[],
            &Stamp::new(&Meta::system(), recall::clock::Timestamp::from_ms(1)),
        )
        .await
        .unwrap();
    assert_eq!(mode(&data), 0o700);
    for file in ["recall.db", "recall.db-wal", "master.key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
}
