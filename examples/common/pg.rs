//! One batch of SQL on a PostgreSQL URL, on a connection of its own: how
//! the examples create and drop their scratch databases. Imports only
//! tokio-postgres.

/// Runs `sql` (one or more statements) on `url`, then closes the connection.
pub async fn pg_exec(url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    client.batch_execute(sql).await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}
