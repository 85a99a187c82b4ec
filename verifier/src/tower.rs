//! tower: a layer for axum (and anything else on tower) that admits only
//! callers whose token Recall still honours. The `Principal` goes into the
//! request's extensions; refusals are answered here with Recall's status
//! (401, 403 locked, 503 stale) and an empty body of the service's type.
//!
//! ```ignore
//! let app = axum::Router::new()
//!     .route("/orders", get(orders))
//!     .layer(
//!         recall_verifier::tower::VerifierLayer::new(verifier)
//!             // axum: the peer address, for network-bound tokens
//!             // (serve with `into_make_service_with_connect_info`).
//!             .peer_addr(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())),
//!     );
//! ```
//!
//! Bound tokens are checked against the request: `Authorization: Bearer`
//! or `DPoP` (any case), exactly one `DPoP` header, the method and the
//! URI's path (after `Config::public_url`; behind axum's `nest` the layer
//! sees the path it is given) for the proof's `htm`/`htu`, and the client
//! address: the peer (see [`VerifierLayer::peer_addr`]), or behind
//! `Config::trusted_proxies` the rightmost untrusted `X-Forwarded-For`
//! entry. With no peer address known, network-bound tokens are refused.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{header, Extensions, HeaderValue, Request, Response, StatusCode};

use crate::client::Verifier;
use crate::error::VerifyError;
use crate::request::{parse_authorization, DpopHeader, Presented};

/// The peer address of a request, for a server to put in its extensions
/// (one of the types the layer looks for by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub IpAddr);

/// Finds the peer address in a request's extensions.
pub type PeerAddrFn = fn(&Extensions) -> Option<IpAddr>;

/// The default [`PeerAddrFn`]: a [`PeerAddr`], a `SocketAddr` or an
/// `IpAddr` in the extensions.
pub fn default_peer_addr(ext: &Extensions) -> Option<IpAddr> {
    ext.get::<PeerAddr>()
        .map(|p| p.0)
        .or_else(|| ext.get::<SocketAddr>().map(SocketAddr::ip))
        .or_else(|| ext.get::<IpAddr>().copied())
}

/// Wraps a service with token verification.
#[derive(Clone)]
pub struct VerifierLayer {
    verifier: Verifier,
    peer_addr: PeerAddrFn,
}

impl VerifierLayer {
    /// A layer checking tokens with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        VerifierLayer {
            verifier,
            peer_addr: default_peer_addr,
        }
    }

    /// How to find the peer address in a request's extensions (by default
    /// [`default_peer_addr`]); axum puts it in `ConnectInfo<SocketAddr>`.
    pub fn peer_addr(mut self, find: PeerAddrFn) -> Self {
        self.peer_addr = find;
        self
    }
}

impl<S> tower_layer::Layer<S> for VerifierLayer {
    type Service = VerifierService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifierService {
            inner,
            verifier: self.verifier.clone(),
            peer_addr: self.peer_addr,
        }
    }
}

/// The service `VerifierLayer` makes.
#[derive(Clone)]
pub struct VerifierService<S> {
    inner: S,
    verifier: Verifier,
    peer_addr: PeerAddrFn,
}

/// A refusal as a response with an empty body.
pub fn refusal<B: Default>(e: &VerifyError) -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(seconds) = e.retry_after() {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    }
    if let Some(challenge) = e.challenge() {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    res
}

/// Verifies the token a request (its head) presents, with its bindings.
pub async fn verify_parts(
    parts: &http::request::Parts,
    verifier: &Verifier,
    peer_addr: PeerAddrFn,
) -> Result<crate::error::Principal, VerifyError> {
    fn text(v: &HeaderValue) -> Option<&str> {
        v.to_str().ok()
    }
    let (token, dpop_scheme) =
        parse_authorization(parts.headers.get(header::AUTHORIZATION).and_then(text))?;
    let forwarded: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(text)
        .collect();
    let presented = Presented {
        token,
        dpop_scheme,
        proof: DpopHeader::from_values(parts.headers.get_all("dpop").iter().map(text)),
        htm: parts.method.as_str(),
        uri: parts.uri.path(),
        client_ip: verifier.client_addr(peer_addr(&parts.extensions), &forwarded),
    };
    verifier.verify_request(&presented).await
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for VerifierService<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone serves the next call; this call uses the one made ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let peer_addr = self.peer_addr;
        Box::pin(async move {
            // The head alone is borrowed across the await (the body need
            // not be Sync).
            let (mut parts, body) = req.into_parts();
            match verify_parts(&parts, &verifier, peer_addr).await {
                Ok(principal) => {
                    parts.extensions.insert(principal);
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(e) => Ok(refusal(&e)),
            }
        })
    }
}
