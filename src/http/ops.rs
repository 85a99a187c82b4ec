//! Operations and standards: health, readiness, metrics, JWKS, OAuth token
//! revocation (RFC 7009) and introspection (RFC 7662).
//!
//! May import: what `http` may (its top comment).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::RawBody;
use super::errors::ApiError;
use base64::Engine;

use super::extract::{bearer, client_addr, client_ip};
use crate::events::Meta;
use crate::service::Recall;
use crate::tokens::b64url;

/// Liveness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// Where the instance stands against the log.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    ready: bool,
    /// Why it is not ready.
    reason: Option<String>,
    /// The last sequence number folded into the in-memory state.
    caught_up_seq: i64,
    /// The log's head, when the store answered.
    head_seq: Option<i64>,
    lag: Option<i64>,
    /// Milliseconds since the state was last known current.
    staleness_ms: i64,
    max_staleness_ms: i64,
    /// `sqlite` or `postgres`.
    store: String,
    bus: BusState,
}

/// The notice bus.
#[derive(Serialize, ToSchema)]
pub struct BusState {
    /// `redis` or `none`.
    kind: String,
    connected: bool,
}

/// `GET /healthz`
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process answers", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// `GET /readyz`: caught up within the staleness bound and the store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "Not ready: stale, behind, or the store is down", body = Readiness)))]
pub async fn readyz(recall: web::Data<Recall>) -> HttpResponse {
    let r = recall.readiness().await;
    let body = Readiness {
        ready: r.reason.is_none(),
        lag: r.head_seq.map(|h| (h - r.caught_up_seq).max(0)),
        reason: r.reason.clone(),
        caught_up_seq: r.caught_up_seq,
        head_seq: r.head_seq,
        staleness_ms: r.staleness_ms,
        max_staleness_ms: r.max_staleness_ms,
        store: r.store.to_string(),
        bus: BusState {
            kind: r.bus.to_string(),
            connected: r.bus_connected,
        },
    };
    if r.reason.is_none() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200,
    description = "Prometheus / OpenMetrics text", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(recall: web::Data<Recall>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(recall.metrics_text())
}

/// An Ed25519 public key (RFC 8037).
#[derive(Serialize, ToSchema)]
pub struct Jwk {
    /// `OKP`
    kty: &'static str,
    /// `Ed25519`
    crv: &'static str,
    /// The public key, base64url.
    x: String,
    kid: String,
    /// `sig`
    #[serde(rename = "use")]
    use_: &'static str,
    /// `EdDSA`
    alg: &'static str,
}

/// A JSON Web Key Set.
#[derive(Serialize, ToSchema)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

/// `GET /.well-known/jwks.json`: every active and verifying public key.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "standards",
    responses((status = 200, description = "Every key that verifies tokens", body = Jwks)))]
pub async fn jwks(recall: web::Data<Recall>) -> HttpResponse {
    let keys = recall
        .verifying_keys()
        .into_iter()
        .map(|(kid, public)| Jwk {
            kty: "OKP",
            crv: "Ed25519",
            x: b64url(&public),
            kid,
            use_: "sig",
            alg: "EdDSA",
        })
        .collect();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .json(Jwks { keys })
}

/// An RFC 7009 / RFC 7662 request (form-encoded, or JSON).
#[derive(Deserialize, ToSchema)]
pub struct TokenForm {
    /// An access or refresh token.
    token: String,
    /// `access_token` or `refresh_token`; a hint only.
    #[allow(dead_code)]
    token_type_hint: Option<String>,
    /// Introspection: the service id, when the credential comes in the
    /// form (RFC 6749 section 2.3.1, `client_secret_post`).
    #[serde(default)]
    client_id: Option<String>,
    /// Introspection: the service token, with `client_id`.
    #[serde(default)]
    client_secret: Option<String>,
    /// Introspection: the address the token came from (IPv4 or IPv6). A
    /// network-bound token is active only for an address inside its
    /// session's network; without a usable one it is not active (the
    /// caller could not check it). Other tokens ignore it.
    #[serde(default)]
    client_ip: Option<String>,
}

