//! Bounded under abuse (G10): the hash pool under reset connections, the
//! brute-force budget across a fleet, password-change guesses, per-address
//! rate limits and trusted proxies. (The other limits: `limits.rs`.)

use std::net::IpAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::fixtures::{start, start_tuned, stop_all};
use crate::helpers::{eventually, username, Backend, Kind, TestApp, PASSWORD};

/// Sends a login for a fresh username (each its own brute-force budget, so
/// every one reaches the hash pool) and resets the connection (RST) right
/// after the request.
async fn login_then_reset(app: &TestApp) {
    let name = username("flood");
    let body = json!({ "username": name, "password": "wrong password!" }).to_string();
    let req = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", app.running.port)).await else {
        return;
    };
    let _ = conn.write_all(req.as_bytes()).await;
    // Linger 0: closing sends RST instead of FIN.
    let _ = conn.set_zero_linger();
    drop(conn);
}

/// Reset connections cannot make more hashes run than the pool has workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connections_never_exceed_the_hash_pool() {
    let (_b, app) = start_tuned(Kind::Sqlite, |s| {
        s.hash_workers = 2;
        s.hash_queue = 16;
    })
    .await;
    let name = username("flood");
    app.register(&name).await;
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (sampling, http, base) = (sampling.clone(), app.http.clone(), app.base.clone());
        tokio::spawn(async move {
            let mut highest = 0.0f64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(res) = http.get(format!("{base}/metrics")).send().await {
                    let text = res.text().await.unwrap_or_default();
                    let running = text
                        .lines()
                        .find_map(|l| l.strip_prefix("recall_hash_running ")?.parse::<f64>().ok())
                        .unwrap_or(0.0);
                    highest = highest.max(running);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            highest
        })
    };
    for wave in 0..4 {
        let floods: Vec<_> = (0..100).map(|_| login_then_reset(&app)).collect();
        futures_util::future::join_all(floods).await;
        println!("wave {wave} sent");
    }
    let drained = eventually(Duration::from_secs(30), || async {
        app.metric("recall_hash_admitted").await == 0.0
    })
    .await;
    assert!(drained.is_some(), "the pool never drained");
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let sampled = sampler.await.unwrap();
    let max = app.metric("recall_hash_running_max").await;
    assert!(max <= 2.0, "{max} hashes ran at once with 2 workers");
    assert!(sampled <= 2.0, "sampled {sampled} running hashes");
    // The flood really reached the pool: jobs were skipped or refused.
    let skipped = app.metric("recall_hash_abandoned_total").await;
    let refused = app.metric("recall_hash_rejected_total").await;
    assert!(
        skipped + refused > 0.0,
        "no reset login reached the pool (skipped {skipped}, refused {refused})"
    );
    // And it still serves (once the backlog of reset requests that actix
    // had already accepted is worked off).
    let served = eventually(Duration::from_secs(30), || async {
        app.post(
            "/v1/auth/login",
            None,
            json!({ "username": name, "password": PASSWORD }),
        )
        .await
        .status
            == 200
    })
    .await;
    assert!(served.is_some(), "no login served after the flood");
    app.stop().await;
}

