//! Signing keys: compromised and scheduled rotation across a fleet,
//! retirement, and private keys encrypted at rest.

use recall::clock::Timestamp;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use reqwest::StatusCode;
use serde_json::json;

use crate::both_stores;
use crate::fixtures::{fleet_with_user, pg_fleet, start, stop_all, trio};
use crate::helpers::*;

both_stores!(
    scheduled_key_is_retired_once_its_tokens_cannot_be_valid,
    private_keys_are_encrypted_at_rest,
);

// ----------------------------------------------------------- key rotation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_compromised_key_rotation() {
    let (_b, fleet) = pg_fleet(3).await;
    let (a, bb, c) = (&fleet[0], &fleet[1], &fleet[2]);
    let all = [a, bb, c];
    let (name, s) = a.signup("kira").await;
    let s2 = c.login(&name).await;
    let old_kid = kid_of(&s.access);
    answers_everywhere(&all, &s.access, 200, "").await;
    assert_eq!(
        key_statuses(a).await,
        vec![(old_kid.clone(), "active".into())]
    );

    let res = a
        .rotate_key(json!({ "compromised": true, "reason": "key leaked in a backup" }))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let new_kid = res.body["kid"].as_str().unwrap().to_owned();
    assert_eq!(res.body["previous_kid"], old_kid.as_str());
    assert_ne!(new_kid, old_kid);
    let seq = res.body["seq"].as_i64().unwrap();
    // Old-key tokens die on every instance (A before it answered).
    assert_eq!(a.me_status(&s.access).await, 401);
    for t in [&s.access, &s2.access] {
        answers_everywhere(&all, t, 401, "invalid_token").await;
    }
    // Sessions survive: refresh (on B and C) gives a new-key token that
    // works on all three.
    for (app, sess) in [(bb, &s), (c, &s2)] {
        let r = app.refresh(&sess.refresh).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let access = r.body["access_token"].as_str().unwrap();
        assert_eq!(kid_of(access), new_kid);
        assert_eq!(r.body["session_id"], sess.session_id.as_str());
        answers_everywhere(&all, access, 200, "").await;
    }
    // New logins sign with the new key too.
    let fresh = bb.login(&name).await;
    assert_eq!(kid_of(&fresh.access), new_kid);
    // JWKS drops the old key everywhere; the key list says why.
    for app in all {
        let want = std::slice::from_ref(&new_kid);
        let took = eventually(FLEET, || async move { jwks_kids(app).await == want }).await;
        assert!(took.is_some(), "jwks: {:?}", jwks_kids(app).await);
    }
    let keys = key_statuses(c).await;
    assert_eq!(status_of(&keys, &old_kid), Some("revoked"));
    assert_eq!(status_of(&keys, &new_kid), Some("active"));
    assert_eq!(keys.len(), 2);
    let logged = events(bb, "type=key_rotated").await;
    let e = logged.iter().find(|e| e["seq"] == seq).unwrap();
    assert_eq!(e["data"]["kid"], new_kid.as_str());
    assert_eq!(e["data"]["previous_kid"], old_kid.as_str());
    assert_eq!(e["data"]["compromised"], true);
    assert_eq!(e["data"]["reason"], "key leaked in a backup");
    assert_eq!(e["actor"], "admin-token");
    let bad = a.rotate_key(json!({})).await;
    assert_error(&bad, 400, "invalid_request");
    stop_all(fleet).await;
}

