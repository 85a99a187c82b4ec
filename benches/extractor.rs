//! The request path step by step (issue 5, measure 2): signature, claims,
//! revocation check, and the whole `Recall::authenticate` / `Authenticated`
//! extractor with a verified-cache hit and a miss.
//!
//! `cargo bench --bench extractor` measures (criterion, short by default:
//! 1 s warm-up, 3 s measurement). Under `cargo test` (no `--bench`), each
//! routine runs once as a smoke test, whatever libtest flags are passed.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{test::TestRequest, web, FromRequest, HttpRequest};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{BatchSize, Criterion};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use recall::bus::LocalBus;
use recall::clock::Timestamp;
use recall::events::{Event, Meta, Stamp};
use recall::http::extract::Authenticated;
use recall::keys::MasterKey;
use recall::service::Recall;
use recall::store::Store;
use recall::tokens::{Claims, LEEWAY_SECS};
use uuid::Uuid;

/// Revoked sessions in the state while measuring (a busy window).
const REVOKED: usize = 10_000;

struct Fixture {
    _rt: tokio::runtime::Runtime,
    /// Recall over HTTP, for the verifier crate to follow.
    _server: recall::server::Running,
    /// The verifier crate, following `_server`'s feed.
    verifier: recall_verifier::Verifier,
    dir: PathBuf,
    recall: Arc<Recall>,
    kid: String,
    claims: Claims,
    token: String,
    public_key: Vec<u8>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = std::env::temp_dir().join(format!("recall-bench-{}", Uuid::new_v4().simple()));
        let flags = [
            "--data-dir".to_owned(),
            dir.display().to_string(),
            "--master-key".into(),
            MasterKey::generate().to_base64(),
            "--access-ttl-secs".into(),
            "3600".into(),
            "--max-staleness-ms".into(),
            "3600000".into(),
        ];
        let settings = recall::config::Settings::from_flags(flags).expect("settings");
        let recall = rt.block_on(async {
            let store =
                Store::open(None, &settings.sqlite_path(), &settings.master_key).expect("store");
            store.migrate().await.expect("migrate");
            let (recall, _tasks) =
                recall::startup::start_with(settings, store, Arc::new(LocalBus::default()))
                    .await
                    .expect("start");
            // A busy revocation window, committed and applied the real way.
            let events = (0..REVOKED)
                .map(|_| Event::LoggedOut {
                    user_id: Uuid::now_v7(),
                    session_id: Uuid::now_v7(),
                })
                .collect();
            let envs = recall
                .store()
                .append_raw(events, &Stamp::now(&Meta::system()))
                .await
                .expect("append");
            recall.committed(&envs).await;
            recall
        });
        let kid = recall
            .sync()
            .state()
            .active_kid()
            .expect("active key")
            .to_owned();
        let public_key = recall
            .sync()
            .keyring()
            .public_key(&kid)
            .expect("public key");
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: "recall".into(),
            aud: "recall-api".into(),
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            jti: Uuid::now_v7(),
            iat: now,
            nbf: now,
            exp: now + 3600,
            ctype: "web".into(),
            cnf: None,
            net: None,
        };
        let token = recall.sync().keyring().issue(&kid, &claims).expect("issue");
        // The verifier crate as an API embeds it: JWKS and the feed over
        // HTTP from a real server, then every check from memory.
        let (server, verifier) = rt.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let server = recall::server::Application::with_core(
                listener,
                recall.clone(),
                Vec::new(),
                1,
                false,
            )
            .expect("server")
            .spawn();
            let (_, service) = recall
                .feed()
                .create_service("bench", &Meta::system())
                .await
                .expect("service");
            let config = recall_verifier::Config::new(vec![server.url()], service);
            let verifier = recall_verifier::Verifier::new(config).expect("verifier");
            verifier.start();
            for _ in 0..200 {
                if verifier.is_fresh() && verifier.authenticate(&token).is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            verifier
                .authenticate(&token)
                .expect("the verifier caught up");
            (server, verifier)
        });
        Fixture {
            _rt: rt,
            _server: server,
            verifier,
            dir,
            recall,
            kid,
            claims,
            token,
            public_key,
        }
    }

    /// A token never presented before (fresh jti).
    fn fresh_token(&self) -> String {
        let claims = Claims {
            jti: Uuid::now_v7(),
            ..self.claims.clone()
        };
        self.recall
            .sync()
            .keyring()
            .issue(&self.kid, &claims)
            .expect("issue")
    }

    fn request(&self, token: &str) -> HttpRequest {
        TestRequest::default()
            .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
            .app_data(web::Data::from(self.recall.clone()))
            .to_http_request()
    }
}

