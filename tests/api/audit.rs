//! The audit log: filters, cursor, and the live event stream.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::both_stores;
use crate::fixtures::start;
use crate::helpers::*;

both_stores!(
    audit_log_filters_and_cursor,
    sse_stream_delivers_new_events_live,
);

// ------------------------------------------------------------------ audit

async fn audit_log_filters_and_cursor(kind: Kind) {
    let (_b, app) = start(kind).await;
    let n1 = username("ann");
    let u1 = app.register(&n1).await;
    let n2 = username("ben");
    let u2 = app.register(&n2).await;
    let s1 = app.login(&n1).await;
    let _s2 = app.login(&n2).await;
    let out = app.logout(&s1.access).await;
    assert_eq!(out.status, 204);
    let _ = app.try_login(&n2, "wrong password!").await;

    // Everything, oldest first, with the documented shape.
    let all = events(&app, "").await;
    assert!(all.len() >= 7, "{all:?}");
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for e in &all {
        let mut keys: Vec<_> = e.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "actor",
                "at",
                "data",
                "ip",
                "seq",
                "session_id",
                "type",
                "user_id"
            ]
        );
        rfc3339_ms(e["at"].as_str().unwrap());
        assert!(e["data"].is_object());
    }
    let logout = all
        .iter()
        .find(|e| e["type"] == "logged_out")
        .expect("logout event");
    assert_eq!(logout["user_id"], u1.as_str());
    assert_eq!(logout["session_id"], s1.session_id.as_str());
    assert_eq!(logout["actor"], format!("user:{u1}"));
    assert_eq!(logout["ip"], "127.0.0.1");

    // Paging with the cursor visits the same events.
    let mut after = 0;
    let mut paged = Vec::new();
    loop {
        let res = app
            .admin_get(&format!("/v1/admin/events?after={after}&limit=2"))
            .await;
        assert_eq!(res.status, 200);
        let page = res.body["events"].as_array().unwrap().clone();
        assert!(page.len() <= 2);
        let next = res.body["next_after"].as_i64().unwrap();
        if page.is_empty() {
            assert_eq!(next, after, "an empty page keeps the cursor");
            break;
        }
        assert_eq!(next, page.last().unwrap()["seq"].as_i64().unwrap());
        paged.extend(page.iter().map(|e| e["seq"].as_i64().unwrap()));
        after = next;
    }
    assert_eq!(paged, seqs);
    let res = app
        .admin_get(&format!("/v1/admin/events?after={}&limit=3", seqs[1]))
        .await;
    let page: Vec<i64> = res.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(page, seqs[2..5]);

    // Filters: by user, by type, both.
    let mine = events(&app, &format!("user_id={u1}")).await;
    let types: Vec<_> = mine.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["user_registered", "login_succeeded", "logged_out"]);
    assert!(mine.iter().all(|e| e["user_id"] == u1.as_str()));
    let logins = events(&app, "type=login_succeeded").await;
    assert_eq!(logins.len(), 2);
    assert!(logins.iter().all(|e| e["type"] == "login_succeeded"));
    let both = events(&app, &format!("user_id={u2}&type=login_succeeded")).await;
    assert_eq!(both.len(), 1);
    assert_eq!(both[0]["user_id"], u2.as_str());
    assert!(events(&app, "type=no_such_type").await.is_empty());
    assert!(events(&app, &format!("user_id={}", uuid::Uuid::now_v7()))
        .await
        .is_empty());
    // The default limit is 100, the most 1000.
    let res = app.admin_get("/v1/admin/events").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["events"].as_array().unwrap().len(), seqs.len());
    let ok = app.admin_get("/v1/admin/events?limit=1000").await;
    assert_eq!(ok.status, 200);
    for bad in [
        "limit=1001",
        "limit=0",
        "limit=-1",
        "limit=abc",
        "user_id=not-a-uuid",
        "after=x",
        "unknown=1",
    ] {
        let res = app.admin_get(&format!("/v1/admin/events?{bad}")).await;
        assert_error(&res, 400, "invalid_request");
    }
    app.stop().await;
}

async fn sse_stream_delivers_new_events_live(kind: Kind) {
    let (_b, app) = start(kind).await;
    let name = username("sse");
    app.register(&name).await;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("{}/v1/admin/events/stream", app.base);
    // Admins only.
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let user = app.login(&name).await;
    let res = client
        .get(&url)
        .bearer_auth(&user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let res = tokio::time::timeout(
        Duration::from_secs(5),
        client.get(&url).bearer_auth(ADMIN_TOKEN).send(),
    )
    .await
    .expect("stream headers in time")
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ctype = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    let mut stream = res.bytes_stream();

    // Events after the stream opened.
    let s = app.login(&name).await;
    let out = app.logout(&s.access).await;
    assert_eq!(out.status, 204);

    let mut buf = String::new();
    let mut seen: Vec<(String, Value)> = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let mut event = None;
                let mut data = None;
                let mut id = None;
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str::<Value>(v).unwrap());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse::<i64>().unwrap());
                    }
                }
                if let (Some(event), Some(data)) = (event, data) {
                    assert_eq!(data["type"], event.as_str());
                    assert_eq!(Some(data["seq"].as_i64().unwrap()), id);
                    let done = event == "logged_out" && data["session_id"] == s.session_id.as_str();
                    seen.push((event, data));
                    if done {
                        return true;
                    }
                }
            }
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "no logged_out frame for {}; saw {seen:?}",
        s.session_id
    );
    // The login came first, in order, and nothing from before the stream opened.
    let login = seen
        .iter()
        .position(|(t, d)| t == "login_succeeded" && d["session_id"] == s.session_id.as_str())
        .expect("login frame");
    assert_eq!(login, seen.len() - 2, "{seen:?}");
    assert!(seen
        .iter()
        .all(|(t, d)| !(t == "login_succeeded" && d["session_id"] == user.session_id.as_str())));
    drop(stream);
    app.stop().await;
}
