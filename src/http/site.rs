//! The browser side: the pages (`/`, `/account`, `/admin`), their embedded
//! assets, and the three cookie routes behind them.
//!
//! In a browser the refresh token lives only in an HttpOnly, Secure,
//! SameSite=Strict `__Host-` cookie that page script never sees; the page
//! holds its access token in memory and renews it through `/web/refresh`.
//! A request the cookie authenticates must come from Recall's own origin
//! (the origin of `RECALL_PUBLIC_URL`): any other `Origin`, or none, is 403.
//! Every page is sent with a strict Content-Security-Policy: scripts and
//! styles only from Recall itself, nothing inline, no framing.
//!
//! May import: what `http` may (its top comment).

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::JsonBody;
use super::errors::ApiError;
use super::extract::{client_addr, client_ip};
use super::pages;
use super::users::user_agent;
use crate::events::Meta;
use crate::service::{ClientType, LoginInput, Recall, RefreshInput, TokenResponse};

/// The refresh cookie. `__Host-`: Secure, Path=/, no Domain, so no other
/// host (not even a subdomain) can set or shadow it.
pub const REFRESH_COOKIE: &str = "__Host-recall_refresh";

/// The Content-Security-Policy of every page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

/// The origin (`scheme://host[:port]`) of a URL.
pub fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Refuses a cookie-authenticated request that does not come from Recall's
/// own origin.
fn same_origin(recall: &Recall, req: &HttpRequest) -> Result<(), ApiError> {
    let own = origin_of(&recall.settings().public_url);
    match req
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("(not text)"))
    {
        Some(origin) if origin == own => Ok(()),
        Some(origin) => Err(ApiError::Forbidden(format!(
            "a request from origin {origin} may not use Recall's session cookie; \
             only {own} may"
        ))),
        None => Err(ApiError::Forbidden(format!(
            "an Origin header is required: only {own} may use Recall's session cookie"
        ))),
    }
}

fn refresh_cookie(value: String, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build(REFRESH_COOKIE, value)
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(time::Duration::seconds(max_age_secs.max(0)))
        .finish()
}

/// A page's answer to login and refresh: the access token only (the
/// refresh token goes into the cookie).
#[derive(Serialize)]
struct WebToken {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    session_id: Uuid,
}

fn token_answer(t: TokenResponse) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(refresh_cookie(t.refresh_token, t.refresh_expires_in))
        .json(WebToken {
            access_token: t.access_token,
            token_type: t.token_type,
            expires_in: t.expires_in,
            session_id: t.session_id,
        })
}

/// A web login.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebLogin {
    username: String,
    password: String,
}

/// `POST /web/login`: logs in as a `web` session and sets the cookie.
pub async fn login(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: JsonBody<WebLogin>,
) -> Result<HttpResponse, ApiError> {
    same_origin(&recall, &req)?;
    let input = LoginInput {
        username: body.0.username,
        password: body.0.password,
        client_type: ClientType::Web,
        device_id: None,
        user_agent: user_agent(&req),
        ip: client_addr(&req),
        dpop: Default::default(),
    };
    let meta = Meta {
        actor: None,
        ip: client_ip(&req),
    };
    Ok(token_answer(recall.auth().login(input, &meta).await?))
}

fn cookie_value(req: &HttpRequest) -> Option<String> {
    req.cookie(REFRESH_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// `POST /web/refresh`: rotates the cookie's refresh token and answers a
/// new access token. A dead session clears the cookie.
pub async fn refresh(
    req: HttpRequest,
    recall: web::Data<Recall>,
) -> Result<HttpResponse, ApiError> {
    same_origin(&recall, &req)?;
    let token = cookie_value(&req)
        .ok_or_else(|| ApiError::InvalidGrant("no session cookie: log in".into()))?;
    let meta = Meta {
        actor: None,
        ip: client_ip(&req),
    };
    let input = RefreshInput {
        refresh_token: token,
        ip: client_addr(&req),
        dpop: Default::default(),
    };
    match recall.auth().refresh(input, &meta).await {
        Ok(t) => Ok(token_answer(t)),
        Err(e) => {
            let e = ApiError::from(e);
            let mut res = actix_web::ResponseError::error_response(&e);
            if !matches!(e, ApiError::RateLimited { .. } | ApiError::Unavailable(_)) {
                let _ = res.add_removal_cookie(&refresh_cookie(String::new(), 0));
            }
            Ok(res)
        }
    }
}

/// `POST /web/logout`: ends the cookie's session (if any) and clears it.
pub async fn logout(req: HttpRequest, recall: web::Data<Recall>) -> Result<HttpResponse, ApiError> {
    same_origin(&recall, &req)?;
    if let Some(token) = cookie_value(&req) {
        let meta = Meta {
            actor: Some("web".into()),
            ip: client_ip(&req),
        };
        recall.auth().revoke_token(&token, &meta).await?;
    }
    let mut res = HttpResponse::NoContent().finish();
    let _ = res.add_removal_cookie(&refresh_cookie(String::new(), 0));
    Ok(res)
}

fn page(markup: maud::Markup) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(markup.into_string())
}

/// `GET /`: log in, and register while registration is open.
pub async fn index(recall: web::Data<Recall>) -> HttpResponse {
    page(pages::login(recall.settings().open_registration))
}

/// `GET /account`
pub async fn account() -> HttpResponse {
    page(pages::account())
}

/// `GET /admin`
pub async fn admin() -> HttpResponse {
    page(pages::admin())
}

/// `GET /assets/{name}`: the embedded scripts and style sheet.
pub async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (body, kind) =
        pages::asset(&name).ok_or_else(|| ApiError::NotFound("no such asset".into()))?;
    Ok(HttpResponse::Ok()
        .content_type(kind)
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn the_origin_of_a_url_is_its_scheme_host_and_port() {
        assert_eq!(origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(
            origin_of("https://auth.example.com/recall/"),
            "https://auth.example.com"
        );
        assert_eq!(origin_of("https://a.example"), "https://a.example");
    }
}
