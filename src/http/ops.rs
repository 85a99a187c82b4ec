//! Operations and standards: health, readiness, metrics, JWKS, OAuth token
//! revocation (RFC 7009) and introspection (RFC 7662).

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::body::RawBody;
use super::extract::{client_ip, Admin};
use crate::error::ApiError;
use crate::events::{Meta, RevokeCause};
use crate::metrics::Gauges;
use crate::service::{refresh_hash, Recall};
use crate::state::KeyStatus;
use crate::store::SessionEnd;
use crate::sync::now_ms;
use crate::tokens::b64url;

/// `GET /healthz`
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: caught up within the staleness bound and the store answers.
pub async fn readyz(recall: web::Data<Recall>) -> HttpResponse {
    let now = now_ms();
    let staleness = recall.sync.staleness_ms(now);
    let caught_up = recall.sync.state().last_seq();
    let head = tokio::time::timeout(Duration::from_secs(2), recall.store.head()).await;
    let (head, store_ok) = match head {
        Ok(Ok(h)) => (Some(h), true),
        _ => (None, false),
    };
    if let Some(h) = head.filter(|h| *h < caught_up) {
        // Ahead of the log (G9): fail closed now; the poller rebuilds.
        recall.sync.note_regression(h, caught_up);
    }
    let fresh = recall.sync.is_fresh(now);
    let regression = recall.sync.regression();
    let reason = match (store_ok, fresh, regression) {
        (_, _, Some(r)) => Some(r),
        (true, true, None) => None,
        (false, _, None) => Some("the store does not answer".to_owned()),
        (true, false, None) => {
            Some("not caught up with the log within RECALL_MAX_STALENESS_MS".to_owned())
        }
    };
    let body = json!({
        "ready": reason.is_none(),
        "reason": reason,
        "caught_up_seq": caught_up,
        "head_seq": head,
        "lag": head.map(|h| (h - caught_up).max(0)),
        "staleness_ms": staleness,
        "max_staleness_ms": recall.settings.max_staleness_ms,
        "store": recall.store.kind(),
        "bus": { "kind": recall.bus.kind(), "connected": recall.sync.bus_connected() },
    });
    if reason.is_none() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`
pub async fn metrics(recall: web::Data<Recall>) -> HttpResponse {
    let now = now_ms();
    let (revoked, locks, _) = recall.sync.state().sizes();
    let pool = recall.hasher.stats();
    let gauges = Gauges {
        staleness_ms: recall.sync.staleness_ms(now),
        last_seq: recall.sync.state().last_seq(),
        revoked_sessions: revoked,
        locks,
        ready: recall.sync.is_fresh(now),
        hash_running: pool.running.load(Ordering::Relaxed),
        hash_running_max: pool.running_max.load(Ordering::Relaxed),
        hash_admitted: pool.admitted.load(Ordering::Relaxed),
        hash_workers: recall.hasher.workers(),
        hash_rejected: pool.rejected.load(Ordering::Relaxed),
        hash_abandoned: pool.abandoned.load(Ordering::Relaxed),
    };
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(recall.metrics.render(&gauges))
}

/// `GET /.well-known/jwks.json`: every active and verifying public key.
pub async fn jwks(recall: web::Data<Recall>) -> HttpResponse {
    let now = now_ms();
    let keys = recall.sync.state().keys(now);
    let list: Vec<_> = keys
        .iter()
        .filter(|(_, s)| matches!(s, KeyStatus::Active | KeyStatus::Verifying))
        .filter_map(|(kid, _)| {
            let public = recall.sync.keyring().public_key(kid)?;
            Some(json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64url(&public),
                "kid": kid, "use": "sig", "alg": "EdDSA",
            }))
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
    let how = SessionEnd::Revoked {
        cause: RevokeCause::TokenRevocation,
        reason: None,
    };
    // An access token: its signature proves the holder may end its session,
    // if its key still counts (a revoked or retired key proves nothing).
    let session = if form.token.matches('.').count() == 2 {
        recall
            .sync
            .keyring()
            .verify(&form.token)
            .ok()
            .filter(|(_, kid)| {
                matches!(
                    recall.sync.state().key_status(kid, now_ms()),
                    Some(KeyStatus::Active | KeyStatus::Verifying)
                )
            })
            .map(|(c, _)| c.sid)
    } else {
        recall
            .store
            .session_by_refresh(&refresh_hash(&form.token))
            .await?
            .map(|s| s.id)
    };
    if let Some(sid) = session {
        match recall.end_session(sid, None, how, &meta).await {
            Ok(()) | Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
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
        Err(ApiError::Unavailable(m)) => return Err(ApiError::Unavailable(m)),
        Err(_) => json!({ "active": false }),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}
