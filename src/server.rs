//! Builds the application: the Recall core plus an actix-web server on its
//! own listener, so tests bind port 0 and ask for the port.
//!
//! May import: http, startup, service, config, metrics. The layers:
//! docs/DESIGN.md, "Parts".

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpMessage, HttpServer};
use tokio::task::JoinHandle;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder, TracingLogger};

use crate::config::Settings;
use crate::service::Recall;

/// The span of each request: method, route pattern, request id, and the
/// client address as Recall decides it (`RECALL_TRUSTED_PROXIES`), never
/// a forwarded header from an untrusted peer.
struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(req: &ServiceRequest) -> tracing::Span {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let client = crate::http::extract::client_addr(req.request())
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            http.method = %req.method(),
            http.route = %req.match_pattern().unwrap_or_else(|| "unmatched".into()),
            client.address = %client,
            request_id = %request_id,
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: tracing::Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// Answers with the request's id (`X-Request-Id`), the one its log lines carry.
async fn request_id_header(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    // Middleware inside answers refusals as responses (not errors), so
    // they carry the id too.
    let mut res = next.call(req).await?;
    if let Some(value) = id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(res)
}

/// Times each request into `recall_http_request_duration_seconds`, by
/// route pattern (never the raw path: ids would explode the labels).
async fn record_http(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let metrics = req
        .app_data::<web::Data<Recall>>()
        .map(|r| r.metrics().clone());
    let res = next.call(req).await?;
    if let Some(metrics) = metrics {
        metrics
            .http_requests
            .get_or_create(&crate::metrics::Route {
                route,
                method,
                status: res.status().as_u16(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}

/// A built, not yet running, application.
pub struct Application {
    port: u16,
    server: Server,
    recall: Arc<Recall>,
    tasks: Vec<JoinHandle<()>>,
}

/// A running application (tests keep several).
pub struct Running {
    pub port: u16,
    pub recall: Arc<Recall>,
    handle: ServerHandle,
    tasks: Vec<JoinHandle<()>>,
    join: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// The base URL on loopback.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server and the background tasks (like a crash, minus the
    /// half-written state: everything acknowledged is already committed).
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.handle.stop(false).await;
        let _ = self.join.await;
    }
}

impl Application {
    /// Starts the core and binds `settings.bind`.
    pub async fn build(settings: Settings, workers: usize, signals: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&settings.bind)?;
        let (recall, tasks) = crate::startup::start(settings).await?;
        Application::with_core(listener, recall, tasks, workers, signals)
    }

    /// Serves an already started core on `listener`.
    pub fn with_core(
        listener: TcpListener,
        recall: Arc<Recall>,
        tasks: Vec<JoinHandle<()>>,
        workers: usize,
        signals: bool,
    ) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let data = web::Data::from(recall.clone());
        let origins = recall.settings().cors_origins.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(record_http))
                .wrap(from_fn(request_id_header))
                // A span per request, with a request id in every log line
                // logged while it is served.
                .wrap(TracingLogger::<RequestSpan>::new())
                // Outermost, so that preflights are answered before routing.
                .wrap(actix_web::middleware::Condition::new(
                    !origins.is_empty(),
                    crate::http::cors(&origins),
                ))
                .app_data(data.clone())
                .configure(crate::http::routes)
        })
        .workers(workers.max(1))
        .shutdown_timeout(5)
        .listen(listener)?;
        if !signals {
            server = server.disable_signals();
        }
        Ok(Application {
            port,
            server: server.run(),
            recall,
            tasks,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The core.
    pub fn recall(&self) -> Arc<Recall> {
        self.recall.clone()
    }

    /// Serves until the server stops (SIGTERM/SIGINT when signals are on).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        // Send what is still queued; anything lost is read from the log anyway.
        self.recall.flush(std::time::Duration::from_secs(2)).await;
        for t in &self.tasks {
            t.abort();
        }
        result
    }

    /// Serves in the background and returns a handle.
    pub fn spawn(self) -> Running {
        let handle = self.server.handle();
        Running {
            port: self.port,
            recall: self.recall,
            handle,
            tasks: self.tasks,
            join: tokio::spawn(self.server),
        }
    }
}
