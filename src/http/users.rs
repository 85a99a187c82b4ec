//! Users and sessions: registration, login, refresh, logout, password,
//! `/v1/me`, the session list, and forward auth.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::body::JsonBody;
use super::errors::ApiError;
use super::extract::{bearer, client_ip, resolve_admin, Authenticated};
use super::rfc3339;
use crate::events::{Meta, RevokeCause};
use crate::service::{LoginInput, Recall, SessionView};
use crate::store::SessionEnd;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
    client_type: Option<String>,
    device_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    refresh_token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// `POST /v1/users`
pub async fn register(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: JsonBody<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    let meta = if recall.settings().open_registration {
        Meta {
            actor: Some("anonymous".into()),
            ip: client_ip(&req),
        }
    } else {
        let token = bearer(&req)?;
        resolve_admin(&recall, token).await?.meta(&req)
    };
    let body = body.0;
    let (user_id, username) = recall
        .register(&body.username, body.password, &[], &meta)
        .await?;
    Ok(HttpResponse::Created().json(json!({ "user_id": user_id, "username": username })))
}

fn user_agent(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn no_store(body: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// `POST /v1/auth/login`
pub async fn login(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: JsonBody<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let input = LoginInput {
        username: body.username,
        password: body.password,
        client_type: body.client_type,
        device_id: body.device_id,
        user_agent: user_agent(&req),
    };
    let meta = Meta {
        actor: None,
        ip: client_ip(&req),
    };
    Ok(no_store(recall.login(input, &meta).await?))
}

/// `POST /v1/auth/refresh`
pub async fn refresh(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: JsonBody<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let meta = Meta {
        actor: None,
        ip: client_ip(&req),
    };
    Ok(no_store(
        recall.refresh(&body.0.refresh_token, &meta).await?,
    ))
}

/// `POST /v1/auth/logout`
pub async fn logout(
    req: HttpRequest,
    recall: web::Data<Recall>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    recall.logout(&auth.0, &auth.meta(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/auth/logout-all`
pub async fn logout_all(
    req: HttpRequest,
    recall: web::Data<Recall>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    recall
        .end_all_sessions(auth.0.user_id, RevokeCause::User, None, &auth.meta(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/auth/logout-others`
pub async fn logout_others(
    req: HttpRequest,
    recall: web::Data<Recall>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    recall.logout_others(&auth.0, &auth.meta(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/auth/password`
pub async fn password(
    req: HttpRequest,
    recall: web::Data<Recall>,
    auth: Authenticated,
    body: JsonBody<PasswordBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    recall
        .change_password(
            &auth.0,
            body.current_password,
            body.new_password,
            &auth.meta(&req),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/me`
pub async fn me(recall: web::Data<Recall>, auth: Authenticated) -> Result<HttpResponse, ApiError> {
    let p = auth.0;
    let user = recall
        .user(p.user_id)
        .await?
        .ok_or_else(|| ApiError::InvalidToken("unknown user".into()))?;
    Ok(HttpResponse::Ok().json(json!({
        "user_id": p.user_id,
        "username": user.username,
        "session_id": p.session_id,
        "client_type": p.client_type(),
    })))
}

/// One session as `GET /v1/sessions` lists it.
pub fn session_json(v: &SessionView, current: Option<Uuid>) -> serde_json::Value {
    let s = &v.session;
    json!({
        "session_id": s.id,
        "client_type": s.client_type,
        "ip": s.ip,
        "user_agent": s.user_agent,
        "created_at": rfc3339(s.created_at),
        "last_used_at": rfc3339(v.last_used_at),
        "expires_at": rfc3339(v.expires_at),
        "current": Some(s.id) == current,
    })
}

/// `GET /v1/sessions`
pub async fn sessions(
    recall: web::Data<Recall>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let p = auth.0;
    let list = recall.live_sessions(p.user_id).await?;
    let sessions: Vec<_> = list
        .iter()
        .map(|v| session_json(v, Some(p.session_id)))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "sessions": sessions })))
}

/// `DELETE /v1/sessions/{session_id}`: only the caller's own sessions.
pub async fn delete_session(
    req: HttpRequest,
    recall: web::Data<Recall>,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(&path).map_err(|_| ApiError::NotFound("no such session".into()))?;
    let how = SessionEnd::Revoked {
        cause: RevokeCause::User,
        reason: None,
    };
    recall
        .end_session(id, Some(auth.0.user_id), how, &auth.meta(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/auth/verify`: forward auth for nginx `auth_request` / Traefik.
pub async fn verify(auth: Authenticated) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("X-User-Id", auth.0.user_id.to_string()))
        .insert_header(("X-Session-Id", auth.0.session_id.to_string()))
        .finish()
}
