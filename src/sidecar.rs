//! `recall verifier`: the verifier crate as a process. It serves forward
//! auth on localhost (`GET /v1/auth/verify`, as Recall does), so an API in
//! any language joins the fleet through nginx `auth_request` or Traefik
//! ForwardAuth. It holds no database, no Redis and no master key: public
//! keys from Recall's JWKS, revocations from Recall's feed.
//!
//! Bound tokens are checked against the original request: its method and
//! URI from `X-Original-Method` and `X-Original-URI` (an absolute URI as
//! it is, a path after `--public-url`) for a DPoP proof, its client
//! address from `X-Forwarded-For` through `--trusted-proxies` for a
//! network binding.
//!
//! May import: the verifier crate (nothing of Recall's own modules). The
//! layers: docs/DESIGN.md, "Parts".

use std::path::PathBuf;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::{
    web, App, FromRequest, Handler, HttpRequest, HttpResponse, HttpServer, Resource, Responder,
};
use recall_verifier::{Config, Verifier, VerifyError};

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
    /// The address clients reach the protected API at
    /// (`https://api.example.com`): a DPoP proof's `htu` is this and the
    /// original request's path. Unset: DPoP-bound tokens are refused unless
    /// X-Original-URI is an absolute URI. (Shares its name with the global
    /// flag: RECALL_PUBLIC_URL is read when RECALL_VERIFIER_PUBLIC_URL is
    /// unset.)
    #[arg(long, env = "RECALL_VERIFIER_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// CIDRs or addresses whose `X-Forwarded-For` is believed: the client
    /// address is the rightmost entry not in them (RECALL_TRUSTED_PROXIES
    /// is read when RECALL_VERIFIER_TRUSTED_PROXIES is unset).
    #[arg(
        long,
        env = "RECALL_VERIFIER_TRUSTED_PROXIES",
        default_value = "127.0.0.0/8,::1"
    )]
    pub trusted_proxies: String,
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

    /// The verifier's configuration: upstreams, credential, bound-token
    /// settings (the staleness bound is the caller's).
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::new(self.upstreams.clone(), self.token()?);
        config.trusted_proxies =
            recall_verifier::request::parse_trusted_proxies(&self.trusted_proxies)
                .map_err(|e| anyhow::anyhow!("RECALL_VERIFIER_TRUSTED_PROXIES: {e}"))?;
        config.public_url = match self.public_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                Some(url.trim_end_matches('/').to_owned())
            }
            Some(url) => anyhow::bail!(
                "RECALL_VERIFIER_PUBLIC_URL: {url:?} is not an http:// or https:// URL"
            ),
        };
        Ok(config)
    }
}

/// Forward auth: the token of the original request, whose method and URI
/// come from `X-Original-Method` / `X-Original-URI` and whose client
/// address from `X-Forwarded-For` (through the trusted proxies).
async fn verify(req: HttpRequest, v: web::Data<Verifier>) -> Result<HttpResponse, VerifyError> {
    let user = recall_verifier::actix::verify_request(&req, &v, true).await?;
    Ok(HttpResponse::NoContent()
        .insert_header(("X-User-Id", user.user_id.to_string()))
        .insert_header(("X-Session-Id", user.session_id.to_string()))
        .finish())
}

