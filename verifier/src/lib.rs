//! # recall-verifier
//!
//! Verify [Recall](https://github.com/) access tokens inside your own API,
//! and reject revoked ones as fast as Recall's own instances do. It holds
//! only public keys (from Recall's JWKS) and a revocation state folded from
//! Recall's revocation feed, with the same code Recall folds its log with:
//! no database, no Redis, no master key.
//!
//! - [`state`]: the pure fold (`RevocationState`) and the feed's items.
//! - [`token`]: claims, public keys by kid, signature and claim checks.
//! - [`binding`], [`dpop`]: bound tokens' checks (network digests, RFC
//!   9449 proofs); [`request`]: what a request presents with its token.
//! - [`client`] (feature `client`, on by default): the runtime that
//!   follows the feed over SSE and answers `authenticate` from memory,
//!   failing closed when it has not heard Recall within its bound.
//! - [`actix`] (feature `actix`): an actix-web extractor.
//! - [`tower`] (feature `tower`): a tower layer for axum and friends.

pub mod binding;
pub mod dpop;
pub mod state;
pub mod token;

#[cfg(feature = "client")]
pub mod client;
pub mod error;
pub mod request;
pub mod sse;

#[cfg(feature = "actix")]
pub mod actix;

#[cfg(feature = "tower")]
pub mod tower;

#[cfg(feature = "client")]
pub use client::{Config, Verifier};
pub use error::{DpopRefusal, Principal, VerifyError};
pub use request::{DpopHeader, Presented};
pub use state::{KeyStatus, Kind, Rejection, Revocation, RevocationState};
pub use token::{Claims, Keyring, TokenError};
