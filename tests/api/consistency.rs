//! The read models agree with the log, row for row: what a write changed
//! outside the log (users, sessions, refresh tokens, keys) has the event
//! that says so, and the log's seq runs unbroken. Read with the databases'
//! own drivers, not through the store under test.

use crate::helpers::Backend;

/// A connection to the backend's PostgreSQL database with its own driver.
async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

/// Runs statements on the backend's database with its own driver (what
/// no store call does, such as pruning the log by hand).
pub async fn exec(b: &Backend, sql: &str) {
    match &b.db {
        Some(db) => pg(&db.url).await.batch_execute(sql).await.expect(sql),
        None => {
            let conn = rusqlite::Connection::open(b.settings().sqlite_path()).expect("open");
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .expect("busy timeout");
            conn.execute_batch(sql).expect(sql);
        }
    }
}

/// Integer columns of a query's rows, read with the databases' own
/// drivers (not through the store under test).
async fn ints(b: &Backend, sql: &str) -> Vec<Vec<i64>> {
    match &b.db {
        Some(db) => {
            let rows = pg(&db.url).await.query(sql, &[]).await.expect(sql);
            rows.iter()
                .map(|r| (0..r.len()).map(|i| r.get::<_, i64>(i)).collect())
                .collect()
        }
        None => {
            let conn = rusqlite::Connection::open(b.settings().sqlite_path()).expect("open");
            let mut stmt = conn.prepare(sql).expect(sql);
            let width = stmt.column_count();
            let rows = stmt
                .query_map([], |r| (0..width).map(|i| r.get::<_, i64>(i)).collect())
                .expect(sql);
            rows.map(|r| r.expect(sql)).collect()
        }
    }
}

/// The read models agree with the log: nothing is half applied.
pub async fn read_models_match_the_log(b: &Backend) {
    // The log: seq 1..head, nothing skipped, the counter at the head.
    let seqs = ints(
        b,
        "SELECT count(*), coalesce(min(seq), 0), coalesce(max(seq), 0), \
         (SELECT last FROM recall_seq WHERE id = 1) FROM events",
    )
    .await;
    let r = &seqs[0];
    assert_eq!(r[1], 1, "first seq: {r:?}");
    assert_eq!(r[0], r[2], "seq has gaps: {r:?}");
    assert_eq!(r[2], r[3], "the counter is not at the head: {r:?}");
    let checks: [(&str, &str); 6] = [
        (
            "users without their registration event",
            "SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM events e \
             WHERE e.type = 'user_registered' AND e.user_id = u.id)",
        ),
        (
            "sessions without their login event",
            "SELECT count(*) FROM sessions s WHERE NOT EXISTS (SELECT 1 FROM events e \
             WHERE e.type = 'login_succeeded' AND e.session_id = s.id)",
        ),
        (
            "revoked sessions without an event that ends them",
            "SELECT count(*) FROM sessions s WHERE s.revoked_at IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM events e WHERE e.type IN ('logged_out', 'session_revoked', \
             'user_sessions_revoked', 'user_locked', 'password_changed', \
             'refresh_token_reused') AND e.data LIKE '%' || s.id || '%')",
        ),
        (
            "live sessions whose refresh tokens disagree with their refresh events \
             (one unspent token, one spent per rotation)",
            "SELECT count(*) FROM sessions s WHERE s.revoked_at IS NULL AND (\
             (SELECT count(*) FROM refresh_tokens r WHERE r.session_id = s.id \
              AND r.spent_at IS NULL) <> 1 OR \
             (SELECT count(*) FROM refresh_tokens r WHERE r.session_id = s.id \
              AND r.spent_at IS NOT NULL) <> \
             (SELECT count(*) FROM events e WHERE e.type = 'session_refreshed' \
              AND e.session_id = s.id))",
        ),
        (
            "events of a session that has no row",
            "SELECT count(*) FROM events e WHERE e.type IN ('login_succeeded', \
             'session_refreshed') AND NOT EXISTS (SELECT 1 FROM sessions s \
             WHERE s.id = e.session_id)",
        ),
        (
            "signing keys without the rotation that made them",
            "SELECT count(*) FROM signing_keys k WHERE NOT EXISTS (SELECT 1 FROM events e \
             WHERE e.type = 'key_rotated' AND e.data LIKE '%' || k.kid || '%')",
        ),
    ];
    for (what, sql) in checks {
        assert_eq!(ints(b, sql).await[0][0], 0, "{what}");
    }
}
