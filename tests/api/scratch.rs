//! What each test gets of its own and leaves nothing of: a PostgreSQL
//! database (created and dropped) and a scratch directory.

use std::path::PathBuf;

use uuid::Uuid;

/// The server that tests create databases on.
pub fn pg_admin_url() -> String {
    std::env::var("RECALL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database, dropped when this is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    /// The server's maintenance database, where it is created and dropped.
    pub admin_url: String,
}

async fn pg_exec(admin_url: &str, sql: String) {
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL must answer at RECALL_TEST_DATABASE_URL (scripts/test.sh starts it)");
    tokio::spawn(conn);
    client.batch_execute(&sql).await.expect(&sql);
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("recall_test_{}", Uuid::new_v4().simple());
        let base = pg_admin_url();
        pg_exec(&base, format!("CREATE DATABASE {name}")).await;
        let root = base.rsplit_once('/').map_or(base.as_str(), |(r, _)| r);
        TestDb {
            url: format!("{root}/{name}"),
            name,
            admin_url: base,
        }
    }

    /// Takes charge of a database created elsewhere (dropped when this is).
    pub fn adopt(name: String, url: String, admin_url: String) -> Self {
        TestDb {
            name,
            url,
            admin_url,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        // Drop runs inside a runtime; a thread with its own runtime can block.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(pg_exec(
                    &admin_url,
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ));
            }
        })
        .join();
    }
}

/// A scratch directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!("recall-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
