//! OAuth 2.0 integration: the refresh-token grant at `POST /oauth/token`
//! (RFC 6749 section 6, form-encoded, errors as section 5.2) and the
//! authorization-server metadata (RFC 8414), served at both
//! `/.well-known/oauth-authorization-server` and
//! `/.well-known/openid-configuration`.
//!
//! May import: what `http` may (its top comment).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::RawBody;
use super::errors::ApiError;
use super::extract::{client_addr, client_ip, dpop_input};
use crate::events::Meta;
use crate::service::{Recall, TokenResponse};

/// An RFC 6749 token request (form-encoded).
#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    /// Only `refresh_token` is supported.
    #[schema(pattern = "^refresh_token$")]
    grant_type: String,
    /// Required by the refresh_token grant.
    #[schema(required = true, value_type = String, min_length = 1)]
    refresh_token: Option<String>,
    /// Ignored: the refresh token carries its scope (none).
    #[allow(dead_code)]
    scope: Option<String>,
}

/// An RFC 6749 section 5.2 error.
#[derive(Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_grant`, `unsupported_grant_type`,
    /// `temporarily_unavailable`.
    error: &'static str,
    error_description: String,
}

fn oauth_error(status: StatusCode, error: &'static str, description: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(OAuthError {
            error,
            error_description: description,
        })
}

/// RFC 6749 wording of Recall's refusals.
fn oauth_refusal(e: ApiError) -> HttpResponse {
    let text = e.to_string();
    match e {
        ApiError::InvalidGrant(_) | ApiError::AccountLocked { .. } => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", text)
        }
        ApiError::InvalidRequest(_) | ApiError::PayloadTooLarge => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", text)
        }
        ApiError::Unavailable(_) => {
            let mut res = oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                text,
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            res
        }
        // 429 and 500 keep Recall's own answer.
        other => actix_web::ResponseError::error_response(&other),
    }
}

/// `POST /oauth/token`
#[utoipa::path(post, path = "/oauth/token", tag = "standards",
    request_body(content((TokenRequest = "application/x-www-form-urlencoded"))),
    responses((status = 200, description = "The rotated pair (RFC 6749 section 5.1)", body = TokenResponse),
        (status = 400, description = "RFC 6749 section 5.2", body = OAuthError),
        (status = 413, description = "The body is over 64 KiB", body = OAuthError),
        (status = 503, description = "temporarily_unavailable", body = OAuthError)))]
pub async fn token(req: HttpRequest, recall: web::Data<Recall>, body: RawBody) -> HttpResponse {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected Content-Type: application/x-www-form-urlencoded".into(),
        );
    }
    let request: TokenRequest = match serde_urlencoded::from_bytes(&body.0) {
        Ok(r) => r,
        Err(e) => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", e.to_string());
        }
    };
    if request.grant_type != "refresh_token" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=refresh_token is supported".into(),
        );
    }
    let Some(refresh_token) = request.refresh_token.filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is required".into(),
        );
    };
    let meta = Meta {
        actor: None,
        ip: client_ip(&req),
    };
    let input = crate::service::RefreshInput {
        refresh_token,
        ip: client_addr(&req),
        dpop: dpop_input(&req, &recall, false),
    };
    match recall.auth().refresh(input, &meta).await {
        Ok(answer) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(answer),
        Err(e) => oauth_refusal(ApiError::from(e)),
    }
}

/// RFC 8414 authorization-server metadata (also served as OpenID
/// configuration). Recall adds its own `recall_*` fields for verifiers.
#[derive(Serialize, ToSchema)]
pub struct Metadata {
    issuer: String,
    jwks_uri: String,
    token_endpoint: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    grant_types_supported: Vec<&'static str>,
    /// DPoP proof algorithms accepted (RFC 9449 section 5.1).
    dpop_signing_alg_values_supported: Vec<&'static str>,
    response_types_supported: Vec<&'static str>,
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    subject_types_supported: Vec<&'static str>,
    id_token_signing_alg_values_supported: Vec<&'static str>,
    token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    /// Every issuer whose tokens still verify (the current one first).
    recall_accepted_issuers: Vec<String>,
    /// The `aud` of Recall's access tokens.
    recall_audience: String,
    /// The revocation feed verifiers follow.
    recall_revocations_endpoint: String,
    recall_revocations_stream: String,
}

/// `GET /.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "standards",
    responses((status = 200, description = "RFC 8414 metadata (also at /.well-known/openid-configuration)", body = Metadata)))]
pub async fn metadata(recall: web::Data<Recall>) -> HttpResponse {
    let s = recall.settings();
    let url = |path: &str| format!("{}{path}", s.public_url);
    let accepted = recall.accepted_issuers();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(Metadata {
            issuer: s.issuer.clone(),
            jwks_uri: url("/.well-known/jwks.json"),
            token_endpoint: url("/oauth/token"),
            revocation_endpoint: url("/oauth/revoke"),
            introspection_endpoint: url("/oauth/introspect"),
            grant_types_supported: vec!["refresh_token"],
            dpop_signing_alg_values_supported: recall_verifier::dpop::ALGS.to_vec(),
            response_types_supported: vec![],
            token_endpoint_auth_methods_supported: vec!["none"],
            revocation_endpoint_auth_methods_supported: vec!["none"],
            // RFC 8414 registry values; a Bearer service token works too.
            introspection_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
            ],
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: vec!["EdDSA"],
            token_endpoint_auth_signing_alg_values_supported: vec!["EdDSA"],
            recall_accepted_issuers: accepted,
            recall_audience: s.audience.clone(),
            recall_revocations_endpoint: url("/v1/revocations"),
            recall_revocations_stream: url("/v1/revocations/stream"),
        })
}

/// `GET /.well-known/openid-configuration`: the same document.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "standards",
    responses((status = 200, description = "The same document as /.well-known/oauth-authorization-server", body = Metadata)))]
pub async fn openid_configuration(recall: web::Data<Recall>) -> HttpResponse {
    metadata(recall).await
}

/// RFC 9728 protected-resource metadata: the audience Recall's access
/// tokens are for (`resource`), who issues them, and how they are sent.
#[derive(Serialize, ToSchema)]
pub struct ResourceMetadata {
    /// The audience (`aud`) of Recall's access tokens.
    resource: String,
    /// The issuer now and every issuer whose tokens still verify.
    authorization_servers: Vec<String>,
    jwks_uri: String,
    bearer_methods_supported: Vec<&'static str>,
    dpop_signing_alg_values_supported: Vec<&'static str>,
    /// Some client types' policies may require DPoP; not every token.
    dpop_bound_access_tokens_required: bool,
}

/// `GET /.well-known/oauth-protected-resource` (RFC 9728).
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource", tag = "standards",
    responses((status = 200, description = "The tokens' audience, issuers and how to send them", body = ResourceMetadata)))]
pub async fn resource_metadata(recall: web::Data<Recall>) -> HttpResponse {
    let s = recall.settings();
    let mut issuers = vec![s.issuer.clone()];
    issuers.extend(
        recall
            .accepted_issuers()
            .into_iter()
            .filter(|i| *i != s.issuer),
    );
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(ResourceMetadata {
            resource: s.audience.clone(),
            authorization_servers: issuers,
            jwks_uri: format!("{}/.well-known/jwks.json", s.public_url),
            bearer_methods_supported: vec!["header"],
            dpop_signing_alg_values_supported: recall_verifier::dpop::ALGS.to_vec(),
            dpop_bound_access_tokens_required: false,
        })
}
