//! The Recall core: starts the store, keys, state, bus and sync, and runs
//! every user-facing operation along the write path of DESIGN.md:
//! check -> commit event(s) -> apply locally (G2) -> publish -> answer.
//!
//! May import: sync, store, bus, error, config and everything below them;
//! never http, startup, server or cli. The layers: docs/DESIGN.md, "Parts".

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::bus::Bus;
use crate::clock::Timestamp;
use crate::config::Settings;
use crate::domain::SessionEnd;
use crate::error::{Error, Missing, Unavailable};
use crate::events::{Envelope, Meta, RevokeCause, Stamp};
use crate::metrics::{inc, Metrics};
use crate::passwords::Hasher;
use crate::store::{SessionRecord, Store, StoreError};
use crate::sync::StateSync;
use crate::tokens::{b64url, Claims};

/// A service over the shared `Core`: the struct, and its `Deref` to the
/// core for what every service shares.
macro_rules! core_service {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name {
            pub(super) core: std::sync::Arc<super::Core>,
        }

        impl std::ops::Deref for $name {
            type Target = super::Core;

            fn deref(&self) -> &super::Core {
                &self.core
            }
        }
    };
}

pub mod admin;
mod auth;
mod bound;
pub mod dpop;
pub mod erase;
mod evidence;
pub mod feed;
pub mod fleet;
pub mod forensics;
mod guess;
mod inputs;
mod outbox;
mod policies;
pub mod push;
mod queries;
pub mod signals;
mod verifier;

pub use admin::Admin;
pub use auth::Auth;
pub use bound::Presented;
pub use dpop::DpopInput;
pub use feed::{Feed, FeedCaller, FeedPage};
pub use guess::guess_rules;
pub use inputs::{
    ClientType, DeviceId, LoginInput, Password, Principal, Reason, RefreshInput, TokenResponse,
    UserAgent, Username,
};
use outbox::Outbox;
pub use policies::PolicyView;
pub use queries::{AdminIdentity, Readiness, SessionView};
pub use signals::Signals;
pub use verifier::Verifier;

/// The running core, wired once: the user-facing service (`auth`), the
/// emergency controls (`admin`) and the read-only `verifier` share one
/// `Core`. Operations that belong to neither (readiness, metrics, keys,
/// rate limits) are the core's own, reached through `Deref`.
pub struct Recall {
    core: Arc<Core>,
    auth: Auth,
    admin: Admin,
    feed: Feed,
    signals: Signals,
}

impl std::ops::Deref for Recall {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

/// What the services share: settings, store, state sync, password hasher,
/// metrics, bus and publisher, rate limiter. Its fields are private to
/// `service`; HTTP and the CLI see only methods.
pub struct Core {
    settings: Settings,
    store: Store,
    sync: Arc<StateSync>,
    hasher: Hasher,
    metrics: Arc<Metrics>,
    bus: Arc<dyn Bus>,
    verifier: Verifier,
    outbox: Arc<Outbox>,
    /// Per client address: login, registration, refresh, `/oauth/*` (G10).
    limiter: Arc<governor::DefaultKeyedRateLimiter<IpAddr>>,
    /// user id -> username (immutable), for `GET /v1/me`; bounded.
    usernames: quick_cache::sync::Cache<Uuid, String>,
    /// The network-binding key and its base64url form (for the feed).
    binding: (recall_verifier::binding::BindingKey, String),
    /// DPoP replay memory and server nonces.
    dpop: dpop::DpopGuard,
}

/// Usernames remembered for `GET /v1/me` (a few MiB at most).
const USERNAMES_CACHED: usize = 65_536;

/// A setting in whole seconds as a span (negative counts as zero; the
/// settings checks refuse those anyway).
fn secs(n: i64) -> std::time::Duration {
    std::time::Duration::from_secs(n.max(0).unsigned_abs())
}

/// SHA-256 of a refresh token: the only form we store.
pub fn refresh_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn new_refresh_token() -> String {
    let bytes: [u8; 32] = crate::random::bytes();
    b64url(&bytes)
}

impl Recall {
    /// Assembles the services over a started store, state sync, metrics
    /// and bus (`startup` starts those and the tasks around them).
    pub fn new(
        settings: Settings,
        store: Store,
        sync: Arc<StateSync>,
        metrics: Arc<Metrics>,
        bus: Arc<dyn Bus>,
    ) -> Arc<Recall> {
        let per_min = NonZeroU32::new(settings.rate_limit_per_min).unwrap_or(NonZeroU32::MIN);
        let binding_bytes = settings.master_key.derive(policies::BINDING_KEY_SALT, b"");
        let core = Arc::new(Core {
            verifier: Verifier {
                sync: sync.clone(),
                metrics: metrics.clone(),
            },
            hasher: Hasher::new(settings.hash_workers, settings.hash_queue),
            outbox: Arc::new(Outbox::new(settings.publish_queue)),
            limiter: Arc::new(governor::RateLimiter::keyed(governor::Quota::per_minute(
                per_min,
            ))),
            usernames: quick_cache::sync::Cache::new(USERNAMES_CACHED),
            binding: (
                recall_verifier::binding::BindingKey::new(&binding_bytes),
                b64url(&binding_bytes),
            ),
            dpop: dpop::DpopGuard::new(&settings.master_key, settings.dpop_nonce),
            settings,
            store,
            sync,
            metrics,
            bus,
        });
        Arc::new(Recall {
            auth: Auth { core: core.clone() },
            admin: Admin { core: core.clone() },
            feed: Feed { core: core.clone() },
            signals: Signals { core: core.clone() },
            core,
        })
    }

