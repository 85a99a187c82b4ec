//! Client policies: per client type (`web`, `mobile`, `service`) the
//! lifetimes of its sessions and how its tokens are bound. A policy is
//! fleet-wide state: changed by a `policy_changed` event, read at login,
//! and fixed into each session then (`SessionTerms`), so a change applies
//! to sessions logged in after it and never logs anyone out by itself.
//!
//! May import: what `domain` may (its top comment); no I/O.

use serde::{Deserialize, Serialize};

use crate::events::policy::{default_v4, default_v6};
pub use crate::events::policy::{Binding, OnMismatch, Policy};

/// The client types, in the order pages and answers list them.
pub const CLIENT_TYPES: [&str; 3] = ["web", "mobile", "service"];

/// Policy values refused, with the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub field: &'static str,
    pub message: String,
}

/// The longest session lifetime a policy may set: a year.
pub const MAX_LIFETIME_SECS: i64 = 366 * 86_400;

impl Policy {
    /// Today's settings as every client type's policy.
    pub fn default_from(
        access_ttl_secs: i64,
        refresh_ttl_secs: i64,
        session_max_secs: i64,
    ) -> Self {
        Policy {
            access_ttl_secs,
            refresh_ttl_secs,
            session_max_secs,
            idle_timeout_secs: None,
            binding: Binding::None,
            ipv4_prefix: default_v4(),
            ipv6_prefix: default_v6(),
            on_mismatch: OnMismatch::Reject,
        }
    }

    /// Checks a policy. `access_ceiling` is `RECALL_ACCESS_TTL_SECS`: the
    /// revocation window every instance and verifier keeps is sized by it
    /// (G8), so no policy may issue access tokens that outlive it.
    pub fn check(&self, access_ceiling: i64) -> Result<(), PolicyError> {
        let bad = |field, message: String| Err(PolicyError { field, message });
        if !(10..=access_ceiling).contains(&self.access_ttl_secs) {
            return bad(
                "access_ttl_secs",
                format!(
                    "10 to {access_ceiling} (RECALL_ACCESS_TTL_SECS sizes the revocation window)"
                ),
            );
        }
        if !(self.access_ttl_secs..=MAX_LIFETIME_SECS).contains(&self.refresh_ttl_secs) {
            return bad(
                "refresh_ttl_secs",
                format!("access_ttl_secs to {MAX_LIFETIME_SECS}"),
            );
        }
        if !(self.access_ttl_secs..=MAX_LIFETIME_SECS).contains(&self.session_max_secs) {
            return bad(
                "session_max_secs",
                format!("access_ttl_secs to {MAX_LIFETIME_SECS}"),
            );
        }
        if let Some(idle) = self.idle_timeout_secs {
            if !(60..=MAX_LIFETIME_SECS).contains(&idle) {
                return bad("idle_timeout_secs", format!("60 to {MAX_LIFETIME_SECS}"));
            }
        }
        if !(8..=32).contains(&self.ipv4_prefix) {
            return bad("ipv4_prefix", "8 to 32".into());
        }
        if !(16..=128).contains(&self.ipv6_prefix) {
            return bad("ipv6_prefix", "16 to 128".into());
        }
        Ok(())
    }

    /// The prefix lengths a `network` or `address` binding uses, if any.
    pub fn net_prefixes(&self) -> Option<(u8, u8)> {
        match self.binding {
            Binding::Network => Some((self.ipv4_prefix, self.ipv6_prefix)),
            Binding::Address => Some((32, 128)),
            Binding::None | Binding::Dpop => None,
        }
    }
}

/// Why a request may not use a bound session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingRefusal {
    /// From outside the session's network (or another address).
    Network,
    /// Without a DPoP proof of the session's key, or with another key's.
    Key,
}

impl BindingRefusal {
    /// The reason a revocation records and a SET carries.
    pub fn reason(self) -> &'static str {
        match self {
            BindingRefusal::Network => "token used from another network",
            BindingRefusal::Key => "token used without its DPoP key",
        }
    }
}

/// Whole seconds as a span (a negative count is none).
fn whole_secs(n: i64) -> std::time::Duration {
    std::time::Duration::from_secs(n.max(0).unsigned_abs())
}

