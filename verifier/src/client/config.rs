//! The verifier's configuration: which Recall instances to follow, the
//! credential to reach them with, and how strict to be. Plain data: it
//! imports nothing of the crate but `request` (the default trusted
//! proxies).

use std::time::Duration;

use ipnet::IpNet;

/// DPoP proofs remembered by default (each for its 60 s window).
pub const DPOP_REPLAY_CAPACITY: usize = 65_536;

/// How to reach Recall, and how strict to be.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URLs of Recall instances, tried in turn (`http://recall:8080`).
    pub upstreams: Vec<String>,
    /// A service credential (`POST /v1/admin/services`).
    pub service_token: String,
    /// Accepted `iss` values; empty: what Recall's metadata announces.
    pub issuers: Vec<String>,
    /// Required `aud`; empty: what Recall's metadata announces.
    pub audience: String,
    /// Refuse every token once no heartbeat came for this long.
    pub max_staleness: Duration,
    /// Polling interval while the stream is down.
    pub poll_interval: Duration,
    /// The address clients reach the protected API at
    /// (`https://api.example.com`): a DPoP proof's `htu` must be this and
    /// the request's path. `None`: DPoP-bound tokens are refused
    /// (`invalid_dpop_proof`) rather than checked against a guess from
    /// `Host`, unless the request names an absolute URI (forward auth).
    pub public_url: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed: the client address is
    /// the rightmost entry not in them. Default `127.0.0.0/8`, `::1`.
    pub trusted_proxies: Vec<IpNet>,
    /// Most DPoP proofs remembered at once for replay detection; when full
    /// of unexpired ones, new proofs are refused (fail closed).
    pub dpop_replay_capacity: usize,
}

impl Config {
    /// Defaults: 5 s staleness bound, 1 s polling, issuer and audience from
    /// the upstream's metadata.
    pub fn new(upstreams: Vec<String>, service_token: impl Into<String>) -> Self {
        Config {
            upstreams: upstreams
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            service_token: service_token.into(),
            issuers: Vec::new(),
            audience: String::new(),
            max_staleness: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            public_url: None,
            trusted_proxies: crate::request::default_trusted_proxies(),
            dpop_replay_capacity: DPOP_REPLAY_CAPACITY,
        }
    }
}
