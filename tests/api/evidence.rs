//! The log as evidence: its hash chain names the first edited, missing or
//! cut event; a log from before the chain is chained by the migration;
//! signed checkpoints verify with the JWKS; retention deletes old events in
//! batches and the chain verifies across the cut. Edits are made with the
//! databases' own drivers, behind the store's back, as an attacker would.

use std::time::Duration;

use recall::clock::Timestamp;
use recall::events::{Event, Meta, Stamp};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::both_stores;
use crate::fixtures::start;
use crate::helpers::{Backend, Kind, TestApp};

/// Runs statements with the database's own driver (not the store's).
pub async fn raw_exec(b: &Backend, sql: &str) {
    match &b.db {
        Some(db) => {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            client.batch_execute(sql).await.expect(sql);
        }
        None => {
            let conn = rusqlite::Connection::open(b.settings().sqlite_path()).expect("open");
            conn.busy_timeout(Duration::from_secs(5)).expect("busy");
            conn.execute_batch(sql).expect(sql);
        }
    }
}

/// One text value a query selects (hex of bytes where the query says so).
async fn raw_text(b: &Backend, pg_sql: &str, sqlite_sql: &str) -> String {
    match &b.db {
        Some(db) => {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            client.query_one(pg_sql, &[]).await.expect(pg_sql).get(0)
        }
        None => {
            let conn = rusqlite::Connection::open(b.settings().sqlite_path()).expect("open");
            conn.query_row(sqlite_sql, [], |r| r.get(0))
                .expect(sqlite_sql)
        }
    }
}

/// The stored hash of event `seq`, lowercase hex.
async fn stored_hash(b: &Backend, seq: i64) -> String {
    raw_text(
        b,
        &format!("SELECT encode(hash, 'hex') FROM events WHERE seq = {seq}"),
        &format!("SELECT lower(hex(hash)) FROM events WHERE seq = {seq}"),
    )
    .await
}

async fn verify(app: &TestApp, from: Option<i64>) -> Value {
    let path = match from {
        Some(f) => format!("/v1/admin/log/verify?from={f}"),
        None => "/v1/admin/log/verify".to_owned(),
    };
    let res = app.admin_get(&path).await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body
}

async fn head(app: &TestApp) -> i64 {
    app.recall().store().head().await.unwrap()
}

/// Some history: users, logins, a logout, a lock and an unlock.
async fn history(app: &TestApp) {
    for i in 0..3 {
        let (name, s) = app.signup(&format!("chain{i}")).await;
        let user_id = s.user_id.clone();
        let second = app.login(&name).await;
        assert_eq!(app.logout(&second.access).await.status, 204);
        if i == 1 {
            let locked = app
                .admin_user_action(&user_id, "lock", json!({"reason": "evidence"}))
                .await;
            assert_eq!(locked.status, 200, "{}", locked.body);
            let unlocked = app.admin_user_action(&user_id, "unlock", json!({})).await;
            assert_eq!(unlocked.status, 200);
        }
    }
}

