//! The clap arguments that `bench_guards` and `soak` share, written once:
//! the PostgreSQL and Redis servers an example runs against (each flag
//! with its `RECALL_TEST_*` variable and loopback default). Each example
//! flattens them into its own arguments (`#[command(flatten)]`). Imports
//! only clap.

// The PostgreSQL and Redis servers. (No doc comment: clap would show it as
// the about text of every example that flattens this.)
#[derive(clap::Args, Debug)]
pub struct Servers {
    /// PostgreSQL server to create the scratch database on.
    #[arg(
        long,
        env = "RECALL_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub pg: String,
    /// Redis server (loopback).
    #[arg(
        long,
        env = "RECALL_TEST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis: String,
}
