//! actix-web: an extractor that admits only callers whose token Recall
//! still honours. Register the verifier with `App::app_data(web::Data::new(v))`.
//!
//! ```ignore
//! async fn orders(user: recall_verifier::actix::Authenticated) -> String {
//!     format!("orders of {}", user.0.user_id)
//! }
//! ```

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};

use crate::client::Verifier;
use crate::error::{Principal, VerifyError};

/// A caller whose bearer token passed: signature, claims, not revoked,
/// and the verifier is fresh.
pub struct Authenticated(pub Principal);

impl ResponseError for VerifyError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::UNAUTHORIZED)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.content_type("application/json")
            .insert_header((header::CACHE_CONTROL, "no-store"));
        match self {
            VerifyError::Stale => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            VerifyError::Revoked(crate::state::Rejection::UserLocked { .. }) => {}
            _ => {
                res.insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#));
            }
        }
        res.body(self.body())
    }
}

impl FromRequest for Authenticated {
    type Error = VerifyError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, VerifyError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<Verifier>>().cloned();
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            // No verifier registered is a wiring bug: refuse, fail closed.
            let verifier = verifier.ok_or(VerifyError::Stale)?;
            verifier
                .verify_header(auth.as_deref())
                .await
                .map(Authenticated)
        })
    }
}
