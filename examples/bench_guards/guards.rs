//! The four guards the benchmark compares, each an actix extractor or
//! none around the same handler: `none`, `recall` (Recall's own
//! `Authenticated`), `naive` (jsonwebtoken then a Redis denylist) and
//! `stateful` (a PostgreSQL session row per request). Imports Recall's
//! HTTP and token types; the servers around the guards are `main`'s.

use std::cell::RefCell;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use recall::http::errors::ApiError;
use recall::http::extract::{bearer, Authenticated};
use recall::tokens::{Claims, Keyring};
use uuid::Uuid;

/// The handler every guard protects: 200 and the caller's user id.
fn ok(user: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain")
        .body(format!("ok {user}"))
}

pub(super) async fn open() -> HttpResponse {
    ok(&Uuid::nil().to_string())
}

pub(super) async fn recall_guarded(auth: Authenticated) -> HttpResponse {
    ok(&auth.principal.user_id.to_string())
}

pub(super) async fn naive_guarded(auth: Naive) -> HttpResponse {
    ok(&auth.0.to_string())
}

pub(super) async fn stateful_guarded(auth: Stateful) -> HttpResponse {
    ok(&auth.0)
}

// --- naive: verify the JWT, then ask Redis --------------------------------

pub(super) struct NaiveCtx {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
    redis: redis::Client,
}

/// A caller that passed `jsonwebtoken::decode` and the Redis denylist.
pub(super) struct Naive(Uuid);

thread_local! {
    // One multiplexed connection per actix worker, made on first use on
    // that worker's runtime (no cross-thread hop per request).
    static REDIS: RefCell<Option<redis::aio::MultiplexedConnection>> = const { RefCell::new(None) };
    static PG: RefCell<Option<deadpool_postgres::Pool>> = const { RefCell::new(None) };
}

async fn redis_conn(
    client: &redis::Client,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    if let Some(conn) = REDIS.with(|r| r.borrow().clone()) {
        return Ok(conn);
    }
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    REDIS.with(|r| *r.borrow_mut() = Some(conn.clone()));
    Ok(conn)
}

/// The naive guard's key and rules, as a team would set up jsonwebtoken.
pub(super) fn naive_ctx(keyring: &Keyring, kid: &str, redis: &str) -> anyhow::Result<NaiveCtx> {
    let public = keyring
        .public_key(kid)
        .ok_or_else(|| anyhow::anyhow!("no public key for {kid}"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&[keyring.issuer()]);
    validation.set_audience(&[keyring.audience()]);
    validation.leeway = recall::tokens::LEEWAY_SECS;
    validation.validate_nbf = true;
    Ok(NaiveCtx {
        key: jsonwebtoken::DecodingKey::from_ed_der(&public),
        validation,
        redis: redis::Client::open(redis)?,
    })
}

impl FromRequest for Naive {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let checked = req
            .app_data::<web::Data<NaiveCtx>>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("naive context missing".into()))
            .and_then(|ctx| {
                let token = bearer(req)?;
                let claims = jsonwebtoken::decode::<Claims>(token, &ctx.key, &ctx.validation)
                    .map_err(|e| ApiError::InvalidToken(e.to_string()))?
                    .claims;
                Ok((ctx, claims))
            });
        Box::pin(async move {
            let (ctx, claims) = checked?;
            let unavailable = |e: redis::RedisError| ApiError::Unavailable(e.to_string());
            let mut conn = redis_conn(&ctx.redis).await.map_err(unavailable)?;
            let revoked: i64 = redis::cmd("EXISTS")
                .arg(format!("denylist:{}", claims.jti))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if revoked != 0 {
                return Err(ApiError::InvalidToken("the token was revoked".into()));
            }
            Ok(Naive(claims.sub))
        })
    }
}

// --- stateful: a session row per request ------------------------------------

const SESSION_SQL: &str =
    "SELECT user_id FROM sessions WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2";

pub(super) struct PgCtx {
    pub(super) config: tokio_postgres::Config,
    pub(super) per_worker: usize,
}

/// A caller whose opaque session id names a live row.
pub(super) struct Stateful(String);

fn pg_pool(ctx: &PgCtx) -> Result<deadpool_postgres::Pool, ApiError> {
    if let Some(pool) = PG.with(|p| p.borrow().clone()) {
        return Ok(pool);
    }
    let manager = deadpool_postgres::Manager::from_config(
        ctx.config.clone(),
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(ctx.per_worker)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    PG.with(|p| *p.borrow_mut() = Some(pool.clone()));
    Ok(pool)
}

impl FromRequest for Stateful {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = req
            .app_data::<web::Data<PgCtx>>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("pg context missing".into()))
            .and_then(|ctx| Ok((pg_pool(&ctx)?, bearer(req)?.to_owned())));
        Box::pin(async move {
            let (pool, sid) = found?;
            let unavailable = |e: String| ApiError::Unavailable(e);
            let client = pool.get().await.map_err(|e| unavailable(e.to_string()))?;
            let stmt = client
                .prepare_cached(SESSION_SQL)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            let now = recall::clock::Timestamp::now().ms();
            let row = client
                .query_opt(&stmt, &[&sid, &now])
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            match row {
                Some(row) => Ok(Stateful(row.get(0))),
                None => Err(ApiError::InvalidToken("unknown or ended session".into())),
            }
        })
    }
}