/// `POST /oauth/introspect` (RFC 7662) from the sidecar's own state: the
/// same answer as Recall's for tokens it can judge, `{active: false}` for
/// the rest, 503 when stale (fail closed). Form-encoded or JSON `token`;
/// the sidecar listens on localhost for the API beside it, so it asks for
/// no client credential (any sent is ignored): it tells a caller only
/// about a token the caller holds.
async fn introspect(
    req: HttpRequest,
    v: web::Data<Verifier>,
    body: web::Bytes,
) -> Result<HttpResponse, VerifyError> {
    #[derive(serde::Deserialize)]
    struct Form {
        token: String,
        /// The client's address, for network-bound tokens.
        #[serde(default)]
        client_ip: Option<String>,
    }
    let is_json = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let form: Result<Form, String> = if is_json {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes(&body).map_err(|e| e.to_string())
    };
    let form = match form {
        Ok(f) => f,
        Err(e) => {
            return Ok(HttpResponse::BadRequest().json(serde_json::json!({
                "error": "invalid_request",
                "error_description": format!("token: {e}"),
            })))
        }
    };
    let answer = match v
        .introspect(
            &form.token,
            form.client_ip
                .as_deref()
                .and_then(|ip| ip.trim().parse().ok()),
        )
        .await?
    {
        None => serde_json::json!({ "active": false }),
        Some(p) => {
            let c = &p.verified.0;
            let mut a = serde_json::json!({
                "active": true, "iss": c.iss, "aud": c.aud, "sub": c.sub, "sid": c.sid,
                "jti": c.jti, "exp": c.exp, "iat": c.iat, "client_type": c.ctype,
                "token_type": if c.cnf.is_some() { "DPoP" } else { "Bearer" },
            });
            if let Some(cnf) = &c.cnf {
                a["cnf"] = serde_json::json!({ "jkt": cnf.jkt });
            }
            a
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(answer))
}

/// 405 with `Allow`, as Recall answers a method a route does not serve.
fn only(method: &str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header(("Allow", method))
        .json(serde_json::json!({
            "error": "method_not_allowed",
            "error_description": format!("this route answers {method} only"),
        }))
}

/// A resource that serves one `method` with `handler`; any other gets
/// `only`'s 405.
fn one<F, Args>(path: &str, method: Method, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let allow = method.as_str().to_owned();
    web::resource(path)
        .route(web::method(method).to(handler))
        .default_service(web::to(move || {
            let allow = allow.clone();
            async move { only(&allow) }
        }))
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
    let mut config = args.config()?;
    if config.public_url.is_none() {
        tracing::warn!("no --public-url (RECALL_VERIFIER_PUBLIC_URL): DPoP-bound tokens are refused unless X-Original-URI is absolute");
    }
    config.max_staleness = Duration::from_millis(max_staleness_ms.max(1) as u64);
    let public_url = config.public_url.clone();
    let verifier = Verifier::new(config)?;
    let follower = verifier.start();
    let data = web::Data::new(verifier);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(64 * 1024))
            .service(one("/v1/auth/verify", Method::GET, verify))
            .service(one("/oauth/introspect", Method::POST, introspect))
            .service(one("/readyz", Method::GET, readyz))
            .service(one("/healthz", Method::GET, || async {
                HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
            }))
            .service(one("/metrics", Method::GET, metrics))
            .default_service(web::to(|| async {
                HttpResponse::NotFound().json(serde_json::json!({
                    "error": "not_found", "error_description": "no such route",
                }))
            }))
    })
    .workers(2)
    .bind(&bind)
    .map_err(|e| anyhow::anyhow!("RECALL_BIND {bind}: {e}"))?;
    let port = server.addrs().first().map_or(0, |a| a.port());
    tracing::info!(%bind, port, upstreams = ?args.upstreams, public_url = ?public_url, "recall verifier serving forward auth");
    // Tests and scripts read the port from this line when binding port 0.
    println!("recall verifier listening on port {port}");
    server.run().await?;
    follower.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::cli::{Cli, Command};

    fn args(argv: &[&str]) -> super::VerifierArgs {
        let mut full = vec![
            "recall",
            "verifier",
            "--upstream",
            "http://r:8080",
            "--service-token",
            "t",
        ];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Some(Command::Verifier(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_sidecars_help_shows_only_what_it_reads() {
        let mut cmd = Cli::command_for_help();
        cmd.build();
        let help = cmd
            .find_subcommand_mut("verifier")
            .unwrap()
            .render_long_help()
            .to_string();
        for shown in [
            "--upstream",
            "--service-token",
            "--bind",
            "--public-url",
            "--trusted-proxies",
            "--max-staleness-ms",
        ] {
            assert!(help.contains(shown), "{shown} missing:\n{help}");
        }
        for hidden in [
            "--database-url",
            "--master-key",
            "--admin-token",
            "--redis-url",
            "--dpop-nonce",
        ] {
            assert!(!help.contains(hidden), "{hidden} shown:\n{help}");
        }
        // Hidden, not gone: a sidecar started with them still parses.
        let cli = Cli::try_parse_from([
            "recall",
            "verifier",
            "--upstream",
            "http://r",
            "--redis-url",
            "redis://x",
        ]);
        assert!(cli.is_ok());
        // And `recall serve --help` still shows the server's settings.
        let serve = cmd
            .find_subcommand_mut("serve")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(serve.contains("--database-url"));
    }

    #[test]
    fn bound_token_flags_parse_and_check() {
        Cli::command().debug_assert();
        let a = args(&[]);
        let c = a.config().unwrap();
        assert_eq!(c.public_url, None);
        assert_eq!(
            c.trusted_proxies,
            recall_verifier::request::default_trusted_proxies()
        );
        let a = args(&[
            "--public-url",
            "https://api.example.com/",
            "--trusted-proxies",
            "10.0.0.0/8, 192.0.2.7",
        ]);
        let c = a.config().unwrap();
        assert_eq!(c.public_url.as_deref(), Some("https://api.example.com"));
        assert_eq!(c.trusted_proxies.len(), 2);
        let e = args(&["--public-url", "api.example.com"])
            .config()
            .unwrap_err();
        assert!(e.to_string().contains("RECALL_VERIFIER_PUBLIC_URL"), "{e}");
        let e = args(&["--trusted-proxies", "nope"]).config().unwrap_err();
        assert!(
            e.to_string().contains("RECALL_VERIFIER_TRUSTED_PROXIES"),
            "{e}"
        );
    }
}
