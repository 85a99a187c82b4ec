//! Reach, on Recall's side: service credentials, the revocation feed (page
//! and stream), introspection for services, `/oauth/token`, the metadata
//! documents, and the issuer change.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_stores;
use crate::fixtures::{introspect, pg_fleet, start, stop_all};
use crate::helpers::{iss_of, username, Backend, Kind, Session, TestApp, ADMIN_TOKEN};

both_stores!(
    service_credentials_open_the_feed_and_introspection_only,
    the_feed_gives_a_window_then_items_by_cursor
);

/// Creates a service credential through the admin API; returns (id, token).
pub async fn create_service(app: &TestApp, name: &str) -> (String, String) {
    let res = app
        .admin_post("/v1/admin/services", json!({ "name": name }))
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let token = res.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("rcs_"));
    (res.body["service_id"].as_str().unwrap().to_owned(), token)
}

/// `DELETE path` as the bootstrap admin.
pub async fn admin_delete(app: &TestApp, path: &str) -> crate::helpers::Res {
    app.call(reqwest::Method::DELETE, path, Some(ADMIN_TOKEN), None)
        .await
}

/// `POST path` with `access` and an empty body, which must answer 204.
pub async fn post_204(app: &TestApp, path: &str, access: &str) {
    let res = app.post(path, Some(access), json!({})).await;
    assert_eq!(res.status, 204, "POST {path}: {:?}", res.body);
}

/// A user logged in on `app`.
pub async fn user(app: &TestApp, prefix: &str) -> Session {
    let name = username(prefix);
    app.register(&name).await;
    app.login(&name).await
}

