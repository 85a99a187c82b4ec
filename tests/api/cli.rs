//! `recall admin ...`: the real binary against the test database and Redis
//! channel, with a running instance that must feel its effects.

use recall::clock::Timestamp;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

use crate::fixtures::{sorted_session_ids, sorted_strings};
use crate::helpers::{events, kid_of, rfc3339_ms, FLEET};
use crate::helpers::{eventually, redis_url, username, Backend, Kind, TestApp, PASSWORD};

/// Longest a CLI command may take.
const CLI_LIMIT: Duration = Duration::from_secs(30);

/// `recall admin <args>` configured for this backend (and nothing else).
fn recall_admin(b: &Backend, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recall"));
    cmd.env_clear()
        .env("RECALL_DATABASE_URL", &b.db.as_ref().unwrap().url)
        .env("RECALL_MASTER_KEY", b.master.to_base64())
        .env("RECALL_REDIS_URL", redis_url())
        .env("RECALL_REDIS_CHANNEL", &b.channel)
        .env("RECALL_DATA_DIR", &b.dir.0)
        .arg("admin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs a command to its end; returns (success, stdout lines, stderr).
pub(crate) async fn run_raw(
    b: &Backend,
    args: &[&str],
    stdin: &str,
) -> (bool, Vec<String>, String) {
    let mut child = recall_admin(b, args).spawn().expect("spawn recall");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(CLI_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("recall admin {args:?} took over {CLI_LIMIT:?}"))
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    (out.status.success(), lines, stderr)
}

/// Runs a command that must succeed; every stdout line must be JSON.
async fn run(b: &Backend, args: &[&str], stdin: &str) -> Vec<Value> {
    let (ok, lines, stderr) = run_raw(b, args, stdin).await;
    assert!(ok, "recall admin {args:?} failed: {stderr}");
    lines
        .iter()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("recall admin {args:?}: not JSON ({e}): {l}"))
        })
        .collect()
}

/// Runs a command that prints exactly one JSON object.
pub(crate) async fn run_one(b: &Backend, args: &[&str]) -> Value {
    let mut out = run(b, args, "").await;
    assert_eq!(out.len(), 1, "recall admin {args:?}: {out:?}");
    out.remove(0)
}

/// An instance on the Redis bus of this backend.
async fn instance(b: &Backend) -> TestApp {
    b.spawn_with(b.settings(), Some(redis_url())).await
}

/// A fresh PostgreSQL backend and an instance on its Redis bus.
pub(crate) async fn cli_app() -> (Backend, TestApp) {
    let b = Backend::new(Kind::Postgres).await;
    let app = instance(&b).await;
    (b, app)
}

/// Asserts `e` is an event of this type about this user, done by the CLI.
fn assert_cli_event(e: &Value, kind: &str, user_id: &str) {
    assert_eq!(e["type"], kind, "{e}");
    assert_eq!(e["user_id"], user_id, "{e}");
    assert_eq!(e["actor"], "cli", "{e}");
}

/// Logs `name` in with the test password: the status and body.
async fn login_status(app: &TestApp, name: &str) -> (u16, Value) {
    let res = app.try_login(name, PASSWORD).await;
    (res.status.as_u16(), res.body)
}

/// Logs `name` in with the test password, which must answer `status`; the body.
async fn login_answers(app: &TestApp, name: &str, status: u16) -> Value {
    let (got, body) = login_status(app, name).await;
    assert_eq!(got, status, "{body}");
    body
}

/// Waits until the instance no longer accepts `token`; returns the answer.
async fn until_rejected(app: &TestApp, token: &str) -> (u16, Value) {
    let took = eventually(
        FLEET,
        || async move { !app.me_status(token).await.is_success() },
    )
    .await;
    assert!(took.is_some(), "the instance still accepts the token");
    let res = app.get("/v1/me", Some(token)).await;
    (res.status.as_u16(), res.body)
}

