//! One integration test binary (one link), a module per feature.

mod abuse;
mod admin_auth;
mod admin_fleet;
mod audit;
mod bound;
mod bound_dpop;
mod bound_reach;
mod brute_force;
mod cli;
mod consistency;
mod crash;
mod data_dir;
mod erasure;
mod evidence;
mod fastcgi;
mod feed;
mod fixtures;
mod fleet;
mod fleet_config;
mod forensics;
mod forensics_replay;
mod group_commit;
mod helpers;
mod http_errors;
mod keys;
mod limits;
mod nginx;
mod resets;
mod scratch;
mod sentinel;
mod sessions;
mod ssf;
mod ssf_push;
mod startup;
mod store_concurrency;
mod store_contract;
mod tls;
mod tokens;
mod trust;
mod vanished;
mod verifier_crate;
mod verifiers;
mod web;
mod window;

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