/// Statuses of a burst of logins for one username over a fleet: 150 wrong
/// guesses, the right password once a lock is seen, 49 more wrong, and the
/// right password again afterwards.
async fn burst(apps: &[TestApp], name: &str) -> (Vec<u16>, u16, u16) {
    let send = |i: usize, password: &'static str| {
        let app = &apps[i % apps.len()];
        let (http, url) = (app.http.clone(), format!("{}/v1/auth/login", app.base));
        let name = name.to_owned();
        tokio::spawn(async move {
            http.post(url)
                .json(&json!({ "username": name, "password": password }))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
    };
    let mut wrong: Vec<_> = (0..150).map(|i| send(i, "not the password")).collect();
    // Wait until the first refusal: the lock exists; the burst goes on.
    let first_lock = eventually(Duration::from_secs(30), || async {
        wrong.iter().any(|h| h.is_finished())
    })
    .await;
    assert!(first_lock.is_some());
    let right = send(150, PASSWORD).await.unwrap();
    wrong.extend((151..200).map(|i| send(i, "not the password")));
    let mut statuses = Vec::new();
    for h in wrong {
        statuses.push(h.await.unwrap());
    }
    let after = send(0, PASSWORD).await.unwrap();
    statuses.sort();
    (statuses, right, after)
}

async fn hashed_guesses(apps: &[TestApp]) -> f64 {
    let mut n = 0.0;
    for app in apps {
        n += app.metric("recall_logins_total{outcome=\"failed\"}").await
            + app
                .metric("recall_logins_total{outcome=\"succeeded\"}")
                .await;
    }
    n
}

/// 200 parallel guesses for one username over 3 instances: at most 10 are
/// checked against a hash; the right password inside the burst and after
/// it gets 403; an unknown username gives the same answers and events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brute_force_budget_holds_across_the_fleet() {
    let b = Backend::new(Kind::Postgres).await;
    let apps = b.spawn_fleet_with(3, |_| {}).await;
    let known = username("victim");
    apps[0].register(&known).await;
    let before = hashed_guesses(&apps).await;
    let (statuses, right, after) = burst(&apps, &known).await;
    let checked = hashed_guesses(&apps).await - before;
    let count = |code: u16| statuses.iter().filter(|s| **s == code).count();
    assert!(
        checked <= 10.0,
        "{checked} guesses were checked against the hash"
    );
    assert_eq!(count(401) as f64, checked, "every 401 is a checked guess");
    assert_eq!(count(401) + count(403), 199, "{statuses:?}");
    assert_eq!(right, 403, "the right password inside the burst");
    assert_eq!(after, 403, "the right password while locked");

    // The same for a username that does not exist.
    let ghost = username("ghost");
    let (ghost_statuses, ghost_right, ghost_after) = burst(&apps, &ghost).await;
    assert_eq!(ghost_statuses, statuses, "unknown and known answer alike");
    assert_eq!((ghost_right, ghost_after), (403, 403));
    // And their events are alike, with no user id in either.
    let events_of = |name: String| {
        let app = &apps[0];
        async move {
            let res = app
                .admin_get("/v1/admin/events?limit=1000&type=login_failed")
                .await;
            let mut shapes: Vec<(bool, Value)> = res.body["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["data"]["username"] == name.as_str())
                .map(|e| (e["data"]["locked_until"].is_null(), e["user_id"].clone()))
                .collect();
            shapes.sort_by_key(|s| s.0);
            shapes
        }
    };
    let (k, g) = (
        events_of(known.clone()).await,
        events_of(ghost.clone()).await,
    );
    // Whether the lock comes from the 10th failed hash or from the 11th
    // reservation depends on arrival timing, not on the user existing: so
    // each has one lock event, no user id, and 9 or 10 other failures.
    for (who, events) in [("known", &k), ("unknown", &g)] {
        assert!(
            events.iter().all(|(_, user)| user.is_null()),
            "{who}: {events:?}"
        );
        let locks = events.iter().filter(|(open, _)| !open).count();
        assert_eq!(locks, 1, "{who}: one lock: {events:?}");
        let failures = events.len() - locks;
        assert!((9..=10).contains(&failures), "{who}: {events:?}");
    }
    stop_all(apps).await;
}

/// A wrong `current_password` counts against the username's budget, and
/// the fifth in a row revokes the session that sent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_guesses_count_and_revoke_the_session() {
    let (_b, app) = start(Kind::Sqlite).await;
    let (name, s) = app.signup("pw").await;
    let other = app.login(&name).await;
    let change = |current: &'static str| {
        app.post(
            "/v1/auth/password",
            Some(&s.access),
            json!({ "current_password": current, "new_password": "a new password" }),
        )
    };
    for i in 1..=4 {
        let res = change("wrong guess").await;
        assert_eq!(
            (res.status.as_u16(), res.error()),
            (401, "invalid_credentials"),
            "{i}"
        );
        assert_eq!(app.me_status(&s.access).await, 200, "after {i} wrong");
    }
    let res = change("wrong guess").await;
    assert_eq!(res.status, 401);
    app.assert_me(&s.access, 401, "the fifth revokes the session")
        .await;
    app.assert_me(&other.access, 200, "other sessions live")
        .await;
    let t = app.recall().store().throttle(&name).await.unwrap();
    assert_eq!(t.failures, 5, "each counted against the username");
    // Five more wrong logins fill the budget of 10: locked.
    for _ in 0..5 {
        let res = app.try_login(&name, "wrong guess").await;
        assert_eq!(res.status, 401);
    }
    let res = app.try_login(&name, PASSWORD).await;
    assert_eq!((res.status.as_u16(), res.error()), (403, "account_locked"));
    // The change itself is refused while locked, even with the right password.
    let res = app
        .post(
            "/v1/auth/password",
            Some(&other.access),
            json!({ "current_password": PASSWORD, "new_password": "a new password" }),
        )
        .await;
    assert_eq!(res.status, 403);
    app.stop().await;
}