async fn service_credentials_open_the_feed_and_introspection_only(kind: Kind) {
    let b = Backend::new(kind).await;
    let fleet = b.spawn_fleet(2).await;
    let (a, other) = (&fleet[0], &fleet[1]);
    let (id, token) = create_service(a, "orders-api").await;
    // Listed, never with its token.
    let list = a.admin_get("/v1/admin/services").await;
    assert_eq!(list.status, 200);
    let listed = &list.body["services"][0];
    assert_eq!(listed["service_id"], id.as_str());
    assert!(listed.get("token").is_none(), "{listed}");
    assert!(!list.body.to_string().contains(&token));
    // The feed and introspection open to it, on every instance.
    let s = user(a, "svc").await;
    for app in [a, other] {
        assert_eq!(app.get("/v1/revocations", Some(&token)).await.status, 200);
        let form = [("token", s.access.as_str())];
        let res = introspect(&app.http, &app.base, Some(&token), &form).await;
        assert_eq!(res.status, 200);
        let body = res.body;
        assert_eq!(body["active"], true);
        assert_eq!(body["sub"], s.user_id.as_str());
        assert_eq!(body["aud"], "recall-api");
        assert!(body["iss"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1"));
        assert!(body["jti"].is_string());
    }
    // Nothing else opens to it.
    for path in [
        "/v1/admin/keys",
        "/v1/admin/services",
        "/v1/me",
        "/v1/sessions",
    ] {
        let res = a.get(path, Some(&token)).await;
        assert!(
            matches!(res.status.as_u16(), 401 | 403),
            "{path}: {}",
            res.status
        );
    }
    let rotate = a
        .post(
            "/v1/admin/keys/rotate",
            Some(&token),
            json!({ "compromised": true }),
        )
        .await;
    assert!(matches!(rotate.status.as_u16(), 401 | 403));
    // A user's token does not open the feed.
    assert!(matches!(
        a.get("/v1/revocations", Some(&s.access))
            .await
            .status
            .as_u16(),
        401 | 403
    ));
    // Ending it is an event, and it stops working on every instance at once.
    let del = admin_delete(a, &format!("/v1/admin/services/{id}")).await;
    assert_eq!(del.status, 204);
    for app in [a, other] {
        let res = app.get("/v1/revocations", Some(&token)).await;
        assert_eq!(res.status, 401, "{:?}", res.body);
    }
    let events = crate::helpers::events(a, "type=service_revoked").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["service_id"], id.as_str());
    // Idempotent; unknown ids are 404.
    let again = admin_delete(a, &format!("/v1/admin/services/{id}")).await;
    assert_eq!(again.status, 204);
    let unknown = a
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/admin/services/{}", uuid::Uuid::now_v7()),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(unknown.status, 404);
    stop_all(fleet).await;
}

async fn the_feed_gives_a_window_then_items_by_cursor(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (_, token) = create_service(&app, "feed").await;
    let gone = user(&app, "gone").await;
    let kept = user(&app, "kept").await;
    post_204(&app, "/v1/auth/logout", &gone.access).await;
    // A new verifier gets the window: the active key and the revoked
    // session, not logins or registrations, and ids only.
    let window = app.get("/v1/revocations?after=0", Some(&token)).await;
    assert_eq!(window.status, 200);
    let head = window.body["head_seq"].as_i64().unwrap();
    assert_eq!(window.body["next_after"], head);
    assert!(window.body["retention_ms"].as_i64().unwrap() > 300_000);
    let items = window.body["items"].as_array().unwrap();
    assert!(items
        .iter()
        .any(|i| i["kind"] == "key_status" && i["status"] == "active"));
    let revoked: Vec<_> = items
        .iter()
        .filter(|i| i["kind"] == "session_revoked")
        .collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["sid"], gone.session_id.as_str());
    let text = window.body.to_string();
    assert!(
        !text.contains("username") && !text.contains("127.0.0.1"),
        "{text}"
    );
    assert!(!text.contains(&kept.session_id));
    // By cursor: nothing after the head, then exactly what came next.
    let empty = app
        .get(&format!("/v1/revocations?after={head}"), Some(&token))
        .await;
    assert_eq!(empty.body["items"], json!([]));
    assert_eq!(empty.body["next_after"], head);
    let lock = app
        .admin_user_action(&kept.user_id, "lock", json!({ "duration_secs": 60 }))
        .await;
    let seq = lock.body["seq"].as_i64().unwrap();
    let next = app
        .get(&format!("/v1/revocations?after={head}"), Some(&token))
        .await;
    let items = next.body["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["seq"] == seq));
    assert!(items
        .iter()
        .any(|i| i["kind"] == "user_locked" && i["sub"] == kept.user_id.as_str()));
    assert!(items
        .iter()
        .any(|i| i["kind"] == "session_revoked" && i["sid"] == kept.session_id.as_str()));
    assert_eq!(next.body["next_after"], seq);
    // Paging: limit bounds events, and bad cursors are refused cleanly.
    assert_eq!(
        app.get("/v1/revocations?limit=0", Some(&token))
            .await
            .status,
        400
    );
    assert_eq!(
        app.get("/v1/revocations?after=x", Some(&token))
            .await
            .status,
        400
    );
    assert_eq!(app.get("/v1/revocations", None).await.status, 401);
    app.stop().await;
}

/// Reads SSE messages until `pred` holds for one (or `limit` passes).
async fn read_until(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    parser: &mut recall_verifier::sse::SseParser,
    limit: Duration,
    pred: impl Fn(&recall_verifier::sse::SseMessage) -> bool,
) -> Option<recall_verifier::sse::SseMessage> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
        let chunk = tokio::time::timeout(left, stream.next())
            .await
            .ok()??
            .ok()?;
        if let Some(m) = parser.feed(&chunk).into_iter().find(|m| pred(m)) {
            return Some(m);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_beats_every_second_and_resumes_by_last_event_id() {
    let (_b, fleet) = pg_fleet(2).await;
    let (_, token) = create_service(&fleet[0], "stream").await;
    let s = user(&fleet[0], "streamed").await;
    let open = |app: &TestApp, last: Option<i64>| {
        let mut req = app
            .http
            .get(format!("{}/v1/revocations/stream", app.base))
            .bearer_auth(&token);
        if let Some(last) = last {
            req = req.header("Last-Event-ID", last.to_string());
        }
        req.send()
    };
    let res = open(&fleet[1], None).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = res.bytes_stream();
    let mut parser = Default::default();
    let window = read_until(&mut body, &mut parser, Duration::from_secs(3), |m| {
        m.event == "window"
    })
    .await;
    assert!(window.is_some(), "a fresh stream starts with the window");
    // Heads keep coming, at least every second.
    let mut last = tokio::time::Instant::now();
    for _ in 0..3 {
        let head = read_until(&mut body, &mut parser, Duration::from_secs(2), |m| {
            m.event == "head"
        })
        .await;
        assert!(head.is_some());
        assert!(last.elapsed() <= Duration::from_millis(1500));
        last = tokio::time::Instant::now();
    }
    // A logout on the other instance arrives as one message whose id is its seq.
    post_204(&fleet[0], "/v1/auth/logout", &s.access).await;
    let msg = read_until(&mut body, &mut parser, Duration::from_secs(3), |m| {
        m.event == "revocations"
    })
    .await
    .expect("the logout reaches the stream");
    let seq: i64 = msg.id.as_deref().unwrap().parse().unwrap();
    let items: Value = serde_json::from_str(&msg.data).unwrap();
    assert_eq!(items[0]["sid"], s.session_id.as_str());
    assert_eq!(items[0]["seq"], seq);
    drop(body);
    // Resuming from just before it replays it, on either instance.
    for app in &fleet {
        let res = open(app, Some(seq - 1)).await.unwrap();
        let mut body = res.bytes_stream();
        let mut parser = Default::default();
        let again = read_until(&mut body, &mut parser, Duration::from_secs(3), |m| {
            m.event == "revocations"
        })
        .await;
        assert_eq!(again.and_then(|m| m.id), Some(seq.to_string()));
    }
    // Resuming from it sends nothing old: the next message is a head.
    let res = open(&fleet[0], Some(seq)).await.unwrap();
    let mut body = res.bytes_stream();
    let mut parser = Default::default();
    let first = read_until(&mut body, &mut parser, Duration::from_secs(3), |_| true).await;
    assert_eq!(first.map(|m| m.event), Some("head".to_owned()));
    stop_all(fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_token_endpoint_and_metadata() {
    let (_b, app) = start(Kind::Sqlite).await;
    let s = user(&app, "oauth").await;
    let token = |form: Vec<(&'static str, String)>| {
        app.http
            .post(format!("{}/oauth/token", app.base))
            .form(&form)
            .send()
    };
    let ok = token(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", s.refresh.clone()),
    ])
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["cache-control"], "no-store");
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].is_string() && body["refresh_token"].is_string());
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    assert_eq!(
        app.me_status(body["access_token"].as_str().unwrap()).await,
        200
    );
    // RFC 6749 5.2 errors.
    let cases: Vec<(Vec<(&'static str, String)>, &str)> = vec![
        (
            vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", "nope".into()),
            ],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "password".into())],
            "unsupported_grant_type",
        ),
        (
            vec![("grant_type", "refresh_token".into())],
            "invalid_request",
        ),
        (vec![("refresh_token", "x".into())], "invalid_request"),
    ];
    for (form, error) in cases {
        let res = token(form).await.unwrap();
        assert_eq!(res.status(), 400);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], error, "{body}");
    }
    // A spent refresh token: invalid_grant.
    let spent = token(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", s.refresh.clone()),
    ])
    .await
    .unwrap();
    assert_eq!(spent.status(), 400);
    let spent: Value = spent.json().await.unwrap();
    assert_eq!(spent["error"], "invalid_grant");
    let json_body = app
        .http
        .post(format!("{}/oauth/token", app.base))
        .json(&json!({ "grant_type": "refresh_token", "refresh_token": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 400);
    // Metadata, the same at both addresses, naming every endpoint.
    let a = app
        .get("/.well-known/oauth-authorization-server", None)
        .await;
    let o = app.get("/.well-known/openid-configuration", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, o.body);
    let issuer = a.body["issuer"].as_str().unwrap();
    // RECALL_PUBLIC_URL defaults to http://RECALL_BIND (port 0 in tests).
    assert_eq!(issuer, "http://127.0.0.1:0");
    for (field, path) in [
        ("jwks_uri", "/.well-known/jwks.json"),
        ("token_endpoint", "/oauth/token"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("introspection_endpoint", "/oauth/introspect"),
    ] {
        assert_eq!(a.body[field], format!("{issuer}{path}"), "{field}");
    }
    assert_eq!(a.body["grant_types_supported"], json!(["refresh_token"]));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_the_old_default_issuer_keep_working_until_they_expire() {
    let b = Backend::new(Kind::Sqlite).await;
    // Before RECALL_PUBLIC_URL: every token said `iss: recall`.
    let mut old = b.settings();
    old.issuer = "recall".into();
    let before = b.spawn_with(old, None).await;
    let (name, s) = before.signup("upgrade").await;
    assert_eq!(iss_of(&s.access), "recall");
    before.stop().await;
    // After the upgrade the issuer is the public URL; the old token still works.
    let mut new = b.settings();
    new.public_url = "https://auth.example.com".into();
    new.issuer = new.public_url.clone();
    let after = b.spawn_with(new, None).await;
    assert_eq!(after.me_status(&s.access).await, 200);
    let fresh = after.login(&name).await;
    assert_eq!(iss_of(&fresh.access), "https://auth.example.com");
    // A foreign issuer is still refused.
    let mut other = b.settings();
    other.issuer = "https://elsewhere.example".into();
    let elsewhere = b.spawn_with(other, None).await;
    assert_eq!(elsewhere.me_status(&fresh.access).await, 401);
    after.stop().await;
    elsewhere.stop().await;
}

/// RFC 7662 clients authenticate as RFC 6749 section 2.3.1 says: HTTP
/// Basic (service id, token) or `client_id`/`client_secret` in the form,
/// and Bearer still works; discovery names the registry's methods. A valid
/// credential is never counted against the per-address limit (1,000 calls
/// in about a second under the default 60 a minute); failed ones are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_takes_standard_client_auth_and_is_not_throttled() {
    use base64::Engine;
    let b = Backend::new(Kind::Sqlite).await;
    let mut settings = b.settings();
    settings.rate_limit_per_min = 60; // the default
    let app = b.spawn_with(settings, None).await;
    let (id, token) = create_service(&app, "php-api").await;
    let s = user(&app, "intro").await;
    let url = format!("{}/oauth/introspect", app.base);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{token}"));
    let ways: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "basic",
            app.http
                .post(&url)
                .header("authorization", format!("Basic {basic}"))
                .form(&[("token", s.access.as_str())]),
        ),
        (
            "post",
            app.http.post(&url).form(&[
                ("token", s.access.as_str()),
                ("client_id", id.as_str()),
                ("client_secret", token.as_str()),
            ]),
        ),
        (
            "bearer",
            app.http
                .post(&url)
                .bearer_auth(&token)
                .form(&[("token", s.access.as_str())]),
        ),
    ];
    for (way, req) in ways {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200, "{way}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["active"], true, "{way}: {body}");
        assert_eq!(body["sub"], s.user_id.as_str(), "{way}");
    }
    // Another service's id with this token, or a wrong secret: 401.
    let wrong = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{token}", uuid::Uuid::now_v7()));
    let res = app
        .http
        .post(&url)
        .header("authorization", format!("Basic {wrong}"))
        .form(&[("token", s.access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .http
        .post(&url)
        .form(&[
            ("token", s.access.as_str()),
            ("client_id", id.as_str()),
            ("client_secret", "rcs_nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let meta = app
        .get("/.well-known/oauth-authorization-server", None)
        .await;
    assert_eq!(
        meta.body["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    // 1,000 calls at once from one address: all answered.
    let mut calls = Vec::new();
    for _ in 0..1000 {
        let req = app
            .http
            .post(&url)
            .header("authorization", format!("Basic {basic}"))
            .form(&[("token", s.access.as_str())]);
        calls.push(tokio::spawn(async move {
            req.send().await.map(|r| r.status().as_u16())
        }));
    }
    let started = std::time::Instant::now();
    let mut statuses = std::collections::BTreeMap::new();
    for c in calls {
        *statuses.entry(c.await.unwrap().unwrap()).or_insert(0) += 1;
    }
    eprintln!(
        "1,000 introspections in {:?}: {statuses:?}",
        started.elapsed()
    );
    assert_eq!(statuses, [(200u16, 1000)].into_iter().collect());
    // Failed credentials still count: the address runs out of its budget.
    let mut last = 0;
    for _ in 0..70 {
        let res = app
            .http
            .post(&url)
            .bearer_auth("rcs_guess")
            .form(&[("token", "x")])
            .send()
            .await
            .unwrap();
        last = res.status().as_u16();
    }
    assert_eq!(last, 429);
    app.stop().await;
}
