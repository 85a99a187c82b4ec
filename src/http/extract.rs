//! Request extractors: the bearer principal (in-memory only), the admin
//! (bootstrap token or `admin` role), and who/where for the audit log.
//!
//! May import: what `http` may (its top comment).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{http::header, web, FromRequest, HttpRequest};

use super::errors::ApiError;
use crate::events::Meta;
use crate::service::{AdminIdentity, DpopInput, Presented, Principal, Recall};

/// What an extractor hands actix: the caller, or why not.
pub(super) type Extracting<T, E = ApiError> = Pin<Box<dyn Future<Output = Result<T, E>>>>;

/// The service, from the app's data.
pub(super) fn recall(req: &HttpRequest) -> Result<web::Data<Recall>, ApiError> {
    req.app_data::<web::Data<Recall>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("app state missing".into()))
}

/// The access token of a request and whether it came with the `DPoP`
/// scheme (RFC 9449) rather than `Bearer`.
pub fn access_token(req: &HttpRequest) -> Result<(&str, bool), ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::InvalidToken("missing bearer token".into()))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::InvalidToken("malformed authorization header".into()))?;
    // One parser for Recall, the sidecar and the verifier crate.
    recall_verifier::request::parse_authorization(Some(text)).map_err(|_| {
        ApiError::InvalidToken("expected: Authorization: Bearer <token> (or DPoP <token>)".into())
    })
}

/// What a request presents of DPoP: its one `DPoP` header (several:
/// refused), and the method and URI a proof must name. `original` takes
/// them from `X-Original-Method` / `X-Original-URI` (forward auth): an
/// absolute URI as it is, a path after `RECALL_PUBLIC_URL`.
pub fn dpop_input(req: &HttpRequest, recall: &Recall, original: bool) -> DpopInput {
    let mut proofs = req.headers().get_all("dpop");
    let proof = match (proofs.next(), proofs.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => Some(Err(())),
        (Some(one), None) => Some(one.to_str().map(str::to_owned).map_err(|_| ())),
    };
    let header_text = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let base = recall.settings().public_url.trim_end_matches('/');
    let (htm, uri) = match (
        original,
        header_text("x-original-method"),
        header_text("x-original-uri"),
    ) {
        (true, Some(m), Some(u)) => (m, u),
        _ => (req.method().as_str().to_owned(), req.path().to_owned()),
    };
    let htu = if uri.starts_with("http://") || uri.starts_with("https://") {
        uri
    } else {
        format!(
            "{base}{}",
            if uri.starts_with('/') {
                uri
            } else {
                format!("/{uri}")
            }
        )
    };
    DpopInput { proof, htm, htu }
}

/// The token of a request as presented: scheme, DPoP, client address.
pub fn presented(
    req: &HttpRequest,
    recall: &Recall,
    original: bool,
) -> Result<Presented, ApiError> {
    let (token, dpop_scheme) = access_token(req)?;
    Ok(Presented {
        token: token.to_owned(),
        dpop_scheme,
        dpop: dpop_input(req, recall, original),
        ip: client_addr(req),
    })
}

/// The id a path segment names: a malformed one is as unknown as a
/// missing one (404, `no such {what}`).
pub fn path_id(path: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(path).map_err(|_| ApiError::NotFound(format!("no such {what}")))
}

/// The bearer token of a request, if it has one.
pub fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    match access_token(req)? {
        (token, false) => Ok(token),
        (_, true) => Err(ApiError::InvalidToken(
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

/// The rule of `client_addr` on plain values: one rule for Recall, the
/// sidecar and the verifier crate (tested there).
pub use recall_verifier::request::rightmost_untrusted;

/// A caller authenticated by an access token, and the service it called.
pub struct Authenticated {
    pub recall: web::Data<Recall>,
    pub principal: Principal,
    /// For the audit meta, worked out only by a handler that writes.
    req: HttpRequest,
}

impl Authenticated {
    /// The audit meta of an action by this caller.
    pub fn meta(&self) -> Meta {
        Meta::user(self.principal.user_id, client_ip(&self.req))
    }
}

/// The same, for forward auth (`/v1/auth/verify`): a DPoP proof names
/// the original request (`X-Original-Method`, `X-Original-URI`).
pub struct ForwardAuthenticated(pub Principal);

/// Resolves the caller: in memory for a plain bearer token; a bound token
/// also checks its network and DPoP proof (whose replay check is async).
fn authenticate(req: &HttpRequest, original: bool) -> Extracting<Principal> {
    enum Next {
        Done(Principal),
        Elsewhere(Principal, bool, Option<IpAddr>),
        Full(Presented),
    }
    let found = recall(req).and_then(|r| {
        let (token, dpop_scheme) = access_token(req)?;
        if !dpop_scheme {
            // The common cases need no I/O: unbound, or bound to a network.
            let principal = r.verifier().authenticate(token)?;
            if principal.claims().cnf.is_none() {
                // The client address is worked out only for a bound token.
                let ip = principal
                    .claims()
                    .net
                    .as_ref()
                    .and_then(|_| client_addr(req));
                let next = match r.check_network(&principal, ip) {
                    Ok(()) => Next::Done(principal),
                    Err(revoke) => Next::Elsewhere(principal, revoke, ip),
                };
                return Ok((r, next));
            }
        }
        let p = presented(req, &r, original)?;
        Ok((r, Next::Full(p)))
    });
    Box::pin(async move {
        let (recall, next) = found?;
        match next {
            Next::Done(principal) => Ok(principal),
            Next::Elsewhere(principal, revoke, ip) => {
                Err(recall.refuse_elsewhere(&principal, revoke, ip).await.into())
            }
            Next::Full(p) => Ok(recall.authenticate_request(&p).await?),
        }
    })
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (fut, found, req) = (authenticate(req, false), recall(req), req.clone());
        Box::pin(async move {
            Ok(Authenticated {
                principal: fut.await?,
                recall: found?,
                req,
            })
        })
    }
}

impl FromRequest for ForwardAuthenticated {
    type Error = ApiError;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let fut = authenticate(req, true);
        Box::pin(async move { fut.await.map(ForwardAuthenticated) })
    }
}

/// A request from a caller allowed to use the emergency controls: the
/// service it called, the service's `AdminIdentity`, extracted, and the
/// audit meta of an action by it.
pub struct AdminCaller {
    pub recall: web::Data<Recall>,
    pub identity: AdminIdentity,
    pub meta: Meta,
}

/// Checks a bearer token for admin rights; `ip`, the caller's address,
/// goes into the audit meta.
pub async fn resolve_admin(
    recall: &web::Data<Recall>,
    token: &str,
    ip: Option<String>,
) -> Result<AdminCaller, ApiError> {
    let identity = recall.admin().authorize(token).await?;
    let meta = Meta {
        actor: Some(identity.actor.clone()),
        ip,
    };
    Ok(AdminCaller {
        recall: recall.clone(),
        identity,
        meta,
    })
}

impl std::ops::Deref for AdminCaller {
    type Target = AdminIdentity;

    fn deref(&self) -> &AdminIdentity {
        &self.identity
    }
}

impl FromRequest for AdminCaller {
    type Error = ApiError;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ip = client_ip(req);
        let found = recall(req).and_then(|r| {
            let p = presented(req, &r, false)?;
            Ok((r, p))
        });
        Box::pin(async move {
            let (recall, p) = found?;
            let admin = resolve_admin(&recall, &p.token, ip).await?;
            // An admin by role: the token's binding holds too.
            if admin.bearer.is_some() {
                recall.authenticate_request(&p).await?;
            }
            Ok(admin)
        })
    }
}