/// How an introspection caller authenticated (RFC 6749 section 2.3.1 and
/// RFC 7662 section 2.1): the service id it named, if any, and the secret.
fn client_credential(
    req: &HttpRequest,
    form: &TokenForm,
) -> Result<(Option<String>, String), ApiError> {
    let header_value = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::InvalidToken("malformed authorization header".into()))
        })
        .transpose()?;
    match (header_value, &form.client_id, &form.client_secret) {
        // A credential in the header wins; form fields beside it are ignored.
        (Some(value), _, _) => match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| ApiError::InvalidToken("malformed Basic credentials".into()))?;
                let (id, secret) = decoded
                    .split_once(':')
                    .ok_or_else(|| ApiError::InvalidToken("malformed Basic credentials".into()))?;
                // RFC 6749 2.3.1: both are form-urlencoded before Basic.
                let unescape = |s: &str| {
                    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
                        .ok()
                        .and_then(|mut v| v.pop())
                        .map(|(_, v)| v)
                        .unwrap_or_else(|| s.to_owned())
                };
                Ok((Some(unescape(id)), unescape(secret)))
            }
            _ => Ok((None, bearer(req)?.to_owned())),
        },
        (None, Some(id), Some(secret)) => Ok((Some(id.clone()), secret.clone())),
        (None, _, _) => Err(ApiError::InvalidToken(
            "a service credential is required: HTTP Basic (service id, token), \
             client_id and client_secret in the form, or Bearer"
                .into(),
        )),
    }
}

/// An RFC 7662 answer: `active` alone when the token is not good.
#[derive(Serialize, ToSchema, Default)]
pub struct Introspection {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    /// RFC 9449: the DPoP key's thumbprint `{jkt}` of a DPoP-bound token
    /// (the caller must then check a proof of that key).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    cnf: Option<serde_json::Value>,
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
#[utoipa::path(post, path = "/oauth/revoke", tag = "standards",
    request_body(content((TokenForm = "application/x-www-form-urlencoded"), (TokenForm = "application/json"))),
    responses((status = 200, description = "Revoked, or was never good")))]
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
    recall.auth().revoke_token(&form.token, &meta).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `POST /oauth/introspect` (RFC 7662; a service credential or admin).
#[utoipa::path(post, path = "/oauth/introspect", tag = "standards",
    request_body(content((TokenForm = "application/x-www-form-urlencoded"), (TokenForm = "application/json"))),
    responses((status = 200, description = "Whether the token is good now", body = Introspection)),
    security(("service" = []), ("admin" = [])))]
pub async fn introspect(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    // A valid service credential is not a client address: it is never
    // counted against the per-address limit. Any failure is (a bad body,
    // a bad credential), so the endpoint is no way round the limit.
    let authorized = async {
        let form = token_form(&req, &body.0)?;
        let (id, secret) = client_credential(&req, &form)?;
        recall
            .feed()
            .authorize_client(id.as_deref(), &secret)
            .await?;
        Ok::<_, ApiError>(form)
    };
    let form = match authorized.await {
        Ok(form) => form,
        Err(e) => {
            recall.rate_limit(client_addr(&req))?;
            return Err(e);
        }
    };
    let body = match recall.authenticate(&form.token) {
        Ok(p)
            if recall
                .check_network(
                    &p,
                    form.client_ip
                        .as_deref()
                        .and_then(|ip| ip.trim().parse().ok()),
                )
                .is_err() =>
        {
            Introspection::default()
        }
        Ok(p) => Introspection {
            active: true,
            iss: Some(p.claims().iss.clone()),
            aud: Some(p.claims().aud.clone()),
            jti: Some(p.claims().jti),
            sub: Some(p.user_id),
            sid: Some(p.session_id),
            exp: Some(p.claims().exp),
            iat: Some(p.claims().iat),
            client_type: Some(p.client_type().to_owned()),
            token_type: Some(if p.claims().cnf.is_some() {
                "DPoP"
            } else {
                "Bearer"
            }),
            cnf: p
                .claims()
                .cnf
                .as_ref()
                .map(|c| serde_json::json!({ "jkt": c.jkt })),
        },
        Err(e @ crate::error::Error::Unavailable(_)) => return Err(e.into()),
        Err(_) => Introspection::default(),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}
