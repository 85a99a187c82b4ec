//! Measure 12: time from a revoking call to its SET arriving at a push
//! receiver (RFC 8935): one instance on PostgreSQL with a push stream to a
//! receiver listening on loopback; revocations one at a time.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A push receiver that notes when each session's SET arrived.
async fn receiver() -> anyhow::Result<(u16, Arc<Mutex<HashMap<String, Instant>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let got: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let body = &buf[end + 4..end + 4 + len];
                            let claims = std::str::from_utf8(body)
                                .ok()
                                .and_then(|t| t.split('.').nth(1))
                                .and_then(|p| {
                                    use base64::Engine;
                                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                                        .decode(p)
                                        .ok()
                                })
                                .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                            if let Some(sid) = claims
                                .as_ref()
                                .and_then(|c| c["sub_id"]["session"]["id"].as_str())
                            {
                                seen.lock()
                                    .entry(sid.to_owned())
                                    .or_insert_with(Instant::now);
                            }
                            let _ = sock
                                .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    Ok((port, got))
}

pub(super) async fn ssf(cli: &Cli, revocations: usize) -> anyhow::Result<Value> {
    let db = BenchDb::create(&cli.pg).await?;
    let result = ssf_on(cli, &db, revocations).await;
    db.drop_db().await;
    result
}

async fn ssf_on(cli: &Cli, db: &BenchDb, revocations: usize) -> anyhow::Result<Value> {
    let mut nodes = super::fleet::start_nodes(cli, db, 1).await?;
    let (recall, tasks) = nodes.remove(0);
    let (port, got) = receiver().await?;
    let (service, _) = recall
        .feed()
        .create_service("bench-ssf", &Meta::system())
        .await
        .map_err(|e| anyhow::anyhow!("service: {e}"))?;
    let body = json!({
        "aud": "https://receiver.bench",
        "events_requested": [recall::ssf::SESSION_REVOKED],
        "delivery": { "method": "urn:ietf:rfc:8935", "endpoint_url": format!("http://127.0.0.1:{port}/events") },
    });
    recall
        .signals()
        .create(&service, body.as_object().expect("an object"))
        .await
        .map_err(|e| anyhow::anyhow!("stream: {e}"))?;
    let sids = bench_sessions(&recall, revocations).await?;
    progress(
        "ssf",
        &format!("{revocations} sessions; revoking one at a time"),
    );
    let mut times = Vec::with_capacity(revocations);
    let mut late = 0usize;
    for (i, sid) in sids.iter().enumerate() {
        recall
            .admin()
            .admin_revoke_session(*sid, None, &Meta::system())
            .await
            .map_err(|e| anyhow::anyhow!("revoke: {e}"))?;
        let t0 = Instant::now();
        let key = sid.to_string();
        loop {
            if let Some(at) = got.lock().get(&key) {
                times.push(at.saturating_duration_since(t0).as_secs_f64() * 1e3);
                break;
            }
            if t0.elapsed() > Duration::from_secs(5) {
                late += 1;
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        if (i + 1) % 100 == 0 {
            progress("ssf", &format!("{} SETs arrived", i + 1));
        }
    }
    stop(&tasks);
    let times = sorted(times);
    Ok(json!({
        "revocations": revocations,
        "p50_ms": round(pct(&times, 50.0), 3),
        "p99_ms": round(pct(&times, 99.0), 3),
        "max_ms": round(pct(&times, 100.0), 3),
        "not_within_5s": late,
        "measured_from": "the admin revoke's answer until the receiver read the SET (push, RFC 8935)",
    }))
}
