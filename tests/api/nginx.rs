//! The other two ways in, as real processes: nginx `auth_request` against
//! the verifier sidecar in front of a small upstream and a FastCGI
//! responder standing in for php-fpm (the shipped config,
//! examples/nginx/recall-verifier.conf, as written), and the worked
//! example API (examples/orders_api.rs) on the verifier crate.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

use crate::feed::{create_service, post_204, user};
use crate::fixtures::{pg_fleet, start, stop_all};
use crate::helpers::{eventually, Kind, TempDir};
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
/// as written, with free ports swapped in) in front of `sidecar`, an
/// upstream that echoes the `X-User-Id` it got (`/`) and a FastCGI
/// responder that echoes every param it got (`/php/`).
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
        let fastcgi = crate::fastcgi::fastcgi_echo().await;
        let listen = free_port();
        let shipped = include_str!("../../examples/nginx/recall-verifier.conf");
        let mut conf = shipped.to_owned();
        for (port, ours) in [
            ("9090", sidecar_port),
            ("8000", upstream.to_string()),
            ("9000", fastcgi.to_string()),
            ("8081", listen.to_string()),
        ] {
            let theirs = format!("127.0.0.1:{port}");
            assert!(conf.contains(&theirs), "the shipped config has no {theirs}");
            conf = conf.replace(&theirs, &format!("127.0.0.1:{ours}"));
        }
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
            // Its own process group, for Drop to take the workers down too.
            .process_group(0)
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

/// A test that panics drops nginx without `stop`: SIGKILL to the whole
/// group, master and workers (killing the master alone would leave its
/// workers running, holding their ports and the test's stderr).
impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_through_the_sidecar() {
    let (_b, fleet) = pg_fleet(1).await;
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
    stop_all(fleet).await;
}

/// A GET over a raw socket with its header lines exactly as given (reqwest
/// would fold `X-User-Id` and `x-user-id` into one name, and send it in
/// lower case): the status, the headers (names in lower case) and the body.
/// HTTP/1.0, so nginx closes the connection after the body, unchunked.
async fn raw_get(base: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let addr = base.trim_start_matches("http://");
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(name);
        request.push_str(": ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let exchange = async {
        let mut sock = TcpStream::connect(addr).await?;
        sock.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        sock.read_to_end(&mut raw).await?;
        std::io::Result::Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("nginx answers within 10 s")
        .expect("nginx answers");
    let text = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The FastCGI responder's params, and every value of `name` among them.
    fn params(&self, name: &str) -> Vec<String> {
        let body: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not the FastCGI echo's JSON ({e}): {}", self.body));
        let params: Vec<(String, String)> =
            serde_json::from_value(body["params"].clone()).expect("params: [[name, value], ...]");
        params
            .into_iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect()
    }
}

/// The shipped config's FastCGI location (php-fpm in real life, a FastCGI
/// responder here): the identity reaches the application as the params
/// HTTP_X_USER_ID / HTTP_X_SESSION_ID, the sidecar's and only the
/// sidecar's, whatever the client sent in X-User-Id or X-Session-Id and
/// however it spelled them. With `proxy_set_header` in that location the
/// client's header would reach PHP as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_fastcgi_location_passes_only_the_sidecars_identity() {
    let (_b, app) = start(Kind::Sqlite).await;
    let (_, token) = create_service(&app, "php-api").await;
    let sidecar = Sidecar::start(std::slice::from_ref(&app.base), &token, 5000).await;
    let nginx = Nginx::start(&sidecar).await;
    let s = user(&app, "fastcgi").await;
    let bearer = format!("Bearer {}", s.access);
    let php = |access: &str| {
        nginx
            .http
            .get(format!("{}/php/me", nginx.base))
            .bearer_auth(access)
            .send()
    };
    let through = eventually(Duration::from_secs(10), || async {
        php(&s.access).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(
        through.is_some(),
        "a live token never got through nginx's FastCGI location"
    );
    let res = raw_get(&nginx.base, "/php/me", &[("Authorization", &bearer)]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.params("HTTP_X_USER_ID"), [s.user_id.as_str()]);
    assert_eq!(res.params("HTTP_X_SESSION_ID"), [s.session_id.as_str()]);
    assert_eq!(res.params("REQUEST_METHOD"), ["GET"]);
    assert_eq!(
        res.params("SCRIPT_FILENAME"),
        ["/var/www/php-api/public/index.php"]
    );
    // Every spelling a client might try, one at a time and all at once:
    // the application sees exactly the sidecar's ids, once each, and
    // "attacker" nowhere. (nginx drops headers with underscores by
    // default; had it kept X_User_Id, its param name would be the same
    // HTTP_X_USER_ID, replaced the same way.)
    let spellings = [
        ("X-User-Id", "attacker"),
        ("x-user-id", "attacker"),
        ("X_User_Id", "attacker"),
        ("X-USER-ID", "attacker"),
        ("X-Session-Id", "attacker"),
        ("x-session-id", "attacker"),
    ];
    let mut tries: Vec<Vec<(&str, &str)>> = spellings.iter().map(|h| vec![*h]).collect();
    tries.push(spellings.to_vec());
    for forged in tries {
        let mut headers = vec![("Authorization", bearer.as_str())];
        headers.extend(&forged);
        let res = raw_get(&nginx.base, "/php/me", &headers).await;
        assert_eq!(res.status, 200, "{forged:?}: {}", res.body);
        assert_eq!(
            res.params("HTTP_X_USER_ID"),
            [s.user_id.as_str()],
            "{forged:?}"
        );
        assert_eq!(
            res.params("HTTP_X_SESSION_ID"),
            [s.session_id.as_str()],
            "{forged:?}"
        );
        assert!(
            !res.body.contains("attacker"),
            "{forged:?} reached FastCGI: {}",
            res.body
        );
    }
    // No token, a forged identity: the application never runs.
    let res = raw_get(&nginx.base, "/php/me", &spellings).await;
    assert_eq!(res.status, 401, "{}", res.body);
    assert!(!res.body.contains("params"), "{}", res.body);
    // After logout at Recall, 401 there too.
    post_204(&app, "/v1/auth/logout", &s.access).await;
    let denied = eventually(Duration::from_secs(3), || async {
        php(&s.access).await.unwrap().status() == 401
    })
    .await;
    assert!(
        denied.is_some(),
        "nginx's FastCGI location kept admitting a logged-out token"
    );
    nginx.stop().await;
    sidecar.stop().await;
    app.stop().await;
}

/// What a client behind nginx sees when the sidecar cannot answer: 503
/// with `Retry-After` and a JSON body, never the 500 nginx's
/// `auth_request` makes of the sidecar's 503 (or of no answer at all).
async fn assert_unavailable(res: reqwest::Response, what: &str) {
    assert_eq!(res.status(), 503, "{what}");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("retry-after").as_deref(), Some("1"), "{what}");
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/json"),
        "{what}"
    );
    let body: serde_json::Value = res.json().await.expect("a JSON body");
    assert_eq!(body["error"], "unavailable", "{what}: {body}");
}

