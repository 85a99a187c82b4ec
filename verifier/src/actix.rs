//! actix-web: an extractor that admits only callers whose token Recall
//! still honours. Register the verifier with `App::app_data(web::Data::new(v))`.
//!
//! ```ignore
//! async fn orders(user: recall_verifier::actix::Authenticated) -> String {
//!     format!("orders of {}", user.0.user_id)
//! }
//! ```
//!
//! Bound tokens are checked against the request: `Authorization: Bearer`
//! or `DPoP` (any case), exactly one `DPoP` header, the method and path
//! (after `Config::public_url`) for the proof's `htm`/`htu`, and the
//! client address (the peer, or behind `Config::trusted_proxies` the
//! rightmost untrusted `X-Forwarded-For` entry).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};

use crate::client::Verifier;
use crate::error::{Principal, VerifyError};
use crate::request::{parse_authorization, DpopHeader, Presented};

/// A caller whose token passed: signature, claims, not revoked, its
/// bindings (DPoP proof, network) if any, and the verifier is fresh.
pub struct Authenticated(pub Principal);

impl ResponseError for VerifyError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::UNAUTHORIZED)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.content_type("application/json")
            .insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(seconds) = self.retry_after() {
            res.insert_header((header::RETRY_AFTER, seconds));
        }
        if let Some(challenge) = self.challenge() {
            res.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        res.body(self.body())
    }
}

fn header_text<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Verifies the token `req` presents, with its bindings. With
/// `forward_auth` (a forward-auth endpoint such as the sidecar's
/// `/v1/auth/verify`), the method and URI a DPoP proof must name are the
/// original request's, from `X-Original-Method` and `X-Original-URI` (an
/// absolute URI as it is, a path after `Config::public_url`); without
/// them, this request's own.
pub async fn verify_request(
    req: &HttpRequest,
    verifier: &Verifier,
    forward_auth: bool,
) -> Result<Principal, VerifyError> {
    let (token, dpop_scheme) = parse_authorization(header_text(req, "authorization"))?;
    let original = match (
        forward_auth,
        header_text(req, "x-original-method"),
        header_text(req, "x-original-uri"),
    ) {
        (true, Some(method), Some(uri)) => Some((method.trim(), uri.trim())),
        _ => None,
    };
    let (htm, uri) = original.unwrap_or((req.method().as_str(), req.path()));
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    let presented = Presented {
        token,
        dpop_scheme,
        proof: DpopHeader::from_values(req.headers().get_all("dpop").map(|v| v.to_str().ok())),
        htm,
        uri,
        client_ip: verifier.client_addr(req.peer_addr().map(|a| a.ip()), &forwarded),
    };
    verifier.verify_request(&presented).await
}

impl FromRequest for Authenticated {
    type Error = VerifyError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, VerifyError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<Verifier>>().cloned();
        let req = req.clone();
        Box::pin(async move {
            // No verifier registered is a wiring bug: refuse, fail closed.
            let verifier = verifier.ok_or(VerifyError::Stale)?;
            verify_request(&req, &verifier, false)
                .await
                .map(Authenticated)
        })
    }
}