/// The next stdout line of a running command, as JSON.
async fn next_json(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("a line within 10 s")
        .unwrap()
        .expect("recall admin events --follow ended");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_create_user_then_login_over_http() {
    let (b, app) = cli_app().await;
    let name = username("cliuser");
    let out = run(&b, &["create-user", &name], &format!("{PASSWORD}\n")).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["username"], name.as_str());
    assert_eq!(out[0]["roles"], json!([]));
    let user_id = out[0]["user_id"].as_str().unwrap().to_owned();
    // The running instance logs the new user in.
    let s = app.login(&name).await;
    assert_eq!(s.user_id, user_id);
    let res = app.get("/v1/admin/keys", Some(&s.access)).await;
    assert_eq!(res.status, 403, "not an admin");

    // --admin makes an admin, who can use the admin routes.
    let boss = username("cliboss");
    let out = run(
        &b,
        &["create-user", &boss, "--admin"],
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert_eq!(out[0]["roles"], json!(["admin"]));
    let t = app.login(&boss).await;
    let res = app.get("/v1/admin/keys", Some(&t.access)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let res = app
        .get(&format!("/v1/admin/users?username={boss}"), Some(&t.access))
        .await;
    assert_eq!(res.body["roles"], json!(["admin"]));
    // Recorded as the CLI's doing.
    let logged = events(&app, &format!("user_id={user_id}&type=user_registered")).await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["actor"], "cli");

    // A taken name or a short password fails, with nothing on stdout.
    let (ok, lines, stderr) = run_raw(&b, &["create-user", &name], &format!("{PASSWORD}\n")).await;
    assert!(!ok, "a taken username must fail");
    assert!(lines.is_empty(), "{lines:?}");
    assert!(!stderr.is_empty());
    let (ok, _, _) = run_raw(&b, &["create-user", &username("short")], "short\n").await;
    assert!(!ok, "a 5-byte password must fail");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lock_by_username_for_2s() {
    let (b, app) = cli_app().await;
    let (name, s) = app.signup("clilock").await;

    let before = Timestamp::now().ms();
    let e = run_one(
        &b,
        &["lock", &name, "--for", "2s", "--reason", "incident 7"],
    )
    .await;
    assert_cli_event(&e, "user_locked", &s.user_id);
    assert_eq!(e["data"]["reason"], "incident 7");
    assert!(e["seq"].is_i64());
    let until = e["data"]["until"].as_i64().unwrap();
    assert!(until >= before + 2000 && until <= Timestamp::now().ms() + 2000);
    assert!(e["data"]["revoked_session_ids"]
        .to_string()
        .contains(&s.session_id));
    // The running instance feels it at once: tokens and login refused.
    let (status, body) = until_rejected(&app, &s.access).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "account_locked");
    let (status, body) = login_status(&app, &name).await;
    assert!(
        Timestamp::now().ms() < until,
        "the CLI took so long the lock was over before we looked"
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "account_locked");
    // The lock ends by itself after 2 s.
    tokio::time::sleep(Duration::from_millis(
        (until - Timestamp::now().ms()).max(0) as u64 + 50,
    ))
    .await;
    login_answers(&app, &name, 200).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lock_and_unlock_by_id_while_http_is_down() {
    let (b, app) = cli_app().await;
    let (name, s) = app.signup("clidown").await;
    let user_id = s.user_id.clone();
    // HTTP is down: no instance runs.
    app.stop().await;

    let before = Timestamp::now().ms();
    let e = run_one(&b, &["lock", &user_id]).await;
    assert_eq!(e["type"], "user_locked");
    let until = e["data"]["until"].as_i64().unwrap();
    assert!(
        until >= before + 86_400_000 && until <= Timestamp::now().ms() + 86_400_000,
        "default lock is 24 h: {e}"
    );
    // An instance started afterwards knows: the lock holds, the session is dead.
    let app = instance(&b).await;
    assert_ne!(app.me_status(&s.access).await, 200);
    let body = login_answers(&app, &name, 403).await;
    assert_eq!(body["error"], "account_locked");
    let found = app.admin_user(&name).await;
    assert_eq!(
        rfc3339_ms(found.body["locked_until"].as_str().unwrap()),
        until
    );

    // Unlock (by id) while that instance runs: login works at once.
    let e = run_one(&b, &["unlock", &user_id]).await;
    assert_cli_event(&e, "user_unlocked", &user_id);
    let body = login_answers(&app, &name, 200).await;
    let fresh = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.me_status(&fresh).await, 200);
    app.assert_me(&s.access, 401, "old sessions stay dead")
        .await;
    // Unknown users: a failure, nothing on stdout.
    for who in [username("nobody"), uuid::Uuid::now_v7().to_string()] {
        let (ok, lines, _) = run_raw(&b, &["unlock", &who], "").await;
        assert!(!ok && lines.is_empty(), "unlock {who}: {lines:?}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_revoke_sessions() {
    let (b, app) = cli_app().await;
    let (name, s1) = app.signup("clirev").await;
    let s2 = app.login(&name).await;
    let e = run_one(&b, &["revoke-sessions", &name, "--reason", "phished"]).await;
    assert_cli_event(&e, "user_sessions_revoked", &s1.user_id);
    assert_eq!(e["data"]["reason"], "phished");
    assert_eq!(
        sorted_strings(&e["data"]["session_ids"]),
        sorted_session_ids(&[&s1, &s2])
    );
    for s in [&s1, &s2] {
        let (status, body) = until_rejected(&app, &s.access).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_token");
        let r = app.refresh(&s.refresh).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.error(), "invalid_grant");
    }
    // Not locked: a new login works.
    login_answers(&app, &name, 200).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_rotate_key_scheduled_and_compromised() {
    let (b, app) = cli_app().await;
    let (name, s) = app.signup("clikey").await;
    let first = kid_of(&s.access);

    // Scheduled: old tokens keep working.
    let e = run_one(&b, &["rotate-key"]).await;
    assert_eq!(e["type"], "key_rotated");
    assert_eq!(e["data"]["compromised"], false);
    assert_eq!(e["data"]["previous_kid"], first.as_str());
    let second = e["data"]["kid"].as_str().unwrap().to_owned();
    let took = eventually(FLEET, || async {
        app.recall().sync().state().active_kid() == Some(second.as_str())
    })
    .await;
    assert!(took.is_some(), "the instance never saw the rotation");
    assert_eq!(app.me_status(&s.access).await, 200);
    let t = app.login(&name).await;
    assert_eq!(kid_of(&t.access), second);
    assert_eq!(app.me_status(&t.access).await, 200);

    // Compromised: every token of the second key dies; refresh gets a third.
    let e = run_one(&b, &["rotate-key", "--compromised", "--reason", "leak"]).await;
    assert_eq!(e["type"], "key_rotated");
    assert_eq!(e["data"]["compromised"], true);
    assert_eq!(e["data"]["previous_kid"], second.as_str());
    assert_eq!(e["data"]["reason"], "leak");
    assert_eq!(e["actor"], "cli");
    let third = e["data"]["kid"].as_str().unwrap().to_owned();
    let (status, body) = until_rejected(&app, &t.access).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_token");
    let r = app.refresh(&t.refresh).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let access = r.body["access_token"].as_str().unwrap();
    assert_eq!(kid_of(access), third);
    assert_eq!(app.me_status(access).await, 200);
    let keys = app.admin_get("/v1/admin/keys").await;
    let status = |kid: &str| {
        keys.body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status(&second).as_deref(), Some("revoked"));
    assert_eq!(status(&third).as_deref(), Some("active"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_events_prints_json_lines() {
    let (b, app) = cli_app().await;
    let (name, s) = app.signup("clievt").await;
    let user_id = s.user_id.clone();
    assert_eq!(app.logout(&s.access).await.status, 204);
    let locked = run_one(&b, &["lock", &name, "--for", "1h"]).await;

    let lines = run(&b, &["events"], "").await;
    let over_http = events(&app, "").await;
    assert_eq!(lines, over_http, "the CLI prints what the API lists");
    let seqs: Vec<i64> = lines.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let types: Vec<_> = lines
        .iter()
        .filter(|e| e["user_id"] == user_id.as_str())
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "user_registered",
            "login_succeeded",
            "logged_out",
            "user_locked"
        ]
    );
    let logout = lines.iter().find(|e| e["type"] == "logged_out").unwrap();
    assert_eq!(logout["session_id"], s.session_id.as_str());
    assert_eq!(lines.last().unwrap(), &locked);
    // A cursor and a limit.
    let after = seqs[1].to_string();
    let page = run(&b, &["events", "--after", &after, "--limit", "2"], "").await;
    let page_seqs: Vec<i64> = page.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(page_seqs, seqs[2..].to_vec(), "pages until the end");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_events_follow_shows_new_events() {
    let (b, app) = cli_app().await;
    let name = username("clifol");
    app.register(&name).await;
    let head = events(&app, "").await.last().unwrap()["seq"]
        .as_i64()
        .unwrap();

    let mut child = recall_admin(&b, &["events", "--follow"])
        .spawn()
        .expect("spawn recall");
    drop(child.stdin.take());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // First the log so far.
    loop {
        let e = next_json(&mut lines).await;
        if e["seq"].as_i64().unwrap() == head {
            break;
        }
    }
    // Then what happens after it started.
    let s = app.login(&name).await;
    assert_eq!(app.logout(&s.access).await.status, 204);
    let e = next_json(&mut lines).await;
    assert_eq!(e["seq"].as_i64().unwrap(), head + 1);
    assert_eq!(e["type"], "login_succeeded");
    assert_eq!(e["session_id"], s.session_id.as_str());
    let e = next_json(&mut lines).await;
    assert_eq!(e["seq"].as_i64().unwrap(), head + 2);
    assert_eq!(e["type"], "logged_out");
    assert_eq!(e["session_id"], s.session_id.as_str());
    child.kill().await.unwrap();
    app.stop().await;
}

/// `--help` never prints a secret value, passwords inside URLs included,
/// for the top level and every subcommand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_never_prints_secrets() {
    let secrets = [
        (
            "RECALL_DATABASE_URL",
            "postgres://recall:pg-hunter2@db/recall",
            "pg-hunter2",
        ),
        (
            "RECALL_REDIS_URL",
            "redis://:redis-hunter2@redis:6379",
            "redis-hunter2",
        ),
        (
            "RECALL_ADMIN_TOKEN",
            "admin-hunter2-0123456789abcdefghijkl",
            "admin-hunter2",
        ),
        (
            "RECALL_MASTER_KEY",
            "bWFzdGVyLWh1bnRlcjItMDEyMzQ1Njc4OWFiY2RlZg==",
            "bWFzdGVy",
        ),
    ];
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["admin", "--help"],
        vec!["admin", "lock", "--help"],
        vec!["migrate", "--help"],
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_recall"));
        cmd.env_clear().args(&args);
        for (var, value, _) in secrets {
            cmd.env(var, value);
        }
        let out = cmd.output().await.unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("RECALL_DATABASE_URL"), "{args:?}: {text}");
        for (var, _, needle) in secrets {
            assert!(!text.contains(needle), "{args:?} printed {var}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_create_and_revoke_a_service_credential() {
    let (b, app) = cli_app().await;
    let made = run_one(&b, &["create-service", "orders-api"]).await;
    let token = made["token"].as_str().unwrap().to_owned();
    let id = made["service_id"].as_str().unwrap().to_owned();
    assert_eq!(made["name"], "orders-api");
    assert_eq!(app.get("/v1/revocations", Some(&token)).await.status, 200);
    let listed = app.admin_get("/v1/admin/services").await;
    assert_eq!(listed.body["services"][0]["service_id"], id.as_str());
    let ended = run_one(&b, &["revoke-service", &id]).await;
    assert_eq!(ended["revoked"], true);
    assert_eq!(app.get("/v1/revocations", Some(&token)).await.status, 401);
    let audit = events(&app, "type=service_created").await;
    assert_eq!(audit[0]["actor"], "cli");
    app.stop().await;
}

/// An admin's reason is one rule for the CLI and the API: over 1,000
/// characters is refused by both, on every emergency command, and nothing
/// is written; 1,000 exactly is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reason_over_1000_characters_is_refused_by_the_cli_as_by_the_api() {
    let (b, app) = cli_app().await;
    let (name, s) = app.signup("clireason").await;
    let long = "é".repeat(1001);
    let before = events(&app, "").await.len();
    for args in [
        vec!["lock", name.as_str(), "--for", "1h", "--reason", &long],
        vec!["revoke-sessions", name.as_str(), "--reason", &long],
        vec!["rotate-key", "--compromised", "--reason", &long],
    ] {
        let (ok, out, stderr) = run_raw(&b, &args, "").await;
        assert!(!ok, "recall admin {} took the reason: {out:?}", args[0]);
        assert!(
            stderr.contains("reason: at most 1000 characters"),
            "{}: {stderr}",
            args[0]
        );
    }
    for action in ["lock", "revoke-sessions"] {
        let res = app
            .admin_user_action(&s.user_id, action, json!({ "reason": long }))
            .await;
        assert_eq!(res.status, 400, "{action}: {}", res.body);
        assert_eq!(res.error(), "invalid_request");
        assert_eq!(
            res.body["error_description"],
            "reason: at most 1000 characters"
        );
    }
    let res = app
        .rotate_key(json!({ "compromised": true, "reason": long }))
        .await;
    assert_eq!(res.status, 400, "{}", res.body);
    assert_eq!(events(&app, "").await.len(), before, "nothing was written");
    app.assert_me(&s.access, 200, "no lock, no revocation")
        .await;
    let e = run_one(&b, &["revoke-sessions", &name, "--reason", &long[..2000]]).await;
    assert_eq!(
        e["data"]["reason"],
        long[..2000],
        "1000 characters are taken"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_erase_user_by_username() {
    let (b, app) = cli_app().await;
    let (name, s1) = app.signup("clierase").await;
    let s2 = app.login(&name).await;
    let e = run_one(&b, &["erase-user", &name]).await;
    assert_cli_event(&e, "user_erased", &s1.user_id);
    assert_eq!(
        sorted_strings(&e["data"]["revoked_session_ids"]),
        sorted_session_ids(&[&s1, &s2])
    );
    // The running instance feels it at once; the name is free again.
    for s in [&s1, &s2] {
        let (status, body) = until_rejected(&app, &s.access).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(app.refresh(&s.refresh).await.status, 401);
    }
    let registered = events(
        &app,
        &format!("user_id={}&type=user_registered", s1.user_id),
    )
    .await;
    assert_eq!(registered[0]["data"]["username"], Value::Null);
    login_answers(&app, &name, 401).await;
    app.register(&name).await;
    login_answers(&app, &name, 200).await;
    // Twice: nobody of that id or name is left to erase.
    let (ok, _, stderr) = run_raw(&b, &["erase-user", &s1.user_id], "").await;
    assert!(!ok, "a second erasure succeeded");
    assert!(
        stderr.contains("not found") || stderr.contains("no such"),
        "{stderr}"
    );
    app.stop().await;
}