/// Recall stops behind the sidecar (bound 1 s): through nginx, 200 while
/// the sidecar is within its bound, then 503 with `Retry-After` and
/// `{"error":"unavailable",...}` on both locations; the sidecar stopped
/// too, the same. Never 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_answers_503_never_500_when_the_sidecar_cannot_answer() {
    let (_b, app) = start(Kind::Sqlite).await;
    let (_, token) = create_service(&app, "nginx-down").await;
    let sidecar = Sidecar::start(std::slice::from_ref(&app.base), &token, 1000).await;
    let nginx = Nginx::start(&sidecar).await;
    let s = user(&app, "nginxdown").await;
    let get = |path: &str| {
        nginx
            .http
            .get(format!("{}{path}", nginx.base))
            .bearer_auth(&s.access)
            .send()
    };
    for path in ["/orders", "/php/me"] {
        let through = eventually(Duration::from_secs(10), || async {
            get(path).await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(through.is_some(), "a live token never got through {path}");
    }
    app.stop().await;
    let stopped = std::time::Instant::now();
    let mut served = 0;
    let stale = loop {
        let res = get("/orders").await.expect("nginx answers");
        match res.status().as_u16() {
            200 => served += 1,
            503 => break res,
            other => panic!(
                "{other} through nginx {:?} after Recall stopped (only 200, then 503, are right): {}",
                stopped.elapsed(),
                res.text().await.unwrap_or_default()
            ),
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "nginx still let the token through 10 s after Recall stopped (the bound is 1 s)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "through nginx: {served} x 200 while the sidecar was within its bound, 503 {:?} after Recall stopped",
        stopped.elapsed()
    );
    assert_unavailable(stale, "proxy_pass, the sidecar stale").await;
    assert_unavailable(get("/php/me").await.unwrap(), "FastCGI, the sidecar stale").await;
    sidecar.stop().await;
    assert_unavailable(get("/orders").await.unwrap(), "proxy_pass, no sidecar").await;
    assert_unavailable(get("/php/me").await.unwrap(), "FastCGI, no sidecar").await;
    nginx.stop().await;
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
    let (_b, app) = start(Kind::Sqlite).await;
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
