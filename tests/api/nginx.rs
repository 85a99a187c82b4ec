//! The other two ways in, as real processes: nginx `auth_request` against
//! the verifier sidecar in front of a small upstream (the shipped config,
//! examples/nginx/recall-verifier.conf, as written), and the worked
//! example API (examples/orders_api.rs) on the verifier crate.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;

use crate::feed::{create_service, post_204, user};
use crate::helpers::{eventually, Backend, Kind, TempDir};
use crate::verifiers::{port_from, Sidecar};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx is not installed: scripts/test.sh installs it (apt-get install nginx)")
}

/// A tiny upstream: answers 200 with the `X-User-Id` it received.
async fn echo_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf);
                let user: Vec<&str> = text
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .filter(|(k, _)| k.eq_ignore_ascii_case("x-user-id"))
                    .map(|(_, v)| v.trim())
                    .collect();
                let body = user.join(",");
                let res = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(res.as_bytes()).await;
            });
        }
    });
    port
}

/// nginx running the shipped config (examples/nginx/recall-verifier.conf,
/// as written, with free ports swapped in) in front of `sidecar` and an
/// upstream that echoes the `X-User-Id` it got.
pub struct Nginx {
    child: tokio::process::Child,
    _dir: TempDir,
    pub base: String,
    pub http: reqwest::Client,
}

impl Nginx {
    pub async fn start(sidecar: &Sidecar) -> Nginx {
        let sidecar_port = sidecar.base.rsplit(':').next().unwrap().to_owned();
        let upstream = echo_upstream().await;
        let listen = free_port();
        let shipped = include_str!("../../examples/nginx/recall-verifier.conf");
        let conf = shipped
            .replace("127.0.0.1:9090", &format!("127.0.0.1:{sidecar_port}"))
            .replace("127.0.0.1:8000", &format!("127.0.0.1:{upstream}"))
            .replace("127.0.0.1:8081", &format!("127.0.0.1:{listen}"));
        assert_ne!(conf, shipped);
        let dir = TempDir::new();
        std::fs::create_dir_all(dir.0.join("tmp")).unwrap();
        std::fs::write(dir.0.join("nginx.conf"), conf).unwrap();
        let mut child = Command::new(nginx_binary())
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(dir.0.join("nginx.conf"))
            .args(["-e", "stderr"])
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        let stderr = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("nginx: {line}");
            }
        });
        Nginx {
            child,
            _dir: dir,
            base: format!("http://127.0.0.1:{listen}"),
            http: reqwest::Client::new(),
        }
    }

    /// SIGTERM, so the master takes its workers down with it (SIGKILL
    /// would orphan them).
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_through_the_sidecar() {
    let b = Backend::new(Kind::Postgres).await;
    let fleet = b.spawn_fleet(1).await;
    let app = &fleet[0];
    let (_, token) = create_service(app, "nginx").await;
    let sidecar = Sidecar::start(std::slice::from_ref(&app.base), &token, 5000).await;
    let nginx = Nginx::start(&sidecar).await;
    let (base, http) = (nginx.base.clone(), nginx.http.clone());
    let get = |access: Option<String>, forged: Option<&'static str>| {
        let mut req = http.get(format!("{base}/orders"));
        if let Some(a) = access {
            req = req.bearer_auth(a);
        }
        if let Some(f) = forged {
            req = req.header("X-User-Id", f);
        }
        req.send()
    };
    let up = eventually(Duration::from_secs(10), || async {
        get(None, None).await.is_ok_and(|r| r.status() == 401)
    })
    .await;
    assert!(
        up.is_some(),
        "nginx never answered 401 to a request without a token"
    );
    let s = user(app, "nginx").await;
    // A valid token gets through, and X-User-Id reaches the upstream; a
    // forged X-User-Id from the client is replaced.
    let through = eventually(Duration::from_secs(5), || async {
        get(Some(s.access.clone()), None)
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(through.is_some(), "a live token never got through nginx");
    let res = get(Some(s.access.clone()), Some("attacker")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), s.user_id);
    assert_eq!(
        get(Some("forged.token.here".into()), None)
            .await
            .unwrap()
            .status(),
        401
    );
    // After logout at Recall, the same request through nginx gets 401.
    post_204(app, "/v1/auth/logout", &s.access).await;
    let denied = eventually(Duration::from_secs(3), || async {
        get(Some(s.access.clone()), None).await.unwrap().status() == 401
    })
    .await;
    assert!(denied.is_some(), "nginx kept admitting a logged-out token");
    nginx.stop().await;
    sidecar.stop().await;
    for app in fleet {
        app.stop().await;
    }
}

/// The example's binary, built by `cargo test --all-targets` (or here).
fn orders_api() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples");
    let bin = dir.join("orders_api");
    if !bin.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "orders_api"])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build --example orders_api");
    }
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worked_example_api_rejects_revoked_tokens() {
    let b = Backend::new(Kind::Sqlite).await;
    let app = b.spawn().await;
    let (_, token) = create_service(&app, "orders-api").await;
    let mut child = Command::new(orders_api())
        .env("RECALL_URL", &app.base)
        .env("RECALL_SERVICE_TOKEN", &token)
        .env("ORDERS_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let port = port_from(&mut child, "orders-api listening on port ").await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(10), || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready.is_some());
    let s = user(&app, "orders").await;
    let orders = |access: String| {
        http.get(format!("{base}/orders"))
            .bearer_auth(access)
            .send()
    };
    let served = eventually(Duration::from_secs(5), || async {
        orders(s.access.clone())
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(served.is_some(), "the example never served a live token");
    let res = orders(s.access.clone()).await.unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["user_id"], s.user_id.as_str());
    post_204(&app, "/v1/auth/logout", &s.access).await;
    let denied = eventually(Duration::from_secs(3), || async {
        orders(s.access.clone()).await.unwrap().status() == 401
    })
    .await;
    assert!(
        denied.is_some(),
        "the example kept serving a logged-out token"
    );
    let _ = child.kill().await;
    app.stop().await;
}
