//! A fake Recall for the verifier's tests: metadata, JWKS, the feed
//! (pages with or without a binding key, and an SSE stream of `head`
//! heartbeats) and `POST /v1/revocations/mismatch`, which it records.
//! Plain HTTP/1.1 on a tokio listener, one request per connection. And
//! tokens signed by its key, bound or not.

#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use parking_lot::Mutex;
use recall_verifier::binding::{BindingKey, NetBinding};
use recall_verifier::token::Confirmation;
use recall_verifier::{Claims, Config, Verifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

pub const ISS: &str = "https://recall.test";
pub const AUD: &str = "recall-api";
pub const KID: &str = "k1";
pub const SIGNING_SEED: [u8; 32] = [7; 32];
pub const BINDING_BYTES: [u8; 32] = [9; 32];
pub const SERVICE_TOKEN: &str = "rcs_test_service_token";
pub const PUBLIC_URL: &str = "https://api.example.com";
/// The DPoP key of the client the tests play.
pub const CLIENT_SEED: [u8; 32] = [3; 32];

/// A mismatch report as the fake received it.
#[derive(Debug, Clone)]
pub struct Report {
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: serde_json::Value,
}

#[derive(Default)]
struct Shared {
    binding_key: Option<String>,
    mismatch_status: u16,
    /// How long the mismatch route takes to answer (after recording).
    mismatch_delay: Duration,
    reports: Vec<Report>,
    key_pages: usize,
}

/// A running fake Recall.
pub struct FakeRecall {
    pub base: String,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRecall {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn binding_key_b64() -> String {
    URL_SAFE_NO_PAD.encode(BINDING_BYTES)
}

impl FakeRecall {
    /// Serves feed pages with `binding_key` (or none), and answers
    /// mismatch reports with `mismatch_status`.
    pub async fn start(binding_key: Option<String>, mismatch_status: u16) -> FakeRecall {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared {
            binding_key,
            mismatch_status,
            ..Shared::default()
        }));
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(conn, s.clone()));
            }
        });
        FakeRecall { base, shared, task }
    }

    pub async fn with_key() -> FakeRecall {
        FakeRecall::start(Some(binding_key_b64()), 204).await
    }

    pub fn set_mismatch_delay(&self, delay: Duration) {
        self.shared.lock().mismatch_delay = delay;
    }

    pub fn set_binding_key(&self, key: Option<String>) {
        self.shared.lock().binding_key = key;
    }

    pub fn reports(&self) -> Vec<Report> {
        self.shared.lock().reports.clone()
    }

    /// Feed pages served since the start.
    pub fn pages(&self) -> usize {
        self.shared.lock().key_pages
    }

    /// Waits up to `within` for `n` reports.
    pub async fn wait_reports(&self, n: usize, within: Duration) -> Vec<Report> {
        let until = tokio::time::Instant::now() + within;
        loop {
            let got = self.reports();
            if got.len() >= n || tokio::time::Instant::now() >= until {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(mut conn: TcpStream, shared: Arc<Mutex<Shared>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let json = |status: u16, value: serde_json::Value| (status, value.to_string());
    let (status, text) = match (method, path) {
        ("GET", "/.well-known/oauth-authorization-server") => json(
            200,
            serde_json::json!({ "issuer": ISS, "recall_audience": AUD }),
        ),
        ("GET", "/.well-known/jwks.json") => {
            let public = SigningKey::from_bytes(&SIGNING_SEED).verifying_key();
            json(
                200,
                serde_json::json!({ "keys": [{
                    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": KID,
                    "x": URL_SAFE_NO_PAD.encode(public.as_bytes()),
                }]}),
            )
        }
        ("GET", "/v1/revocations") => {
            let mut s = shared.lock();
            s.key_pages += 1;
            let at = now() * 1000;
            let mut page = serde_json::json!({
                "items": [{ "seq": 1, "at": at, "kind": "key_status", "kid": KID, "status": "active" }],
                "head_seq": 1, "next_after": 1, "retention_ms": 3_600_000,
            });
            if let Some(key) = &s.binding_key {
                page["binding_key"] = key.clone().into();
            }
            json(200, page)
        }
        ("GET", "/v1/revocations/stream") => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                        cache-control: no-store\r\nconnection: close\r\n\r\n";
            if conn.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            loop {
                let beat = "event: head\ndata: {\"head_seq\":1}\n\n";
                if conn.write_all(beat.as_bytes()).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        ("POST", "/v1/revocations/mismatch") => {
            let (status, delay) = {
                let mut s = shared.lock();
                s.reports.push(Report {
                    authorization: header("authorization"),
                    content_type: header("content-type"),
                    body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                });
                (s.mismatch_status, s.mismatch_delay)
            };
            tokio::time::sleep(delay).await;
            (status, String::new())
        }
        _ => (404, r#"{"error":"not_found"}"#.to_owned()),
    };
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = conn.write_all(reply.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// A verifier of the fakes at `bases`, with the tests' public URL.
pub fn config(bases: &[&str]) -> Config {
    let mut config = Config::new(bases.iter().map(|b| b.to_string()).collect(), SERVICE_TOKEN);
    config.public_url = Some(PUBLIC_URL.into());
    config
}

/// Starts `config`'s verifier and waits until it is fresh.
pub async fn started(config: Config) -> Verifier {
    let v = Verifier::new(config).unwrap();
    v.start();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while !v.is_fresh() {
        assert!(
            tokio::time::Instant::now() < until,
            "the verifier never caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    v
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Unbound claims of a new session.
pub fn claims() -> Claims {
    let now = now();
    Claims {
        iss: ISS.into(),
        aud: AUD.into(),
        sub: Uuid::now_v7(),
        sid: Uuid::now_v7(),
        jti: Uuid::now_v7(),
        iat: now,
        nbf: now,
        exp: now + 300,
        ctype: "web".into(),
        cnf: None,
        net: None,
    }
}

/// Bound to `seed`'s DPoP key.
pub fn dpop_bound(seed: &[u8; 32]) -> Claims {
    Claims {
        cnf: Some(Confirmation {
            jkt: recall_verifier::dpop::ed25519_jkt(seed),
        }),
        ..claims()
    }
}

/// Bound to `login`'s network (/24, /56), `rv` when a use from elsewhere
/// revokes.
pub fn net_bound(login: &str, rv: bool) -> Claims {
    let c = claims();
    Claims {
        net: Some(net(c.sid, login, rv)),
        ..c
    }
}

pub fn net(sid: Uuid, login: &str, rv: bool) -> NetBinding {
    BindingKey::new(&BINDING_BYTES).bind(sid, ip(login), 24, 56, rv)
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An access token with these claims, signed by the fake's key.
pub fn sign(claims: &Claims) -> String {
    let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{KID}"}}"#);
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    );
    let signature = SigningKey::from_bytes(&SIGNING_SEED).sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// A fresh proof by `seed` for `htm` `htu`, with the `ath` of `token`.
pub fn proof(seed: &[u8; 32], htm: &str, htu: &str, token: &str) -> String {
    recall_verifier::dpop::ed25519_proof(
        seed,
        htm,
        htu,
        now(),
        &Uuid::new_v4().to_string(),
        Some(&recall_verifier::dpop::ath(token)),
        None,
    )
}
