//! Setting the benchmark up: Recall's settings, the HTTP servers, real
//! logins and freshly signed tokens, and the files and probes the driver
//! script reads. Imports Recall's service and token types and the shared
//! `product` and `users` helpers; the guards are `guards`'.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use recall::config::Settings;
use recall::events::Meta;
use recall::keys::MasterKey;
use recall::service::Recall;
use recall::tokens::{Claims, Keyring};
use uuid::Uuid;

use crate::product::product_settings;
use crate::users::login_input;

pub(super) fn db_url(admin: &str, name: &str) -> String {
    let root = admin.rsplit_once('/').map_or(admin, |(r, _)| r);
    format!("{root}/{name}")
}

pub(super) fn settings(data_dir: &Path) -> anyhow::Result<Settings> {
    product_settings(&[
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--master-key".into(),
        MasterKey::generate().to_base64(),
        "--redis-channel".into(),
        format!("recall:bench:{}", Uuid::new_v4().simple()),
        // Long enough that no token expires during the run.
        "--access-ttl-secs".into(),
        "3600".into(),
    ])
}

pub(super) fn serve(
    workers: usize,
    configure: impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
) -> anyhow::Result<(Server, u16)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || App::new().configure(configure.clone()))
        .workers(workers)
        .disable_signals()
        .listen(listener)?
        .run();
    Ok((server, port))
}

/// One logged-in session: its access token and the ids the guards need.
pub(super) struct Login {
    pub(super) token: String,
    pub(super) claims: Claims,
}

pub(super) async fn login_many(
    recall: &Arc<Recall>,
    users: &[String],
    n: usize,
) -> anyhow::Result<Vec<Login>> {
    let mut out = Vec::with_capacity(n);
    // A few at a time: the argon2 pool has one worker per core.
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let mut jobs = Vec::new();
        for &i in chunk {
            let recall = recall.clone();
            let input = login_input(users, i);
            jobs.push(tokio::spawn(async move {
                recall.auth().login(input, &Meta::default()).await
            }));
        }
        for job in jobs {
            let res = job.await?.map_err(|e| anyhow::anyhow!("login: {e}"))?;
            let (claims, _) = recall
                .sync()
                .keyring()
                .verify(&res.access_token)
                .map_err(|e| anyhow::anyhow!("verify: {e}"))?;
            out.push(Login {
                token: res.access_token,
                claims,
            });
        }
    }
    Ok(out)
}

/// Signs `n` distinct tokens (fresh jti) for the given sessions, on all cores.
pub(super) fn sign_many(
    keyring: &Arc<Keyring>,
    kid: &str,
    base: &[Claims],
    n: usize,
) -> Vec<String> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let per = n.div_ceil(cores);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..cores)
            .map(|t| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(per);
                    for i in (t * per)..((t + 1) * per).min(n) {
                        let claims = Claims {
                            jti: Uuid::now_v7(),
                            ..base[i % base.len()].clone()
                        };
                        if let Ok(t) = keyring.issue(kid, &claims) {
                            out.push(t);
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

pub(super) fn write_lines(path: &Path, lines: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let mut text = String::new();
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    std::fs::write(path, text)?;
    Ok(())
}

pub(super) fn hex_id() -> String {
    let b: [u8; 32] = recall::random::bytes();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) async fn status(http: &reqwest::Client, port: u16, bearer: &str) -> u16 {
    http.get(format!("http://127.0.0.1:{port}/"))
        .bearer_auth(bearer)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}