    /// Registration, login, refresh, logout, password, a user's sessions.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The emergency controls and the audit log.
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// Shared Signals streams (SSF 1.0).
    pub fn signals(&self) -> &Signals {
        &self.signals
    }

    /// The revocation feed and the service credentials that read it.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }
}

impl Core {
    /// Publishes the notices of committed events, in commit order, for as
    /// long as the process runs (`startup` spawns it).
    pub async fn publish_notices(&self) {
        loop {
            let env = self.outbox.next().await;
            if let Err(e) = self.bus.publish(&env).await {
                inc(&self.metrics.publish_failures);
                tracing::warn!(seq = env.seq, error = %e, "notice not published; others catch up from the log");
            }
            self.outbox.unpublished.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Forgets, every minute, addresses whose rate budget is full again,
    /// so memory follows the addresses of the last minute, not every
    /// address ever seen (`startup` spawns it).
    pub async fn sweep_rate_limits(&self) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }

    /// The settings this core runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The event store, for tools, benchmarks and tests (HTTP and the CLI
    /// go through the service methods).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The state and its sync machinery, for tools, benchmarks and tests.
    pub fn sync(&self) -> &Arc<StateSync> {
        &self.sync
    }

    /// Every issuer whose tokens verify here, the current one first: the
    /// configured one, the fleet's previous ones and any it changed to
    /// since this instance started.
    pub fn accepted_issuers(&self) -> Vec<String> {
        self.sync.keyring().accepted_issuers()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// After a write that may have changed nothing (ending what had ended
    /// already): its event, if any, as `committed`; the store's `NotFound`
    /// as `missing`.
    async fn committed_if_any(
        &self,
        written: Result<Option<Envelope>, StoreError>,
        missing: Missing,
    ) -> Result<(), Error> {
        match written {
            Ok(event) => {
                if let Some(env) = event {
                    self.committed(&[env]).await;
                }
                Ok(())
            }
            Err(StoreError::NotFound) => Err(Error::NotFound(missing)),
            Err(e) => Err(e.into()),
        }
    }

    /// After a commit: apply here before answering (G2), then tell the fleet.
    pub async fn committed(&self, envs: &[Envelope]) {
        if !self.sync.apply_local(envs) {
            // We were behind the log; fill in what came before, in order.
            let sync = self.sync.clone();
            tokio::spawn(async move {
                let _ = sync.catch_up().await;
            });
        }
        for env in envs {
            self.outbox.push(env.clone(), &self.metrics);
        }
    }

    /// Counts one request of a rate-limited kind from `ip` (G10); past
    /// `RECALL_RATE_LIMIT_PER_MIN` the answer is 429 with `Retry-After`.
    pub fn rate_limit(&self, ip: Option<IpAddr>) -> Result<(), Error> {
        let Some(ip) = ip else {
            return Ok(());
        };
        match self.limiter.check_key(&ip) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                inc(&self.metrics.rate_limited);
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                Err(Error::RateLimited {
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
        }
    }

    /// Waits (up to `limit`) until every notice handed to the publisher is sent.
    pub async fn flush(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.outbox.unpublished.load(Ordering::Acquire) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Resolves a bearer token with no I/O: staleness, signature, claims, state.
    pub fn authenticate(&self, token: &str) -> Result<Principal, Error> {
        self.verifier.authenticate(token)
    }

    /// The read-only verification handle (what an embedding API needs).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// An access token of session `s`, for its lifetime, bound as its
    /// terms say (network) and to the DPoP key `jkt` when there is one.
    async fn access_token(&self, s: &SessionRecord, jkt: Option<String>) -> Result<String, Error> {
        let active = || self.sync.state().active_kid().map(str::to_owned);
        let mut kid = active().ok_or(Error::Unavailable(Unavailable::NoSigningKey))?;
        if !self.sync.keyring().can_sign(&kid) {
            self.sync.reload_keys().await?;
        }
        if !self.sync.keyring().can_sign(&kid) {
            // Rotated again meanwhile: the key the state names is already
            // revoked in the store, so its private half is not loaded.
            // Catch up with the log, which names the key active now.
            self.sync.catch_up().await?;
            kid = active().ok_or(Error::Unavailable(Unavailable::NoSigningKey))?;
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: s.user_id,
            sid: s.id,
            jti: Uuid::now_v7(),
            iat: now,
            nbf: now,
            exp: now + self.access_ttl(s),
            ctype: s.client_type.clone(),
            cnf: jkt.map(|jkt| crate::tokens::Confirmation { jkt }),
            net: s.terms.net.clone(),
        };
        self.sync
            .keyring()
            .issue(&kid, &claims)
            .map_err(|e| match e {
                // Still racing rotations: a retry will find the new key.
                crate::tokens::TokenError::UnknownKid => {
                    Error::Unavailable(Unavailable::NoSigningKey)
                }
                e => Error::Internal(format!("signing failed: {e}")),
            })
    }

    /// Access-token lifetime of a session: its policy's, or the setting.
    fn access_ttl(&self, s: &SessionRecord) -> i64 {
        s.terms
            .access_ttl_secs
            .unwrap_or(self.settings.access_ttl_secs)
            .min(self.settings.access_ttl_secs)
    }

    async fn token_response(
        &self,
        s: &SessionRecord,
        refresh_token: String,
        jkt: Option<String>,
    ) -> Result<TokenResponse, Error> {
        let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
        let access_token = self.access_token(s, jkt).await?;
        Ok(TokenResponse {
            access_token,
            token_type,
            expires_in: self.access_ttl(s),
            refresh_token,
            refresh_expires_in: s.refresh_expires_at.since(Timestamp::now()).as_secs() as i64,
            session_id: s.id,
        })
    }

    /// Creates a user. `roles` is empty or `["admin"]`.
    async fn register(
        &self,
        username: &str,
        password: String,
        roles: &[String],
        meta: &Meta,
    ) -> Result<(Uuid, String), Error> {
        let username = Username::parse(username)?;
        let password = Password::parse(password, "password")?;
        let hash = self.hasher.hash(password.0).await?;
        let user_id = Uuid::now_v7();
        let result = self
            .store
            .register(user_id, username.as_str(), &hash, roles, &Stamp::now(meta))
            .await;
        match result {
            Ok(env) => {
                self.committed(&[env]).await;
                Ok((user_id, username.0))
            }
            Err(StoreError::Conflict(_)) => Err(Error::UsernameTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Ends one session: the owner's, or any when `owner` is None (admin).
    async fn end_session(
        &self,
        session_id: Uuid,
        owner: Option<Uuid>,
        how: SessionEnd,
        meta: &Meta,
    ) -> Result<(), Error> {
        let ended = self
            .store
            .revoke_session(
                session_id,
                Box::new(move |found| {
                    crate::domain::end_session(
                        session_id,
                        found.map(|s| s.user_id),
                        found.is_some_and(|s| s.revoked_at.is_some()),
                        owner,
                        how,
                    )
                }),
                &Stamp::now(meta),
            )
            .await;
        self.committed_if_any(ended, Missing::Session).await
    }

    /// Ends every session of a user; returns the event.
    async fn end_all_sessions(
        &self,
        user_id: Uuid,
        cause: RevokeCause,
        reason: Option<String>,
        meta: &Meta,
    ) -> Result<Envelope, Error> {
        let env = self
            .store
            .revoke_user_sessions(user_id, cause, reason, &Stamp::now(meta))
            .await
            .map_err(|e| match e {
                StoreError::NotFound => Error::NotFound(Missing::User),
                e => e.into(),
            })?;
        self.committed(std::slice::from_ref(&env)).await;
        Ok(env)
    }
}
