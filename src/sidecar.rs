//! `recall verifier`: the verifier crate as a process. It serves forward
//! auth on localhost (`GET /v1/auth/verify`, as Recall does), so an API in
//! any language joins the fleet through nginx `auth_request` or Traefik
//! ForwardAuth. It holds no database, no Redis and no master key: public
//! keys from Recall's JWKS, revocations from Recall's feed.

use std::path::PathBuf;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use recall_verifier::actix::Authenticated;
use recall_verifier::{Config, Verifier};

/// `recall verifier ...`
#[derive(Debug, clap::Args)]
pub struct VerifierArgs {
    /// A Recall base URL; repeat (or comma-separate) for failover.
    #[arg(
        long = "upstream",
        env = "RECALL_VERIFIER_UPSTREAM",
        value_delimiter = ',',
        required = true
    )]
    pub upstreams: Vec<String>,
    /// A service credential (`recall admin create-service`).
    #[arg(long, env = "RECALL_VERIFIER_SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: Option<String>,
    /// A file holding the service credential.
    #[arg(long, env = "RECALL_VERIFIER_SERVICE_TOKEN_FILE")]
    pub service_token_file: Option<PathBuf>,
}

/// Where the sidecar listens unless `--bind` (RECALL_BIND) says otherwise.
pub const DEFAULT_SIDECAR_BIND: &str = "127.0.0.1:9090";

impl VerifierArgs {
    fn token(&self) -> anyhow::Result<String> {
        match (&self.service_token, &self.service_token_file) {
            (Some(t), None) => Ok(t.trim().to_owned()),
            (None, Some(path)) => Ok(std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("RECALL_VERIFIER_SERVICE_TOKEN_FILE {}: {e}", path.display()))?
                .trim()
                .to_owned()),
            (Some(_), Some(_)) => anyhow::bail!(
                "set RECALL_VERIFIER_SERVICE_TOKEN or RECALL_VERIFIER_SERVICE_TOKEN_FILE, not both"
            ),
            (None, None) => anyhow::bail!(
                "a service credential is required: --service-token (RECALL_VERIFIER_SERVICE_TOKEN) \
                 or RECALL_VERIFIER_SERVICE_TOKEN_FILE; make one with `recall admin create-service NAME`"
            ),
        }
    }
}

async fn verify(user: Authenticated) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("X-User-Id", user.0.user_id.to_string()))
        .insert_header(("X-Session-Id", user.0.session_id.to_string()))
        .finish()
}

async fn readyz(v: web::Data<Verifier>) -> HttpResponse {
    let body = serde_json::json!({
        "ready": v.is_fresh(),
        "cursor": v.cursor(),
        "staleness_ms": v.staleness_ms(),
        "upstream": v.upstream(),
    });
    if v.is_fresh() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(v: web::Data<Verifier>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(v.metrics_text())
}

/// Runs the sidecar until stopped: `bind` (`--bind`, default
/// 127.0.0.1:9090) and the staleness bound (`--max-staleness-ms`) are the
/// same flags as `recall serve`'s.
pub async fn run(
    args: VerifierArgs,
    bind: Option<String>,
    max_staleness_ms: i64,
) -> anyhow::Result<()> {
    let bind = bind.unwrap_or_else(|| DEFAULT_SIDECAR_BIND.to_owned());
    let mut config = Config::new(args.upstreams.clone(), args.token()?);
    config.max_staleness = Duration::from_millis(max_staleness_ms.max(1) as u64);
    let verifier = Verifier::new(config)?;
    let follower = verifier.start();
    let data = web::Data::new(verifier);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/v1/auth/verify", web::get().to(verify))
            .route("/readyz", web::get().to(readyz))
            .route(
                "/healthz",
                web::get()
                    .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
            )
            .route("/metrics", web::get().to(metrics))
    })
    .workers(2)
    .bind(&bind)
    .map_err(|e| anyhow::anyhow!("RECALL_BIND {bind}: {e}"))?;
    let port = server.addrs().first().map_or(0, |a| a.port());
    tracing::info!(%bind, port, upstreams = ?args.upstreams, "recall verifier serving forward auth");
    // Tests and scripts read the port from this line when binding port 0.
    println!("recall verifier listening on port {port}");
    server.run().await?;
    follower.abort();
    Ok(())
}