/// One-byte edits of any stored column name the edited seq; a deleted
/// row and a cut tail are named too; undoing the edit heals the verdict.
async fn an_edited_event_is_named(kind: Kind) {
    let (b, app) = start(kind).await;
    history(&app).await;
    let last = head(&app).await;
    assert!(last >= 12, "history wrote {last} events");
    let v = verify(&app, None).await;
    assert_eq!(v, json!({"ok": true, "verified_through": last}), "intact");

    let edits: [(&str, &str); 4] = [
        // One character of the payload.
        (
            "UPDATE events SET data = substr(data, 1, 5) || CASE substr(data, 6, 1) WHEN 'a' THEN 'b' ELSE 'a' END || substr(data, 7) WHERE seq = {k}",
            "UPDATE events SET data = (SELECT data FROM saved) WHERE seq = {k}",
        ),
        ("UPDATE events SET at = at + 1 WHERE seq = {k}", "UPDATE events SET at = at - 1 WHERE seq = {k}"),
        ("UPDATE events SET actor = 'cli' WHERE seq = {k}", "UPDATE events SET actor = (SELECT actor FROM saved) WHERE seq = {k}"),
        (
            "UPDATE events SET prev_hash = (SELECT hash FROM events WHERE seq = {k}) WHERE seq = {k}",
            "UPDATE events SET prev_hash = (SELECT prev_hash FROM saved) WHERE seq = {k}",
        ),
    ];
    for k in [1, last / 2, last] {
        for (edit, undo) in edits {
            let save = format!(
                "DROP TABLE IF EXISTS saved; CREATE TABLE saved AS SELECT data, actor, prev_hash FROM events WHERE seq = {k};"
            );
            raw_exec(&b, &save).await;
            raw_exec(&b, &edit.replace("{k}", &k.to_string())).await;
            let v = verify(&app, None).await;
            assert_eq!(v["ok"], false, "{edit} at {k}: {v}");
            assert_eq!(v["first_bad_seq"], k, "{edit} at {k}: {v}");
            assert_eq!(v["verified_through"], k - 1, "{edit} at {k}: {v}");
            raw_exec(&b, &undo.replace("{k}", &k.to_string())).await;
            assert_eq!(
                verify(&app, None).await["ok"],
                true,
                "undo of {edit} at {k}"
            );
        }
    }
    // Verifying from the middle still finds a later fault, and not an
    // earlier one.
    raw_exec(&b, "UPDATE events SET at = at + 1 WHERE seq = 2").await;
    assert_eq!(verify(&app, Some(3)).await["ok"], true);
    assert_eq!(verify(&app, None).await["first_bad_seq"], 2);
    raw_exec(&b, "UPDATE events SET at = at - 1 WHERE seq = 2").await;

    // A deleted row in the middle, and a cut tail.
    let mid = last / 2;
    raw_exec(&b, &format!("DROP TABLE IF EXISTS gone; CREATE TABLE gone AS SELECT * FROM events WHERE seq >= {mid}; DELETE FROM events WHERE seq = {mid};")).await;
    assert_eq!(verify(&app, None).await["first_bad_seq"], mid);
    raw_exec(&b, &format!("DELETE FROM events WHERE seq >= {mid}")).await;
    assert_eq!(verify(&app, None).await["first_bad_seq"], mid, "cut tail");
    raw_exec(&b, "INSERT INTO events SELECT * FROM gone").await;
    assert_eq!(verify(&app, None).await["ok"], true, "restored");
    app.stop().await;
}

/// A log written before the chain existed is chained by the migration,
/// and appends after it link on.
async fn the_migration_chains_an_old_log(kind: Kind) {
    let (b, app) = start(kind).await;
    history(&app).await;
    let last = head(&app).await;
    app.stop().await;
    raw_exec(
        &b,
        "UPDATE events SET prev_hash = NULL, hash = NULL; UPDATE recall_seq SET head = NULL",
    )
    .await;
    let store = b.store().await; // migrates, which chains
    assert_eq!(store.verify_log(0).await.unwrap().verified_through, last);
    let app = b.spawn().await;
    history(&app).await;
    let v = verify(&app, None).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["verified_through"], head(&app).await);
    app.stop().await;
}

/// What housekeeping's checkpoint rule writes now, if anything.
async fn due_checkpoint(app: &TestApp) -> Option<recall::store::evidence::Checkpoint> {
    app.recall()
        .sync()
        .checkpoint(false, &Meta::system())
        .await
        .unwrap()
}

