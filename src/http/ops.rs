//! Operations and standards: health, readiness, metrics, JWKS, OAuth token
//! revocation (RFC 7009) and introspection (RFC 7662).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::body::RawBody;
use super::errors::ApiError;
use super::extract::{client_ip, Admin};
use crate::events::Meta;
use crate::service::Recall;
use crate::tokens::b64url;

/// `GET /healthz`
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: caught up within the staleness bound and the store answers.
pub async fn readyz(recall: web::Data<Recall>) -> HttpResponse {
    let r = recall.readiness().await;
    let body = json!({
        "ready": r.reason.is_none(),
        "reason": r.reason,
        "caught_up_seq": r.caught_up_seq,
        "head_seq": r.head_seq,
        "lag": r.head_seq.map(|h| (h - r.caught_up_seq).max(0)),
        "staleness_ms": r.staleness_ms,
        "max_staleness_ms": r.max_staleness_ms,
        "store": r.store,
        "bus": { "kind": r.bus, "connected": r.bus_connected },
    });
    if r.reason.is_none() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`
pub async fn metrics(recall: web::Data<Recall>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(recall.metrics_text())
}

/// `GET /.well-known/jwks.json`: every active and verifying public key.
pub async fn jwks(recall: web::Data<Recall>) -> HttpResponse {
    let list: Vec<_> = recall
        .verifying_keys()
        .into_iter()
        .map(|(kid, public)| {
            json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64url(&public),
                "kid": kid, "use": "sig", "alg": "EdDSA",
            })
        })
        .collect();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .json(json!({ "keys": list }))
}

#[derive(Deserialize)]
pub struct TokenForm {
    token: String,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// Reads an RFC 7009/7662 body: form-encoded, or JSON.
fn token_form(req: &HttpRequest, body: &[u8]) -> Result<TokenForm, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let parsed = if is_json {
        serde_json::from_slice::<TokenForm>(body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes::<TokenForm>(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ApiError::InvalidRequest(format!("token: {e}")))
}

/// `POST /oauth/revoke` (RFC 7009): 200 whatever the token was.
pub async fn revoke(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let form = token_form(&req, &body.0)?;
    let meta = Meta {
        actor: Some("token-holder".into()),
        ip: client_ip(&req),
    };
    recall.revoke_token(&form.token, &meta).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `POST /oauth/introspect` (RFC 7662; admin).
pub async fn introspect(
    req: HttpRequest,
    recall: web::Data<Recall>,
    _admin: Admin,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let form = token_form(&req, &body.0)?;
    let body = match recall.authenticate(&form.token) {
        Ok(p) => json!({
            "active": true,
            "sub": p.user_id,
            "sid": p.session_id,
            "exp": p.claims().exp,
            "iat": p.claims().iat,
            "client_type": p.client_type(),
            "token_type": "Bearer",
        }),
        Err(e @ crate::error::Error::Unavailable(_)) => return Err(e.into()),
        Err(_) => json!({ "active": false }),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}