/// Per client address: login, registration, refresh and `/oauth/*` share
/// a budget; past it 429 `rate_limited` with `Retry-After`; other
/// addresses and other routes are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_per_client_address() {
    let (_b, app) = start_tuned(Kind::Sqlite, |s| {
        s.rate_limit_per_min = 4;
    })
    .await;
    let name = username("rl");
    let user_id = app.register(&name).await; // 1
    let s = app.login(&name).await; // 2
    let refresh = app.refresh("nope").await; // 3
    assert_eq!(refresh.status, 401);
    let revoke = app
        .post_form("/oauth/revoke", b"token=x".to_vec(), None)
        .await; // 4
    assert_eq!(revoke.status, 200);
    for path in [
        "/v1/auth/login",
        "/v1/users",
        "/v1/auth/refresh",
        "/oauth/introspect",
    ] {
        let res = app
            .raw(path, "application/json", b"{}".to_vec(), None)
            .await;
        assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(res.error(), "rate_limited");
        let retry: u64 = res.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
    // Other routes are not limited.
    assert_eq!(app.me_status(&s.access).await, 200);
    // Another client address (through the trusted loopback proxy) has its own.
    let res = app
        .http
        .post(format!("{}/v1/auth/login", app.base))
        .header("x-forwarded-for", "198.51.100.9")
        .json(&json!({ "username": name, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(app.metric("recall_rate_limited_total").await >= 4.0);
    let _ = user_id;
    app.stop().await;
}

async fn session_ips(app: &TestApp, access: &str) -> Vec<String> {
    let res = app.get("/v1/sessions", Some(access)).await;
    res.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ip"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// `X-Forwarded-For` is believed only from `RECALL_TRUSTED_PROXIES`, and
/// then only its rightmost untrusted entry; 127.0.0.2 is untrusted when
/// the list is 127.0.0.1/32.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_from_trusted_proxies_only() {
    let (_b, app) = start_tuned(Kind::Sqlite, |s| {
        s.trusted_proxies = recall::config::parse_trusted_proxies("127.0.0.1/32").unwrap();
    })
    .await;
    let name = username("xff");
    app.register(&name).await;
    let login_from = |local: &str| {
        let client = reqwest::Client::builder()
            .local_address(local.parse::<IpAddr>().unwrap())
            .build()
            .unwrap();
        let url = format!("{}/v1/auth/login", app.base);
        let name = name.clone();
        async move {
            let res = client
                .post(url)
                .header("x-forwarded-for", "6.6.6.6, 203.0.113.5")
                .json(&json!({ "username": name, "password": PASSWORD }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<Value>().await.unwrap()["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let via_proxy = login_from("127.0.0.1").await;
    let direct = login_from("127.0.0.2").await;
    let ips = session_ips(&app, &via_proxy).await;
    assert!(ips.contains(&"203.0.113.5".to_owned()), "{ips:?}");
    assert!(ips.contains(&"127.0.0.2".to_owned()), "{ips:?}");
    assert!(
        !ips.contains(&"6.6.6.6".to_owned()),
        "the forged entry won: {ips:?}"
    );
    assert_eq!(ips.len(), 2);
    let _ = direct;
    app.stop().await;
}
