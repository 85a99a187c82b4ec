//! Memory under a login flood (measure 6, G10): the real `recall` binary on the
//! embedded default, 400 concurrent logins, then (in a fresh process) 400
//! logins whose connections are reset right after sending. Peak RSS is the
//! kernel's high-water mark (VmHWM); the pool's own high-water mark of
//! running hashes comes from `/metrics`.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::*;

/// Peak and current RSS of a process, KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(f64::NAN)
}

struct Server {
    child: tokio::process::Child,
    base: String,
    port: u16,
}

async fn start(binary: &Path, dir: &Path) -> anyhow::Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let data = dir.join(format!("flood-{}", Uuid::new_v4().simple()));
    let child = tokio::process::Command::new(binary)
        .env_clear()
        .env("RECALL_BIND", format!("127.0.0.1:{port}"))
        .env("RECALL_DATA_DIR", &data)
        // The flood comes from one address: measure memory, not the limiter.
        .env("RECALL_RATE_LIMIT_PER_MIN", "1000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(Server { child, base, port });
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("recall did not become ready")
}

async fn drain(http: &reqwest::Client, base: &str) -> String {
    let mut text = String::new();
    for _ in 0..600 {
        text = match http.get(format!("{base}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if metric(&text, "recall_hash_admitted") == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    text
}

/// One flood against a fresh process; `reset` sends raw requests and
/// resets each connection right after.
async fn flood(binary: &Path, dir: &Path, n: usize, reset: bool) -> anyhow::Result<Value> {
    let mut server = start(binary, dir).await?;
    let pid = server.child.id().unwrap_or(0);
    let (_, idle_kib) = rss_kib(pid);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(120))
        .build()?;
    let started = Instant::now();
    let jobs: Vec<_> = (0..n)
        .map(|_| {
            let (http, base, port) = (http.clone(), server.base.clone(), server.port);
            tokio::spawn(async move {
                let name = format!("flood-{}", Uuid::new_v4().simple());
                let body = json!({ "username": name, "password": "wrong password!" });
                if reset {
                    let text = body.to_string();
                    let req = format!(
                        "POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if let Ok(mut c) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = c.write_all(req.as_bytes()).await;
                        let _ = c.set_zero_linger();
                    }
                    0u16
                } else {
                    http.post(format!("{base}/v1/auth/login"))
                        .json(&body)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                }
            })
        })
        .collect();
    let mut statuses: std::collections::BTreeMap<u16, usize> = Default::default();
    for j in jobs {
        *statuses.entry(j.await.unwrap_or(0)).or_default() += 1;
    }
    let text = drain(&http, &server.base).await;
    let seconds = started.elapsed().as_secs_f64();
    let (peak_kib, after_kib) = rss_kib(pid);
    let _ = server.child.kill().await;
    progress(
        "flood",
        &format!(
            "{} {n}: peak RSS {:.1} MiB, hashes running at most {}",
            if reset { "reset" } else { "concurrent" },
            peak_kib as f64 / 1024.0,
            metric(&text, "recall_hash_running_max")
        ),
    );
    Ok(json!({
        "requests": n,
        "reset_connections": reset,
        "statuses": statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "seconds": round(seconds, 2),
        "idle_rss_mib": round(idle_kib as f64 / 1024.0, 1),
        "peak_rss_mib": round(peak_kib as f64 / 1024.0, 1),
        "rss_after_mib": round(after_kib as f64 / 1024.0, 1),
        "hash_running_max": metric(&text, "recall_hash_running_max"),
        "hash_workers": metric(&text, "recall_hash_workers"),
        "hash_rejected": metric(&text, "recall_hash_rejected_total"),
        "hash_abandoned": metric(&text, "recall_hash_abandoned_total"),
        "hashes_checked": metric(&text, "recall_logins_total{outcome=\"failed\"}"),
    }))
}

pub(super) async fn floods(binary: &Path, dir: &Path, n: usize) -> anyhow::Result<Value> {
    std::fs::create_dir_all(dir)?;
    let concurrent = flood(binary, dir, n, false).await?;
    let reset = flood(binary, dir, n, true).await?;
    Ok(json!({ "concurrent": concurrent, "reset": reset, "goal_peak_rss_mib": 128 }))
}
