//! Request extractors: the bearer principal (in-memory only), the admin
//! (bootstrap token or `admin` role), and who/where for the audit log.

use std::future::{ready, Future, Ready};
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{http::header, web, FromRequest, HttpRequest};

use super::errors::ApiError;
use crate::events::Meta;
use crate::service::{Principal, Recall};

fn recall(req: &HttpRequest) -> Result<web::Data<Recall>, ApiError> {
    req.app_data::<web::Data<Recall>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("app state missing".into()))
}

/// The bearer token of a request, if it has one.
pub fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::InvalidToken("missing bearer token".into()))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::InvalidToken("malformed authorization header".into()))?;
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::InvalidToken(
            "expected: Authorization: Bearer <token>".into(),
        )),
    }
}

/// The client address without port, as a string for the audit log.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    client_addr(req).map(|ip| ip.to_string())
}

/// The client address: the peer, unless the peer is a trusted proxy
/// (`RECALL_TRUSTED_PROXIES`); then the rightmost `X-Forwarded-For` entry
/// that is not a trusted proxy. Proxies such as nginx append the address
/// they saw on the right, so everything left of it is the client's own
/// writing. An unparsable entry falls back to the peer; `Forwarded` is
/// ignored.
pub fn client_addr(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip())?;
    let trusted: &[ipnet::IpNet] = match req.app_data::<web::Data<Recall>>() {
        Some(r) => &r.settings().trusted_proxies,
        None => &[],
    };
    let values: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    Some(rightmost_untrusted(peer, &values, trusted))
}

/// The rule of `client_addr` on plain values (unit-tested).
pub fn rightmost_untrusted(
    peer: IpAddr,
    forwarded_for: &[&str],
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let entries = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim);
    for entry in entries.collect::<Vec<_>>().into_iter().rev() {
        let Ok(ip) = entry.parse::<IpAddr>() else {
            return peer;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// A caller authenticated by an access token.
pub struct Authenticated(pub Principal);

impl Authenticated {
    /// Audit meta for an action by this caller.
    pub fn meta(&self, req: &HttpRequest) -> Meta {
        Meta::user(self.0.user_id, client_ip(req))
    }
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            recall(req)
                .and_then(|r| bearer(req).and_then(|t| Ok(r.verifier().authenticate(t)?)))
                .map(Authenticated),
        )
    }
}

/// A caller allowed to use the emergency controls.
pub struct Admin {
    /// `admin-token` or `admin:<user id>`.
    pub actor: String,
    /// The user's access token, for an admin by role (rights can end).
    pub bearer: Option<String>,
    /// When that token expires (no leeway).
    pub expires_at: Option<crate::clock::Timestamp>,
}

impl Admin {
    /// Audit meta for an action by this admin.
    pub fn meta(&self, req: &HttpRequest) -> Meta {
        Meta {
            actor: Some(self.actor.clone()),
            ip: client_ip(req),
        }
    }
}

/// Checks a bearer token for admin rights.
pub async fn resolve_admin(recall: &Recall, token: &str) -> Result<Admin, ApiError> {
    let who = recall.admin().authorize(token).await?;
    Ok(Admin {
        actor: who.actor,
        bearer: who.bearer,
        expires_at: who.expires_at,
    })
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = recall(req).and_then(|r| bearer(req).map(|t| (r, t.to_owned())));
        Box::pin(async move {
            let (recall, token) = found?;
            resolve_admin(&recall, &token).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(text: &str) -> Vec<ipnet::IpNet> {
        crate::config::parse_trusted_proxies(text).unwrap()
    }

    #[test]
    fn the_rightmost_untrusted_forwarded_address_wins() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let lo = nets("127.0.0.0/8,::1");
        // nginx appended the real address on the right; the left is forged.
        assert_eq!(
            rightmost_untrusted(ip("127.0.0.1"), &["6.6.6.6, 203.0.113.5"], &lo),
            ip("203.0.113.5")
        );
        // Chains of trusted proxies are skipped.
        let chain = nets("127.0.0.0/8,10.0.0.0/8");
        assert_eq!(
            rightmost_untrusted(ip("127.0.0.1"), &["6.6.6.6, 203.0.113.5, 10.1.1.1"], &chain),
            ip("203.0.113.5")
        );
        // Several header lines read as one list, in order.
        assert_eq!(
            rightmost_untrusted(ip("127.0.0.1"), &["6.6.6.6", "198.51.100.7"], &lo),
            ip("198.51.100.7")
        );
        // An untrusted peer's header is ignored.
        assert_eq!(
            rightmost_untrusted(ip("127.0.0.2"), &["6.6.6.6"], &nets("127.0.0.1/32")),
            ip("127.0.0.2")
        );
        // Unparsable entries fall back to the peer; no header: the peer.
        for bad in ["not-an-ip", "203.0.113.5:4711", "", "6.6.6.6, "] {
            assert_eq!(
                rightmost_untrusted(ip("127.0.0.1"), &[bad], &lo),
                ip("127.0.0.1"),
                "{bad:?}"
            );
        }
        assert_eq!(rightmost_untrusted(ip("::1"), &[], &lo), ip("::1"));
        // All trusted: the leftmost (an internal client).
        assert_eq!(
            rightmost_untrusted(ip("127.0.0.1"), &["10.2.3.4, 10.1.1.1"], &chain),
            ip("10.2.3.4")
        );
    }
}
