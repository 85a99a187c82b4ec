//! One integration test binary (one link), a module per feature.

mod abuse;
mod admin;
mod cli;
mod fleet;
mod helpers;
mod http_errors;
mod sessions;
mod startup;
mod store_contract;
mod tokens;
mod trust;

/// Runs an `async fn(Kind)` test once per store.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Kind::Postgres).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Kind::Sqlite).await;
                }
            }
        )*
    };
}
