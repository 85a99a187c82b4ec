//! A small API of your own, protected by Recall through the verifier crate:
//! it verifies access tokens locally and rejects revoked ones as fast as
//! Recall's own instances do, with no database, Redis or master key.
//!
//! ```sh
//! # a service credential, once:
//! cargo run --release -- admin create-service orders-api
//! # then, with Recall running on :8080:
//! RECALL_URL=http://127.0.0.1:8080 RECALL_SERVICE_TOKEN=rcs_... \
//!     cargo run --release --example orders_api
//! curl -H "Authorization: Bearer $ACCESS" http://127.0.0.1:8000/orders
//! ```

use actix_web::{web, App, HttpResponse, HttpServer};
use recall_verifier::actix::Authenticated;
use recall_verifier::{Config, Verifier};

/// `GET /orders`: only for a caller whose session is alive.
async fn orders(user: Authenticated) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "user_id": user.0.user_id,
        "session_id": user.0.session_id,
        "orders": [],
    }))
}

/// `GET /readyz`: ready once the verifier has heard Recall.
async fn readyz(v: web::Data<Verifier>) -> HttpResponse {
    if v.is_fresh() {
        HttpResponse::Ok().body("ready")
    } else {
        HttpResponse::ServiceUnavailable().body("not caught up with Recall")
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let env = |name: &str| std::env::var(name).map_err(|_| anyhow::anyhow!("set {name}"));
    // Several Recall instances, comma-separated, for failover.
    let upstreams = env("RECALL_URL")?.split(',').map(str::to_owned).collect();
    let verifier = Verifier::new(Config::new(upstreams, env("RECALL_SERVICE_TOKEN")?))?;
    let follower = verifier.start();
    let bind = std::env::var("ORDERS_BIND").unwrap_or_else(|_| "127.0.0.1:8000".into());
    let data = web::Data::new(verifier);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/orders", web::get().to(orders))
            .route("/readyz", web::get().to(readyz))
    })
    .workers(2)
    .bind(&bind)?;
    let port = server.addrs().first().map_or(0, |a| a.port());
    println!("orders-api listening on port {port}");
    server.run().await?;
    follower.abort();
    Ok(())
}
