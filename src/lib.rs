//! Recall: JWT auth with real logout. Access tokens are verified locally
//! from an in-memory revocation state folded from an event log and kept
//! current across a fleet by Redis notices and log catch-up.

pub mod bus;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod files;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod passwords;
pub mod random;
pub mod server;
pub mod service;
pub mod sidecar;
pub mod ssf;
pub mod startup;
pub mod state;
pub mod store;
pub mod sync;
pub mod tls;
pub mod tokens;