/// Decodes one base64url JWS part.
fn part(jws: &str, i: usize) -> Value {
    use base64::Engine;
    let raw = jws.split('.').nth(i).expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

/// A checkpoint pins the chain: its JWS verifies with the JWKS, and its
/// head is the stored hash of the event it names.
async fn checkpoints_verify_with_the_jwks(kind: Kind) {
    let (b, app) = start(kind).await;
    history(&app).await;
    // A young log of a few events needs none yet.
    assert_eq!(app.admin_get("/v1/admin/log/checkpoint").await.status, 404);
    assert!(due_checkpoint(&app).await.is_none());
    let res = app.admin_post("/v1/admin/log/checkpoint", json!({})).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let cp = res.body;
    let through = cp["through_seq"].as_i64().unwrap();
    assert_eq!(cp["seq"].as_i64().unwrap(), through + 1);
    assert_eq!(cp["head"], stored_hash(&b, through).await);
    let jws = cp["jws"].as_str().unwrap();
    let header = part(jws, 0);
    assert_eq!(header["typ"], "recall-checkpoint+jwt");
    assert_eq!(header["kid"], cp["kid"]);
    // Verified the way an outside party would: the JWKS, a JOSE library.
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(app.get("/.well-known/jwks.json", None).await.body).unwrap();
    let jwk = jwks
        .find(cp["kid"].as_str().unwrap())
        .expect("kid in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(jws, &key, &validation)
        .expect("the checkpoint verifies")
        .claims;
    assert_eq!(claims["through_seq"], through);
    assert_eq!(claims["head"], cp["head"]);
    // A forged head does not verify.
    let mut forged: Vec<&str> = jws.split('.').collect();
    let bad = {
        use base64::Engine;
        let mut c = claims.clone();
        c["head"] = json!("00".repeat(32));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string())
    };
    forged[1] = &bad;
    assert!(jsonwebtoken::decode::<Value>(&forged.join("."), &key, &validation).is_err());
    // Nothing appended since: the same checkpoint again.
    let again = app.admin_post("/v1/admin/log/checkpoint", json!({})).await;
    assert_eq!(again.body["seq"], cp["seq"]);
    // It is in the chain like any event.
    assert_eq!(verify(&app, None).await["ok"], true);
    // Housekeeping's rule: due after 10,000 events.
    let many: Vec<Event> = (0..10_000)
        .map(|_| Event::LoggedOut {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
        })
        .collect();
    let store = app.recall().store().clone();
    store
        .append_raw(many, &Stamp::now(&Meta::system()))
        .await
        .unwrap();
    let due = due_checkpoint(&app).await;
    let due = due.expect("a checkpoint is due after 10,000 events");
    assert_eq!(due.through_seq, head(&app).await - 1);
    assert!(due_checkpoint(&app).await.is_none());
    // Not for users.
    let (_, s) = app.signup("notadmin").await;
    let res = app.get("/v1/admin/log/verify", Some(&s.access)).await;
    assert_eq!(res.status, 403);
    let res = app.get("/v1/admin/log/verify?from=x", None).await;
    assert_eq!(res.status, 401);
    let res = app.admin_get("/v1/admin/log/verify?from=-1").await;
    assert_eq!(res.status, 400);
    let res = app.admin_get("/v1/admin/log/verify?from=abc").await;
    assert_eq!(res.status, 400);
    app.stop().await;
}

/// Old events go in batches, each recorded by a `log_pruned` event whose
/// anchor the first kept event links to; the chain verifies across the
/// cut, and an edit of the first kept event is still named.
async fn retention_prunes_and_the_chain_still_verifies(kind: Kind) {
    // The old events first (a log's oldest events are its first).
    let b = Backend::new(kind).await;
    let long_ago = Timestamp::now().minus(Duration::from_secs(40 * 86_400));
    let old: Vec<Event> = (0..25)
        .map(|_| Event::LoggedOut {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
        })
        .collect();
    b.store()
        .await
        .append_raw(old, &Stamp::new(&Meta::system(), long_ago))
        .await
        .unwrap();
    let app = b.spawn().await;
    // A log whose first event is over an hour old is due a checkpoint:
    // housekeeping writes it at start, or this does; then no other.
    let _ = due_checkpoint(&app).await;
    assert_eq!(app.admin_get("/v1/admin/log/checkpoint").await.status, 200);
    history(&app).await;
    let before = head(&app).await;
    // Thirty days: the backdated events go, the rest stay.
    let deleted = app
        .recall()
        .sync()
        .prune_log(Duration::from_secs(30 * 86_400))
        .await
        .unwrap();
    assert!(deleted >= 25, "deleted {deleted}");
    let pruned = crate::helpers::events(&app, "type=log_pruned").await;
    let through = pruned[0]["data"]["through_seq"].as_i64().unwrap();
    assert_eq!(pruned[0]["data"]["count"].as_i64().unwrap(), deleted);
    assert_eq!(head(&app).await, before + 1);
    let first_kept = crate::helpers::events(&app, "after=0").await;
    assert_eq!(first_kept[0]["seq"].as_i64().unwrap(), through + 1);
    let v = verify(&app, None).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["verified_through"], before + 1);
    // Nothing more is due.
    let again = app
        .recall()
        .sync()
        .prune_log(Duration::from_secs(30 * 86_400))
        .await;
    assert_eq!(again.unwrap(), 0);
    // The first kept event is still guarded by the anchor.
    let k = through + 1;
    raw_exec(
        &b,
        &format!("UPDATE events SET at = at + 1 WHERE seq = {k}"),
    )
    .await;
    assert_eq!(verify(&app, None).await["first_bad_seq"], k);
    raw_exec(
        &b,
        &format!("UPDATE events SET at = at - 1 WHERE seq = {k}"),
    )
    .await;
    raw_exec(&b, &format!("DELETE FROM events WHERE seq = {k}")).await;
    assert_eq!(
        verify(&app, None).await["first_bad_seq"],
        k,
        "first kept deleted"
    );
    app.stop().await;
}

