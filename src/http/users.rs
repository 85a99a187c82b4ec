//! Users and sessions: registration, login, refresh, logout, password,
//! `/v1/me`, the session list, and forward auth.
//!
//! May import: what `http` may (its top comment).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::JsonBody;
use super::errors::ErrorBody;
use super::extract::{
    bearer, client_addr, client_ip, dpop_input, path_id, resolve_admin, Authenticated,
    ForwardAuthenticated,
};
use super::reply::{created, no_content, no_store, ok, Reply};
use crate::events::Meta;
use crate::service::{
    ClientType, DeviceId, LoginInput, Recall, RefreshInput, SessionView, TokenResponse, UserAgent,
};

/// A new account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// 3 to 64 characters of `a-z 0-9 . _ -` (compared lowercased).
    #[schema(pattern = r"^[A-Za-z0-9._-]{3,64}$")]
    username: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

/// A registered user.
#[derive(Serialize, ToSchema)]
pub struct Registered {
    user_id: Uuid,
    username: String,
}

/// Username and password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
    /// Default `web`.
    #[schema(value_type = Option<ClientType>)]
    client_type: Option<String>,
    /// The client's own name for the device, at most 256 characters.
    #[schema(max_length = 256)]
    device_id: Option<String>,
}

/// A refresh token to rotate.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    refresh_token: String,
}

/// A password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    current_password: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    new_password: String,
}

/// The caller of `GET /v1/me`.
#[derive(Serialize, ToSchema)]
pub struct Me {
    user_id: Uuid,
    username: String,
    session_id: Uuid,
    #[schema(value_type = ClientType)]
    client_type: String,
}

/// One live session.
#[derive(Serialize, ToSchema)]
pub struct SessionItem {
    session_id: Uuid,
    #[schema(value_type = ClientType)]
    client_type: String,
    ip: Option<String>,
    user_agent: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    last_used_at: String,
    #[schema(format = DateTime)]
    expires_at: String,
    /// The session of the token that asked.
    current: bool,
    /// What its tokens are bound to: `none`, `network`, `address` or `dpop`.
    binding: &'static str,
}

/// Live sessions, newest first.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    sessions: Vec<SessionItem>,
}

#[utoipa::path(post, path = "/v1/users", tag = "users",
    description = "Open while RECALL_OPEN_REGISTRATION is true; otherwise admin only.",
    request_body = RegisterBody,
    responses((status = 201, description = "Registered", body = Registered),
        (status = 409, description = "That username is taken", body = ErrorBody)),
    security((), ("admin" = [])))]
/// `POST /v1/users`
pub async fn register(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: JsonBody<RegisterBody>,
) -> Reply {
    let meta = if recall.settings().open_registration {
        Meta {
            actor: Some("anonymous".into()),
            ip: client_ip(&req),
        }
    } else {
        let token = bearer(&req)?;
        resolve_admin(&recall, token, client_ip(&req)).await?.meta
    };
    let body = body.0;
    let (user_id, username) = recall
        .auth()
        .register(&body.username, body.password, &meta)
        .await?;
    created(Registered { user_id, username })
}

/// The request's User-Agent, as a session records it.
pub(super) fn user_agent(req: &HttpRequest) -> Option<UserAgent> {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(UserAgent::new)
}

#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, description = "A new session", body = TokenResponse,
        headers(("Cache-Control" = String, description = "no-store")))))]
/// `POST /v1/auth/login`
pub async fn login(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: JsonBody<LoginBody>,
) -> Reply {
    let body = body.0;
    let input = LoginInput {
        username: body.username,
        password: body.password,
        client_type: ClientType::parse(body.client_type.as_deref())?,
        device_id: body.device_id.map(DeviceId::parse).transpose()?,
        user_agent: user_agent(&req),
        ip: client_addr(&req),
        dpop: dpop_input(&req, &recall, false),
    };
    let meta = Meta {
        actor: None,
        ip: client_ip(&req),
    };
    Ok(no_store(recall.auth().login(input, &meta).await?))
}

#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses((status = 200, description = "The rotated pair", body = TokenResponse,
        headers(("Cache-Control" = String, description = "no-store")))))]
/// `POST /v1/auth/refresh`
pub async fn refresh(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: JsonBody<RefreshBody>,
) -> Reply {
    let meta = Meta {
        actor: None,
        ip: client_ip(&req),
    };
    let input = RefreshInput {
        refresh_token: body.0.refresh_token,
        ip: client_addr(&req),
        dpop: dpop_input(&req, &recall, false),
    };
    Ok(no_store(recall.auth().refresh(input, &meta).await?))
}