/// A new-key token issued right after a rotation is accepted by every
/// instance once the rotation notice has reached it (G3): the notice path
/// loads the new key material, not only the next poll of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_accepts_new_key_tokens_as_soon_as_the_rotation_arrives() {
    let b = Backend::new(Kind::Postgres).await;
    let mut fleet = Vec::new();
    for _ in 0..3 {
        let mut s = b.settings();
        // Polling so slow that only the Redis notice can carry the rotation.
        s.poll_interval_ms = 60_000;
        s.max_staleness_ms = 120_000;
        fleet.push(b.spawn_with(s, Some(crate::helpers::redis_url())).await);
    }
    let (a, bb, c) = (&fleet[0], &fleet[1], &fleet[2]);
    let name = username("quinn");
    a.register(&name).await;
    let mut refresh = a.login(&name).await.refresh;
    let reads = |app: &TestApp| app.recall().metrics().catchup_reads.get();
    let reads_before = [reads(bb), reads(c)];
    for compromised in [false, true] {
        let res = a.rotate_key(json!({ "compromised": compromised })).await;
        assert_eq!(res.status, 200, "{}", res.body);
        let new_kid = res.body["kid"].as_str().unwrap().to_owned();
        // A client refreshes on A at once and goes to B and C with the token.
        let r = a.refresh(&refresh).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let access = r.body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(kid_of(&access), new_kid);
        refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
        for app in [bb, c] {
            let (token, kid) = (access.as_str(), new_kid.as_str());
            let took = eventually(Duration::from_secs(1), || async move {
                app.me_status(token).await == StatusCode::OK
                    && jwks_kids(app).await.iter().any(|k| k == kid)
            })
            .await;
            let last = app.get("/v1/me", Some(token)).await;
            assert!(
                took.is_some(),
                "compromised={compromised}: new-key token refused: {}",
                last.body
            );
        }
    }
    // No log read carried it (no gap, no poll): the notices did.
    assert_eq!([reads(bb), reads(c)], reads_before);
    stop_all(fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_scheduled_key_rotation() {
    let (_b, fleet, name, _) = fleet_with_user("sched").await;
    let all = trio(&fleet);
    let [a, bb, c] = all;
    let s = bb.login(&name).await;
    let old_kid = kid_of(&s.access);
    answers_everywhere(&all, &s.access, 200, "").await;

    let res = a.rotate_key(json!({ "compromised": false })).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let new_kid = res.body["kid"].as_str().unwrap().to_owned();
    assert_eq!(res.body["previous_kid"], old_kid.as_str());
    let seq = res.body["seq"].as_i64().unwrap();
    // Every instance learns the rotation: JWKS lists both keys.
    let mut want = vec![old_kid.clone(), new_kid.clone()];
    want.sort();
    for app in all {
        let want = &want;
        let took = eventually(FLEET, || async move {
            let mut kids = jwks_kids(app).await;
            kids.sort();
            kids == *want
        })
        .await;
        assert!(took.is_some(), "jwks: {:?}", jwks_kids(app).await);
    }
    // Old tokens keep working everywhere.
    for app in all {
        assert_eq!(app.me_status(&s.access).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for app in all {
        assert_eq!(app.me_status(&s.access).await, 200);
    }
    let keys = key_statuses(c).await;
    assert_eq!(status_of(&keys, &old_kid), Some("verifying"));
    assert_eq!(status_of(&keys, &new_kid), Some("active"));
    // New tokens use the new key and work everywhere.
    let fresh = c.login(&name).await;
    assert_eq!(kid_of(&fresh.access), new_kid);
    answers_everywhere(&all, &fresh.access, 200, "").await;
    let r = a.refresh(&s.refresh).await;
    assert_eq!(r.status, 200);
    assert_eq!(kid_of(r.body["access_token"].as_str().unwrap()), new_kid);
    let logged = events(a, "type=key_rotated").await;
    let e = logged.iter().find(|e| e["seq"] == seq).unwrap();
    assert_eq!(e["data"]["compromised"], false);
    let retire = e["data"]["previous_retire_after"].as_i64().unwrap();
    // Retired only after the old key's last token can have expired.
    let rotated = at_ms(e);
    assert!(
        retire >= rotated + 300_000,
        "retire_after {retire} too early"
    );
    stop_all(fleet).await;
}

async fn scheduled_key_is_retired_once_its_tokens_cannot_be_valid(kind: Kind) {
    let b = Backend::new(kind).await;
    let mut settings = b.settings();
    settings.access_ttl_secs = 1;
    settings.poll_interval_ms = 200;
    let retention_ms = settings.retention_ms();
    let app = b.spawn_with(settings, None).await;
    let (name, s) = app.signup("rita").await;
    let old_kid = kid_of(&s.access);
    // Taken before the request: the rotation's own time lies inside it.
    let rotated_at = Timestamp::now().ms();
    let res = app.rotate_key(json!({ "compromised": false })).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let new_kid = res.body["kid"].as_str().unwrap().to_owned();
    assert_eq!(
        status_of(&key_statuses(&app).await, &old_kid),
        Some("verifying")
    );
    let app = &app;
    let old = old_kid.as_str();
    let took = eventually(
        Duration::from_millis(retention_ms as u64 + 8000),
        || async move { status_of(&key_statuses(app).await, old) == Some("retired") },
    )
    .await;
    assert!(took.is_some(), "{:?}", key_statuses(app).await);
    let retired: Vec<_> = events(app, "type=key_retired")
        .await
        .into_iter()
        .filter(|e| e["data"]["kid"] == old)
        .collect();
    assert_eq!(retired.len(), 1, "exactly one key_retired: {retired:?}");
    let rotation = events(app, "type=key_rotated")
        .await
        .into_iter()
        .find(|e| e["data"]["kid"] == new_kid.as_str())
        .unwrap();
    // Not before every token of the old key had expired.
    assert!(
        at_ms(&retired[0]) - at_ms(&rotation) >= retention_ms,
        "retired after {} ms, retention {retention_ms} ms",
        at_ms(&retired[0]) - at_ms(&rotation)
    );
    assert!(Timestamp::now().ms() - rotated_at >= retention_ms);
    assert_eq!(jwks_kids(app).await, vec![new_kid.clone()]);
    let keys = key_statuses(app).await;
    assert_eq!(status_of(&keys, &new_kid), Some("active"));
    // The new key still signs and verifies.
    let fresh = app.login(&name).await;
    assert_eq!(kid_of(&fresh.access), new_kid);
    assert_eq!(app.me_status(&fresh.access).await, 200);
}

// ------------------------------------------------------------ keys at rest

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every stored form of `secret` we look for.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    vec![
        secret.to_vec(),
        hex(secret).into_bytes(),
        hex(secret).to_uppercase().into_bytes(),
        STANDARD.encode(secret).into_bytes(),
        STANDARD_NO_PAD.encode(secret).into_bytes(),
        URL_SAFE.encode(secret).into_bytes(),
        URL_SAFE_NO_PAD.encode(secret).into_bytes(),
    ]
}

/// Every row of signing_keys and events, each column as bytes.
async fn stored_rows(b: &Backend) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<Vec<u8>>>) {
    match &b.db {
        Some(db) => {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let keys = client
                .query(
                    "SELECT kid, alg, public_key, private_key_enc, status, created_at::text, \
                     retire_after::text, row_to_json(k)::text FROM signing_keys k",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            if i == 2 || i == 3 {
                                r.get::<_, Vec<u8>>(i)
                            } else {
                                r.get::<_, Option<String>>(i)
                                    .unwrap_or_default()
                                    .into_bytes()
                            }
                        })
                        .collect()
                })
                .collect();
            let events = client
                .query("SELECT data, row_to_json(e)::text FROM events e", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    vec![
                        r.get::<_, String>(0).into_bytes(),
                        r.get::<_, String>(1).into_bytes(),
                    ]
                })
                .collect();
            (keys, events)
        }
        None => {
            let conn = rusqlite::Connection::open_with_flags(
                b.dir.0.join("recall.db"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let rows = |sql: &str| -> Vec<Vec<Vec<u8>>> {
                let mut stmt = conn.prepare(sql).unwrap();
                let n = stmt.column_count();
                stmt.query_map([], |r| {
                    Ok((0..n)
                        .map(|i| match r.get::<_, rusqlite::types::Value>(i).unwrap() {
                            rusqlite::types::Value::Blob(b) => b,
                            rusqlite::types::Value::Text(t) => t.into_bytes(),
                            rusqlite::types::Value::Integer(n) => n.to_string().into_bytes(),
                            rusqlite::types::Value::Real(f) => f.to_string().into_bytes(),
                            rusqlite::types::Value::Null => Vec::new(),
                        })
                        .collect())
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            };
            (
                rows("SELECT * FROM signing_keys"),
                rows("SELECT * FROM events"),
            )
        }
    }
}

async fn private_keys_are_encrypted_at_rest(kind: Kind) {
    let (b, app) = start(kind).await;
    let (_name, s) = app.signup("rest").await;
    // Three keys: one revoked, one verifying, one active.
    for compromised in [true, false] {
        let res = app.rotate_key(json!({ "compromised": compromised })).await;
        assert_eq!(res.status, 200, "{}", res.body);
    }
    let r = app.refresh(&s.refresh).await;
    assert_eq!(r.status, 200);
    let store = b.store().await;
    let records = store.keys().await.unwrap();
    assert_eq!(records.len(), 3);
    let mut secrets = Vec::new();
    for k in &records {
        let der = b.master.open(&k.kid, &k.private_key_enc).unwrap();
        // PKCS#8 (v2 from ed25519-dalek: the public key comes last, so
        // decode it rather than take the last 32 bytes).
        let signing = ed25519_dalek::SigningKey::from_pkcs8_der(&der).unwrap();
        let seed = signing.to_bytes();
        assert!(contains(&der, &seed));
        // The seed really is the private key of this row's public key.
        assert_eq!(signing.verifying_key().to_bytes().to_vec(), k.public_key);
        // Sealed under the master key: another master key cannot open it.
        assert!(recall::keys::MasterKey::generate()
            .open(&k.kid, &k.private_key_enc)
            .is_err());
        secrets.push((k.kid.clone(), seed.to_vec(), der));
    }
    let (key_rows, event_rows) = stored_rows(&b).await;
    assert_eq!(key_rows.len(), 3);
    assert!(event_rows.len() >= 5);
    for (kid, seed, der) in &secrets {
        for form in forms(seed).iter().chain(forms(der).iter()) {
            for (what, rows) in [("signing_keys", &key_rows), ("events", &event_rows)] {
                for row in rows.iter() {
                    for col in row {
                        assert!(
                            !contains(col, form),
                            "{what} holds the private key of {kid} ({})",
                            String::from_utf8_lossy(form)
                        );
                    }
                }
            }
        }
    }
    app.stop().await;
}