/// The revocation window is never pruned, whatever the retention says:
/// a logout of a moment ago still rejects its token after a prune.
async fn retention_never_cuts_the_revocation_window(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (_, s) = app.signup("window").await;
    assert_eq!(app.logout(&s.access).await.status, 204);
    let deleted = app
        .recall()
        .sync()
        .prune_log(Duration::from_secs(0))
        .await
        .unwrap();
    assert_eq!(deleted, 0, "events inside the window were pruned");
    assert_eq!(app.me_status(&s.access).await, 401);
    app.stop().await;
}

both_stores!(
    an_edited_event_is_named,
    the_migration_chains_an_old_log,
    checkpoints_verify_with_the_jwks,
    retention_prunes_and_the_chain_still_verifies,
    retention_never_cuts_the_revocation_window,
);

/// `recall admin verify-log` and `checkpoint --export` (the real binary):
/// the same verdicts as the API, exit 1 on a broken chain, and an exported
/// checkpoint that is the one the API then shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_verifies_and_exports() {
    use crate::cli::{run_one, run_raw};
    let (b, app) = start(Kind::Postgres).await;
    history(&app).await;
    let last = head(&app).await;
    let v = run_one(&b, &["verify-log"]).await;
    assert_eq!(v, json!({"ok": true, "verified_through": last}));
    let cp = run_one(&b, &["checkpoint", "--export"]).await;
    assert_eq!(cp["through_seq"], last);
    assert_eq!(cp["head"], stored_hash(&b, last).await);
    let shown = app.admin_get("/v1/admin/log/checkpoint").await;
    assert_eq!(shown.body["jws"], cp["jws"]);
    let k = last - 2;
    raw_exec(
        &b,
        &format!("UPDATE events SET at = at + 1 WHERE seq = {k}"),
    )
    .await;
    let (ok, lines, stderr) = run_raw(&b, &["verify-log"], "").await;
    assert!(!ok, "a broken chain must exit non-zero");
    let printed: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(printed["first_bad_seq"], k, "{stderr}");
    assert!(stderr.contains(&format!("broken at seq {k}")), "{stderr}");
    let (ok, lines, _) = run_raw(&b, &["verify-log", "--from", &(k + 1).to_string()], "").await;
    assert!(ok, "from after the edit: {lines:?}");
    app.stop().await;
}