fn extract(req: &HttpRequest) -> Authenticated {
    // An unbound token needs no I/O: the future is ready at once.
    futures_util::FutureExt::now_or_never(Authenticated::from_request(req, &mut Payload::None))
        .expect("ready without I/O")
        .expect("authenticated")
}

fn bench(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("request_path");

    // Ed25519 over the signing input alone: the raw cryptographic cost.
    let (message, sig_b64) = f.token.rsplit_once('.').expect("three parts");
    let signature =
        Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig_b64).expect("b64")).expect("signature");
    let key = VerifyingKey::from_bytes(&f.public_key.clone().try_into().expect("32 bytes"))
        .expect("public key");
    g.bench_function("signature", |b| {
        b.iter(|| {
            key.verify(black_box(message.as_bytes()), &signature)
                .is_ok()
        })
    });

    // Claims alone: base64url + serde decode of the payload and the checks
    // the validation does (iss, aud, exp and nbf with leeway).
    let payload = f.token.split('.').nth(1).expect("payload");
    let leeway = LEEWAY_SECS as i64;
    g.bench_function("claims", |b| {
        b.iter(|| {
            let bytes = URL_SAFE_NO_PAD.decode(black_box(payload)).expect("b64");
            let claims: Claims = serde_json::from_slice(&bytes).expect("claims");
            let now = chrono::Utc::now().timestamp();
            claims.iss == "recall"
                && claims.aud == "recall-api"
                && claims.exp + leeway >= now
                && claims.nbf - leeway <= now
        })
    });

    // Recall's uncached verification: header rules, signature, claims.
    let keyring = f.recall.sync().keyring().clone();
    g.bench_function("keyring_verify", |b| {
        b.iter(|| keyring.verify(black_box(&f.token)).expect("verify"))
    });

    // The in-memory state: key status, revoked session, user lock.
    {
        let state = f.recall.sync().state();
        let now = Timestamp::now().ms();
        g.bench_function("revocation_check", |b| {
            b.iter(|| {
                state
                    .check(
                        black_box(&f.kid),
                        f.claims.sub,
                        f.claims.sid,
                        f.claims.iat,
                        now,
                    )
                    .expect("not revoked")
            })
        });
    }

    // Whole path, hit: the same token again and again.
    f.recall.authenticate(&f.token).expect("warm");
    g.bench_function("authenticate_hit", |b| {
        b.iter(|| f.recall.authenticate(black_box(&f.token)).expect("hit"))
    });
    // Whole path, miss: a token never seen (signed outside the timing).
    g.bench_function("authenticate_miss", |b| {
        b.iter_batched(
            || f.fresh_token(),
            |t| f.recall.authenticate(&t).expect("miss"),
            BatchSize::SmallInput,
        )
    });

    // The actix extractor around it (bearer parsing, app data).
    let req = f.request(&f.token);
    g.bench_function("extractor_hit", |b| b.iter(|| extract(black_box(&req))));
    g.bench_function("extractor_miss", |b| {
        b.iter_batched(
            || f.request(&f.fresh_token()),
            |req| extract(&req),
            BatchSize::SmallInput,
        )
    });

    // The verifier crate in someone else's API, cache hit: the same path
    // (staleness, cached verification, the shared fold's check).
    g.bench_function("verifier_hit", |b| {
        b.iter(|| f.verifier.authenticate(black_box(&f.token)).expect("hit"))
    });
    g.finish();
}

fn main() {
    let fixture = Fixture::new();
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test`: check every routine once, ignore libtest's flags.
        let _ = fixture.recall.sync().keyring().verify(&fixture.token);
        extract(&fixture.request(&fixture.token));
        extract(&fixture.request(&fixture.fresh_token()));
        fixture
            .verifier
            .authenticate(&fixture.token)
            .expect("verifier");
        println!("bench extractor: smoke run ok (use `cargo bench --bench extractor` to measure)");
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench(&mut c, &fixture);
    c.final_summary();
}
