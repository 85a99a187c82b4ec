//! Client policies (fleet-wide, as events) and what they give a session
//! at login: lifetimes, and the binding of its tokens to a network or a
//! DPoP key. The checks of a bound token are in `verifier`.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use std::collections::BTreeMap;
use std::net::IpAddr;

use uuid::Uuid;

use super::{Admin, Core};
use crate::domain::{Binding, OnMismatch, Policy, SessionTerms, CLIENT_TYPES};
use crate::error::Error;
use crate::events::{Meta, Stamp};

/// Salt of the network-binding key (HKDF from the master key).
pub const BINDING_KEY_SALT: &[u8] = b"recall network binding key v1";

/// A policy as answered: the policy and the seq that set it (0: defaults).
#[derive(Debug, Clone)]
pub struct PolicyView {
    pub policy: Policy,
    pub seq: i64,
}

impl Core {
    /// The settings' lifetimes as a policy binding nothing.
    pub fn default_policy(&self) -> Policy {
        Policy::default_from(
            self.settings.access_ttl_secs,
            self.settings.refresh_ttl_secs,
            self.settings.session_max_secs,
        )
    }

    /// Every client type's policy: recorded, or the defaults.
    pub async fn policies(&self) -> Result<BTreeMap<String, PolicyView>, Error> {
        let mut all: BTreeMap<String, PolicyView> = CLIENT_TYPES
            .iter()
            .map(|t| {
                let view = PolicyView {
                    policy: self.default_policy(),
                    seq: 0,
                };
                (t.to_string(), view)
            })
            .collect();
        for (client_type, policy, seq) in self.store.policies().await? {
            all.insert(client_type, PolicyView { policy, seq });
        }
        Ok(all)
    }

    /// The policy a login of `client_type` gets now.
    pub(super) async fn policy_for(&self, client_type: &str) -> Result<Policy, Error> {
        Ok(self
            .store
            .policy(client_type)
            .await?
            .unwrap_or_else(|| self.default_policy()))
    }

    /// The key network-bound tokens' digests are made with. Verifiers get
    /// it over the authenticated feed (`binding_key` of a feed page).
    pub fn binding_key(&self) -> &recall_verifier::binding::BindingKey {
        &self.binding.0
    }

    /// `binding_key` in base64url, as the feed sends it.
    pub fn binding_key_b64(&self) -> &str {
        &self.binding.1
    }

    /// What a session logging in now under `policy` is given: its
    /// lifetimes, its network binding from the client address `ip`, and
    /// the DPoP key `jkt` its proof showed. A policy binding to `dpop`
    /// without a proof, or to a network without a known address, refuses.
    pub(super) fn terms_for(
        &self,
        policy: &Policy,
        session_id: Uuid,
        ip: Option<IpAddr>,
        jkt: Option<String>,
    ) -> Result<SessionTerms, Error> {
        let revoke = policy.on_mismatch == OnMismatch::Revoke;
        let net = match policy.net_prefixes() {
            Some((v4, v6)) => {
                let ip = ip.ok_or_else(|| {
                    Error::invalid("client address", "unknown, and the policy binds to it")
                })?;
                Some(self.binding_key().bind(session_id, ip, v4, v6, revoke))
            }
            None => None,
        };
        if policy.binding == Binding::Dpop && jkt.is_none() {
            return Err(Error::Dpop {
                refusal: crate::error::DpopRefusal::Missing,
                resource: false,
            });
        }
        Ok(SessionTerms {
            access_ttl_secs: Some(policy.access_ttl_secs),
            refresh_ttl_secs: Some(policy.refresh_ttl_secs),
            session_max_secs: Some(policy.session_max_secs),
            idle_timeout_secs: policy.idle_timeout_secs,
            binding: (policy.binding != Binding::None).then_some(policy.binding),
            net,
            jkt,
            revoke_on_mismatch: revoke,
        })
    }
}

impl Admin {
    /// Sets a client type's policy (an event; sessions logging in after
    /// it get it, on every instance).
    pub async fn set_policy(
        &self,
        client_type: &str,
        policy: Policy,
        meta: &Meta,
    ) -> Result<PolicyView, Error> {
        if !CLIENT_TYPES.contains(&client_type) {
            return Err(Error::NotFound(crate::error::Missing::ClientType));
        }
        policy
            .check(self.settings.access_ttl_secs)
            .map_err(|e| Error::invalid(e.field, &e.message))?;
        let env = self
            .store
            .set_policy(client_type, &policy, &Stamp::now(meta))
            .await?;
        let seq = env.seq;
        self.committed(&[env]).await;
        Ok(PolicyView { policy, seq })
    }
}
