//! Erasure by crypto-shredding (issue 25): `DELETE /v1/admin/users/{id}`
//! ends every session fleet-wide, and the user's name, addresses, user
//! agents and device ids are gone from the store's bytes (pg_dump; the
//! SQLite file and its WAL), while ids, the audit trail and other users'
//! data stay.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_stores;
use crate::fixtures::{fleet_with_user, start, stop_all};
use crate::helpers::{all_reject, events, username, Backend, Kind, Session, TestApp, FLEET};
use crate::helpers::{ADMIN_TOKEN, PASSWORD};

/// What one login of the erased user leaves behind: its address, user
/// agent and device id, each unique to this test.
struct Trace {
    ip: String,
    agent: String,
    device: String,
}

/// Logs `name` in from `trace`'s address (a trusted proxy's
/// `X-Forwarded-For`), with its user agent and device id.
async fn login_from(app: &TestApp, name: &str, t: &Trace) -> Session {
    let res = app
        .http
        .post(format!("{}/v1/auth/login", app.base))
        .header("x-forwarded-for", &t.ip)
        .header("user-agent", &t.agent)
        .json(&json!({ "username": name, "password": PASSWORD, "device_id": t.device }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let me = app.get("/v1/me", body["access_token"].as_str()).await;
    Session::from_body(&body, me.body["user_id"].as_str().unwrap())
}

/// A failed login of `name` (a known user) from `ip`.
async fn wrong_password_from(app: &TestApp, name: &str, ip: &str) {
    let res = app
        .http
        .post(format!("{}/v1/auth/login", app.base))
        .header("x-forwarded-for", ip)
        .json(&json!({ "username": name, "password": "not the password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

async fn erase(app: &TestApp, user_id: &str, bearer: Option<&str>) -> crate::helpers::Res {
    let path = format!("/v1/admin/users/{user_id}");
    app.call(reqwest::Method::DELETE, &path, bearer, None).await
}

/// Every byte the store keeps, as text: PostgreSQL's `pg_dump` of the test
/// database; SQLite's file and its WAL after a checkpoint.
async fn store_bytes(b: &Backend) -> String {
    match &b.db {
        Some(db) => {
            let out = tokio::process::Command::new("pg_dump")
                .arg("--dbname")
                .arg(&db.url)
                .output()
                .await
                .expect("pg_dump runs");
            assert!(
                out.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        None => {
            let path = b.dir.0.join("recall.db");
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.busy_timeout(Duration::from_secs(5)).unwrap();
            // Until no reader is in the way: busy = 0, the WAL emptied.
            let mut busy = 1;
            for _ in 0..100 {
                busy = conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .unwrap();
                if busy == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(busy, 0, "the checkpoint never finished");
            drop(conn);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend(std::fs::read(b.dir.0.join("recall.db-wal")).unwrap_or_default());
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
}

async fn the_erased_users_personal_data_leaves_no_bytes(kind: Kind) {
    let (b, app) = start(kind).await;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let name = format!("erasable-{tag}");
    let user_id = app.register(&name).await;
    let traces: Vec<Trace> = (0..4)
        .map(|i| Trace {
            ip: if i % 2 == 0 {
                format!("203.0.113.{}", 10 + i)
            } else {
                let group = u16::from_str_radix(&tag[..4], 16).unwrap() | 0x1000;
                format!("2001:db8::{group:x}:{i}")
            },
            agent: format!("ErasureAgent/{tag}-{i}"),
            device: format!("erasure-device-{tag}-{i}"),
        })
        .collect();
    let mut sessions = Vec::new();
    for t in &traces {
        sessions.push(login_from(&app, &name, t).await);
    }
    let failed_ip = "203.0.113.99".to_owned();
    wrong_password_from(&app, &name, &failed_ip).await;
    // A refresh is an event about the user from an address too.
    let refreshed = app.refresh(&sessions[0].refresh).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    // Someone else, whose data must stay.
    let other = username("bystander");
    app.register(&other).await;
    let bystander_trace = Trace {
        ip: "198.51.100.23".into(),
        agent: format!("BystanderAgent/{tag}"),
        device: format!("bystander-device-{tag}"),
    };
    let bystander = login_from(&app, &other, &bystander_trace).await;

    // Before: all of it reads back through the API (so this test can fail).
    let listed = app.get("/v1/sessions", Some(&sessions[3].access)).await;
    let listed = listed.body["sessions"].to_string();
    for t in &traces {
        for s in [&t.ip, &t.agent] {
            assert!(listed.contains(s.as_str()), "{s} missing from {listed}");
        }
    }
    let audit = events(&app, &format!("user_id={user_id}")).await;
    let text = serde_json::to_string(&audit).unwrap();
    let mut shown = vec![&name];
    shown.extend(traces.iter().flat_map(|t| [&t.ip, &t.device]));
    for s in shown {
        assert!(
            text.contains(s.as_str()),
            "{s} missing from the audit: {text}"
        );
    }
    // A failed login names no user (known and unknown names look alike),
    // but a known user's name and address are theirs, and read back.
    let failed = events(&app, "type=login_failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["data"]["username"], name.as_str());
    assert_eq!(failed[0]["ip"], failed_ip.as_str());
    assert_eq!(failed[0]["user_id"], Value::Null);
    let admin_view = app
        .admin_get(&format!("/v1/admin/users/{user_id}/sessions"))
        .await;
    assert!(admin_view.body.to_string().contains(&traces[0].agent));
    // Nothing personal of the user's is stored in the clear, even now
    // (but for the name on the live user row, which erasure replaces).
    let before = store_bytes(&b).await;
    for t in &traces {
        for s in [&t.ip, &t.agent, &t.device] {
            assert!(!before.contains(s.as_str()), "{s} stored in the clear");
        }
    }

    let res = erase(&app, &user_id, Some(ADMIN_TOKEN)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(res.body["seq"].as_i64().unwrap() > 0);
    assert_eq!(res.body["revoked_sessions"], 4);

    // After: not one byte of it is left anywhere in the store.
    let after = store_bytes(&b).await;
    for t in &traces {
        for s in [&t.ip, &t.agent, &t.device] {
            assert!(!after.contains(s.as_str()), "{s} survives erasure");
        }
    }
    assert!(!after.contains(&name), "the username survives erasure");
    assert!(
        !after.contains(&failed_ip),
        "the failed login's address survives"
    );
    // ... while the bystander's is there (the dump did read the data).
    assert!(
        after.contains(&other),
        "the bystander's name is not in the dump"
    );

    // The audit trail keeps the erased user's events, ids and all, with
    // null where the personal data was.
    let audit = events(&app, &format!("user_id={user_id}")).await;
    let kinds: Vec<&str> = audit.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"user_registered"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"user_erased"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "login_succeeded").count(), 4);
    let failed = events(&app, "type=login_failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    for e in audit.iter().chain(&failed) {
        assert_eq!(e["ip"], Value::Null, "{e}");
        assert!(e["data"].get("device_id").is_none_or(Value::is_null), "{e}");
        if e["type"] == "user_registered" || e["type"] == "login_failed" {
            assert_eq!(e["data"]["username"], Value::Null, "{e}");
        }
    }
    assert!(audit.iter().all(|e| e["user_id"] == user_id.as_str()));
    let text = serde_json::to_string(&(&audit, &failed)).unwrap();
    for s in [&name, &failed_ip, &traces[0].ip, &traces[0].device] {
        assert!(!text.contains(s.as_str()), "{s} still shown: {text}");
    }
    // Other users' data is untouched.
    let theirs = events(&app, &format!("user_id={}", bystander.user_id)).await;
    let login = theirs
        .iter()
        .find(|e| e["type"] == "login_succeeded")
        .unwrap();
    assert_eq!(login["ip"], bystander_trace.ip.as_str());
    assert_eq!(login["data"]["device_id"], bystander_trace.device.as_str());
    let registered = &theirs[0];
    assert_eq!(registered["data"]["username"], other.as_str());
    let listed = app.get("/v1/sessions", Some(&bystander.access)).await;
    assert_eq!(
        listed.body["sessions"][0]["user_agent"],
        bystander_trace.agent.as_str()
    );

    // The chain still verifies: erasure destroyed a key, not a byte of the
    // log.
    let verified = app.admin_get("/v1/admin/log/verify").await;
    assert_eq!(verified.body["ok"], true, "{}", verified.body);
    // Erasing twice: nobody is left to erase.
    let again = erase(&app, &user_id, Some(ADMIN_TOKEN)).await;
    assert_eq!(again.status, 404, "{}", again.body);
    app.stop().await;
}

async fn erasure_needs_an_admin_and_a_user(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (_, s) = app.signup("eraseme").await;
    let none = erase(&app, &s.user_id, None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{}", none.body);
    let own = erase(&app, &s.user_id, Some(&s.access)).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.body);
    let unknown = erase(&app, &uuid::Uuid::now_v7().to_string(), Some(ADMIN_TOKEN)).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let malformed = erase(&app, "not-a-uuid", Some(ADMIN_TOKEN)).await;
    let lock = app.admin_user_action("not-a-uuid", "lock", json!({})).await;
    assert_eq!(
        malformed.status, lock.status,
        "as the other admin user routes"
    );
    assert!([400, 404].contains(&malformed.status.as_u16()));
    // Nothing happened to the user.
    app.assert_me(&s.access, 200, "refused erasures change nothing")
        .await;
    app.stop().await;
}

both_stores!(
    the_erased_users_personal_data_leaves_no_bytes,
    erasure_needs_an_admin_and_a_user
);

/// A three-instance fleet (PostgreSQL + Redis): right after the erase
/// answers, every instance refuses the user's access tokens, refresh
/// tokens are dead, and the username can be registered and used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_users_tokens_die_on_every_instance() {
    let (_b, fleet, name, user_id) = fleet_with_user("erasefleet").await;
    let sessions = [
        fleet[0].login(&name).await,
        fleet[1].login(&name).await,
        fleet[2].login(&name).await,
    ];
    for (app, s) in fleet.iter().zip(&sessions) {
        assert_eq!(app.me_status(&s.access).await, 200);
    }
    let res = erase(&fleet[1], &user_id, Some(ADMIN_TOKEN)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    // The serving instance before it answered (G2), the others within the
    // propagation bound (G3).
    assert_eq!(fleet[1].me_status(&sessions[0].access).await, 401);
    let apps: Vec<&TestApp> = fleet.iter().collect();
    for s in &sessions {
        assert!(
            all_reject(&apps, &s.access, FLEET).await.is_some(),
            "an instance still accepts an erased user's token"
        );
    }
    for (app, s) in fleet.iter().zip(&sessions) {
        let r = app.refresh(&s.refresh).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    // The old password no longer logs anyone in; the name is free.
    assert_eq!(fleet[2].try_login(&name, PASSWORD).await.status, 401);
    let new_id = fleet[2].register(&name).await;
    assert_ne!(new_id, user_id);
    let fresh = fleet[0].login(&name).await;
    assert_eq!(fresh.user_id, new_id);
    for app in &fleet {
        assert_eq!(app.me_status(&fresh.access).await, 200);
    }
    stop_all(fleet).await;
}