#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "This session ended")), security(("user" = [])))]
/// `POST /v1/auth/logout`
pub async fn logout(auth: Authenticated) -> Reply {
    auth.recall
        .auth()
        .logout(&auth.principal, &auth.meta())
        .await?;
    no_content()
}

#[utoipa::path(post, path = "/v1/auth/logout-all", tag = "auth",
    responses((status = 204, description = "Every session of the user ended")), security(("user" = [])))]
/// `POST /v1/auth/logout-all`
pub async fn logout_all(auth: Authenticated) -> Reply {
    auth.recall
        .auth()
        .logout_all(&auth.principal, &auth.meta())
        .await?;
    no_content()
}

#[utoipa::path(post, path = "/v1/auth/logout-others", tag = "auth",
    responses((status = 204, description = "Every other session of the user ended")), security(("user" = [])))]
/// `POST /v1/auth/logout-others`
pub async fn logout_others(auth: Authenticated) -> Reply {
    auth.recall
        .auth()
        .logout_others(&auth.principal, &auth.meta())
        .await?;
    no_content()
}

#[utoipa::path(post, path = "/v1/auth/password", tag = "auth", request_body = PasswordBody,
    responses((status = 204, description = "Changed; every other session ended")),
    security(("user" = [])))]
/// `POST /v1/auth/password`
pub async fn password(auth: Authenticated, body: JsonBody<PasswordBody>) -> Reply {
    let body = body.0;
    auth.recall
        .auth()
        .change_password(
            &auth.principal,
            body.current_password,
            body.new_password,
            &auth.meta(),
        )
        .await?;
    no_content()
}

#[utoipa::path(get, path = "/v1/me", tag = "users",
    responses((status = 200, description = "The caller", body = Me)), security(("user" = [])))]
/// `GET /v1/me`
pub async fn me(auth: Authenticated) -> Reply {
    let username = auth.recall.auth().username(&auth.principal).await?;
    let p = auth.principal;
    ok(Me {
        user_id: p.user_id,
        username,
        session_id: p.session_id,
        client_type: p.client_type().to_owned(),
    })
}

/// One session as `GET /v1/sessions` lists it.
pub fn session_list(list: &[SessionView], current: Option<Uuid>) -> SessionList {
    let item = |v: &SessionView| {
        let s = &v.session;
        SessionItem {
            session_id: s.id,
            client_type: s.client_type.clone(),
            ip: s.ip.clone(),
            user_agent: s.user_agent.clone(),
            created_at: s.created_at.rfc3339(),
            last_used_at: v.last_used_at.rfc3339(),
            expires_at: v.expires_at.rfc3339(),
            current: Some(s.id) == current,
            binding: s.terms.binding_name(),
        }
    };
    SessionList {
        sessions: list.iter().map(item).collect(),
    }
}

#[utoipa::path(get, path = "/v1/sessions", tag = "sessions",
    responses((status = 200, description = "The caller's live sessions", body = SessionList)),
    security(("user" = [])))]
/// `GET /v1/sessions`
pub async fn sessions(auth: Authenticated) -> Reply {
    let list = auth.recall.auth().sessions(&auth.principal).await?;
    ok(session_list(&list, Some(auth.principal.session_id)))
}

#[utoipa::path(delete, path = "/v1/sessions/{session_id}", tag = "sessions",
    params(("session_id" = Uuid, Path, description = "One of the caller's sessions")),
    responses((status = 204, description = "Ended (or already ended)")),
    security(("user" = [])))]
/// `DELETE /v1/sessions/{session_id}`: only the caller's own sessions.
pub async fn delete_session(auth: Authenticated, path: web::Path<String>) -> Reply {
    let session = path_id(&path, "session")?;
    let users = auth.recall.auth();
    users
        .end_own_session(&auth.principal, session, &auth.meta())
        .await?;
    no_content()
}

#[utoipa::path(get, path = "/v1/auth/verify", tag = "auth",
    responses((status = 204, description = "The token is good", headers(
        ("X-User-Id" = Uuid, description = "The token's user"),
        ("X-Session-Id" = Uuid, description = "The token's session")))),
    security(("user" = [])))]
/// `GET /v1/auth/verify`: forward auth for nginx `auth_request` / Traefik.
pub async fn verify(auth: ForwardAuthenticated) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("X-User-Id", auth.0.user_id.to_string()))
        .insert_header(("X-Session-Id", auth.0.session_id.to_string()))
        .finish()
}
