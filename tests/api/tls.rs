//! TLS to PostgreSQL and Redis (G9): a fleet over `sslmode=verify-full` and
//! `rediss://` with a CA made by the test script, and a wrong CA refused
//! with an error that names the setting.

use recall::bus::notice::NoticeAuth;
use recall::bus::{redis::RedisBus, Bus};
use recall::clock::Timestamp;
use recall::events::{Envelope, Event};
use recall::keys::MasterKey;
use uuid::Uuid;

use crate::fixtures::stop_all;
use crate::helpers::{all_reject, username, Backend, Kind, TestDb};

/// The G3 bound a real notice is held to (loopback, no polling).
const G3: std::time::Duration = std::time::Duration::from_millis(100);

fn notice(seq: i64) -> Envelope {
    Envelope {
        seq,
        stream: "tls-test".into(),
        version: 1,
        at: Timestamp::now(),
        actor: Some("system".into()),
        ip: None,
        event: Event::UserUnlocked {
            user_id: Uuid::now_v7(),
        },
    }
}

fn tls_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: scripts/test.sh starts the TLS servers (scripts/tls-services.sh)"
        )
    })
}

/// A database of its own on the TLS PostgreSQL server, dropped afterwards.
async fn tls_db() -> TestDb {
    let base = tls_env("RECALL_TEST_TLS_DATABASE_URL");
    let name = format!("recall_tls_{}", Uuid::new_v4().simple());
    // Create it over the server's plaintext loopback door.
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("the TLS PostgreSQL server must answer");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let root = base.rsplit_once('/').map_or(base.as_str(), |(r, _)| r);
    TestDb::adopt(name.clone(), format!("{root}/{name}"), base)
}

/// PostgreSQL with `sslmode=verify-full` and Redis over `rediss://`, both
/// with a CA made by the test script: a two-instance fleet works end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_redis_over_tls_end_to_end() {
    let db = tls_db().await;
    let ca = std::path::PathBuf::from(tls_env("RECALL_TEST_TLS_CA_FILE"));
    let redis = tls_env("RECALL_TEST_TLS_REDIS_URL");
    let b = Backend::new(Kind::Sqlite).await;
    let apps = b
        .spawn_subscribed_fleet(2, |s| {
            s.database_url = Some(format!("{}?sslmode=verify-full", db.url));
            s.database_ca_file = Some(ca.clone());
            s.redis_url = Some(redis.clone());
            s.redis_ca_file = Some(ca.clone());
            s.poll_interval_ms = 600_000;
            s.max_staleness_ms = 1_200_000;
        })
        .await;
    let name = username("tls");
    apps[0].register(&name).await;
    let s = apps[0].login(&name).await;
    assert_eq!(apps[1].me_status(&s.access).await, 200);
    assert_eq!(apps[0].logout(&s.access).await.status, 204);
    assert!(
        all_reject(&[&apps[1]], &s.access, G3).await.is_some(),
        "the logout did not cross TLS Redis within {G3:?}"
    );
    // Both really use TLS: the server lists SSL connections for the database.
    let (client, conn) = tokio_postgres::connect(&db.admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = $1",
            &[&db.name],
        )
        .await
        .unwrap();
    let (tls, plain): (i64, i64) = (row.get(0), row.get(1));
    assert!(tls >= 1, "no TLS connection to the database");
    assert_eq!(plain, 0, "a plaintext connection to the database");
    assert_eq!(apps[1].get("/readyz", None).await.status, 200);
    stop_all(apps).await;
}

/// A server certificate from a CA that is not trusted is refused, with an
/// error that names the setting to fix; `require` checks the chain too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_refused_naming_the_setting() {
    let db = tls_db().await;
    let wrong = std::path::PathBuf::from(tls_env("RECALL_TEST_TLS_WRONG_CA_FILE"));
    for mode in ["verify-full", "verify-ca", "require"] {
        let store = recall::store::Store::open_tls(
            Some(&format!("{}?sslmode={mode}", db.url)),
            std::path::Path::new("/nonexistent"),
            Some(&wrong),
            &recall::keys::MasterKey::generate(),
        )
        .unwrap();
        let err = store
            .migrate()
            .await
            .expect_err("an untrusted server was accepted");
        let text = err.to_string();
        assert!(
            text.contains("RECALL_DATABASE_CA_FILE"),
            "sslmode={mode}: the error does not name the setting: {text}"
        );
    }
    // Redis: a rediss:// server whose certificate the CA file did not sign.
    let auth = NoticeAuth::new(&MasterKey::generate(), "recall:tls-wrong-ca");
    let bus = RedisBus::new(
        &tls_env("RECALL_TEST_TLS_REDIS_URL"),
        "recall:tls-wrong-ca",
        auth,
        Some(&wrong),
    )
    .unwrap();
    let env = notice(1);
    let err = bus
        .publish(&env)
        .await
        .expect_err("an untrusted Redis was accepted");
    assert!(
        err.to_string().contains("RECALL_REDIS_CA_FILE"),
        "the error does not name the setting: {err}"
    );
    // The right CA through the same path works.
    let ca = std::path::PathBuf::from(tls_env("RECALL_TEST_TLS_CA_FILE"));
    let bus = RedisBus::new(
        &tls_env("RECALL_TEST_TLS_REDIS_URL"),
        "recall:tls-right-ca",
        NoticeAuth::new(&MasterKey::generate(), "recall:tls-right-ca"),
        Some(&ca),
    )
    .unwrap();
    bus.publish(&env).await.expect("the right CA was refused");
}
