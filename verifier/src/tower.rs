//! tower: a layer for axum (and anything else on tower) that admits only
//! callers whose token Recall still honours. The `Principal` goes into the
//! request's extensions; refusals are answered here with Recall's status
//! (401, 403 locked, 503 stale) and an empty body of the service's type.
//!
//! ```ignore
//! let app = axum::Router::new()
//!     .route("/orders", get(orders))
//!     .layer(recall_verifier::tower::VerifierLayer::new(verifier));
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Request, Response, StatusCode};

use crate::client::Verifier;
use crate::error::VerifyError;

/// Wraps a service with token verification.
#[derive(Clone)]
pub struct VerifierLayer {
    verifier: Verifier,
}

impl VerifierLayer {
    /// A layer checking tokens with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        VerifierLayer { verifier }
    }
}

impl<S> tower_layer::Layer<S> for VerifierLayer {
    type Service = VerifierService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifierService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service `VerifierLayer` makes.
#[derive(Clone)]
pub struct VerifierService<S> {
    inner: S,
    verifier: Verifier,
}

/// A refusal as a response with an empty body.
pub fn refusal<B: Default>(e: &VerifyError) -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match e {
        VerifyError::Stale => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        VerifyError::Revoked(crate::state::Rejection::UserLocked { .. }) => {}
        _ => {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
        }
    }
    res
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

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The clone serves the next call; this call uses the one made ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let auth = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match verifier.verify_header(auth.as_deref()).await {
                Ok(principal) => {
                    req.extensions_mut().insert(principal);
                    inner.call(req).await
                }
                Err(e) => Ok(refusal(&e)),
            }
        })
    }
}