/// What a session was given at login, fixed for its life: its lifetimes
/// and what its tokens are bound to. Stored with the session; a session
/// from before policies existed has none and keeps the settings'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SessionTerms {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_ttl_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_ttl_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_max_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<i64>,
    /// `network`, `address`, `dpop` or absent (none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    /// The network binding: prefix length and keyed digest (never the address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<recall_verifier::binding::NetBinding>,
    /// The DPoP key's thumbprint (RFC 7638) when the session is key-bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// Whether a use from elsewhere revokes the session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoke_on_mismatch: bool,
}

impl SessionTerms {
    /// The session's idle timeout, if its policy set one.
    pub fn idle_timeout(&self) -> Option<std::time::Duration> {
        self.idle_timeout_secs.map(whole_secs)
    }

    /// The session's refresh lifetime, if fixed at login.
    pub fn refresh_ttl(&self) -> Option<std::time::Duration> {
        self.refresh_ttl_secs.map(whole_secs)
    }

    /// The session's absolute lifetime, if fixed at login.
    pub fn session_max(&self) -> Option<std::time::Duration> {
        self.session_max_secs.map(whole_secs)
    }

    /// The session's binding as the sessions list shows it.
    pub fn binding_name(&self) -> &'static str {
        match (&self.jkt, &self.net, self.binding) {
            (Some(_), _, _) => "dpop",
            (None, Some(_), Some(Binding::Address)) => "address",
            (None, Some(_), _) => "network",
            _ => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::default_from(300, 1_209_600, 2_592_000)
    }

    #[test]
    fn given_todays_settings_then_they_are_a_valid_policy_binding_nothing() {
        let p = policy();
        assert_eq!(p.check(300), Ok(()));
        assert_eq!(p.binding, Binding::None);
        assert_eq!(p.net_prefixes(), None);
    }

    #[test]
    fn given_an_access_ttl_past_the_window_then_refused_naming_the_field() {
        let p = Policy {
            access_ttl_secs: 301,
            ..policy()
        };
        assert_eq!(p.check(300).unwrap_err().field, "access_ttl_secs");
        let p = Policy {
            access_ttl_secs: 5,
            ..policy()
        };
        assert_eq!(p.check(300).unwrap_err().field, "access_ttl_secs");
    }

    #[test]
    fn given_bad_lifetimes_or_prefixes_then_each_is_named() {
        let cases = [
            (
                Policy {
                    refresh_ttl_secs: 100,
                    ..policy()
                },
                "refresh_ttl_secs",
            ),
            (
                Policy {
                    session_max_secs: 0,
                    ..policy()
                },
                "session_max_secs",
            ),
            (
                Policy {
                    idle_timeout_secs: Some(1),
                    ..policy()
                },
                "idle_timeout_secs",
            ),
            (
                Policy {
                    ipv4_prefix: 33,
                    ..policy()
                },
                "ipv4_prefix",
            ),
            (
                Policy {
                    ipv6_prefix: 8,
                    ..policy()
                },
                "ipv6_prefix",
            ),
        ];
        for (p, field) in cases {
            assert_eq!(p.check(300).unwrap_err().field, field);
        }
    }

    #[test]
    fn given_network_or_address_binding_then_the_prefixes_follow() {
        let net = Policy {
            binding: Binding::Network,
            ipv4_prefix: 20,
            ..policy()
        };
        assert_eq!(net.net_prefixes(), Some((20, 56)));
        let addr = Policy {
            binding: Binding::Address,
            ..policy()
        };
        assert_eq!(addr.net_prefixes(), Some((32, 128)));
    }

    #[test]
    fn a_policy_body_with_an_unknown_field_or_binding_is_refused() {
        let ok = r#"{"access_ttl_secs":60,"refresh_ttl_secs":600,"session_max_secs":3600,"binding":"network","on_mismatch":"revoke"}"#;
        let p: Policy = serde_json::from_str(ok).unwrap();
        assert_eq!((p.ipv4_prefix, p.ipv6_prefix), (24, 56));
        assert!(serde_json::from_str::<Policy>(&ok.replace("network", "ip")).is_err());
        assert!(serde_json::from_str::<Policy>(&ok.replace("}", r#","x":1}"#)).is_err());
    }
}
