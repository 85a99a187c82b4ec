//! Request extractors: the bearer principal (in-memory only), the admin
//! (bootstrap token or `admin` role), and who/where for the audit log.

use std::future::{ready, Future, Ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{http::header, web, FromRequest, HttpRequest};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
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

/// The client address without port. Forwarded headers (`Forwarded`,
/// `X-Forwarded-For`) are believed only from a loopback or private-network
/// peer, i.e. a proxy in front of us; anyone else could forge them.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    let peer = req.peer_addr().map(|a| a.ip());
    let trusted_proxy = peer.is_some_and(|ip| match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        std::net::IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    });
    if !trusted_proxy {
        return peer.map(|ip| ip.to_string());
    }
    let info = req.connection_info();
    let addr = info.realip_remote_addr()?;
    let ip = addr
        .parse::<std::net::SocketAddr>()
        .map(|s| s.ip().to_string())
        .unwrap_or_else(|_| addr.to_owned());
    Some(ip.chars().take(64).collect())
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
                .and_then(|r| bearer(req).and_then(|t| r.authenticate(t)))
                .map(Authenticated),
        )
    }
}

/// A caller allowed to use the emergency controls.
pub struct Admin {
    /// `admin-token` or `admin:<user id>`.
    pub actor: String,
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
    if let Some(expected) = &recall.settings.admin_token {
        if bool::from(expected.as_bytes().ct_eq(token.as_bytes())) {
            return Ok(Admin {
                actor: "admin-token".into(),
            });
        }
    }
    let principal = recall.authenticate(token)?;
    let user = recall.store.user_by_id(principal.user_id).await?;
    match user {
        Some(u) if u.is_admin() => Ok(Admin {
            actor: format!("admin:{}", u.id),
        }),
        _ => Err(ApiError::Forbidden("admin rights required".into())),
    }
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
