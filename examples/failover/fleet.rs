//! The fleet: `recall serve` processes on loopback, all on one multi-host
//! database URL and one private Redis channel, sharing a master key and an
//! admin token; killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use tokio::process::{Child, Command};

use crate::rng::os_bytes;
use crate::spawn::announced_port;

/// The same for every instance, so they share one issuer.
const PUBLIC_URL: &str = "http://recall-failover.test";
/// Longer than any run: a live token never expires during one.
pub const ACCESS_TTL_SECS: u64 = 900;
const START_SECS: u64 = 60;

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub struct Fleet {
    binary: PathBuf,
    logs: PathBuf,
    database_url: String,
    redis_url: String,
    channel: String,
    master_key: String,
    pub admin_token: String,
    pub procs: Vec<Proc>,
}

pub struct Proc {
    child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Fleet {
    pub fn new(binary: &Path, logs: &Path, database_url: String, redis_url: &str) -> Fleet {
        Fleet {
            binary: binary.to_owned(),
            logs: logs.to_owned(),
            database_url,
            redis_url: redis_url.to_owned(),
            channel: format!("recall:failover:{}", hex(&os_bytes::<8>())),
            master_key: base64::engine::general_purpose::STANDARD.encode(os_bytes::<32>()),
            admin_token: hex(&os_bytes::<24>()),
            procs: Vec::new(),
        }
    }

    /// Starts instance `i` (log `instance-<i>.log`), waits until its
    /// `/readyz` answers 200, and adds it to `procs`; its base URL.
    pub async fn start(&mut self, i: usize, http: &reqwest::Client) -> anyhow::Result<String> {
        let log = self.logs.join(format!("instance-{i}.log"));
        let data = self.logs.join(format!("data-{i}"));
        std::fs::create_dir_all(&data)?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RECALL_BIND", "127.0.0.1:0")
            .env("RECALL_DATABASE_URL", &self.database_url)
            .env("RECALL_REDIS_URL", &self.redis_url)
            .env("RECALL_REDIS_CHANNEL", &self.channel)
            .env("RECALL_MASTER_KEY", &self.master_key)
            .env("RECALL_ADMIN_TOKEN", &self.admin_token)
            .env("RECALL_PUBLIC_URL", PUBLIC_URL)
            .env("RECALL_RATE_LIMIT_PER_MIN", "1000000")
            .env("RECALL_ACCESS_TTL_SECS", ACCESS_TTL_SECS.to_string())
            .env("RECALL_DATA_DIR", &data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let wait = Duration::from_secs(START_SECS);
        let port = announced_port(&mut child, "recall listening on port ", wait)
            .await
            .with_context(|| format!("instance {i} printed no port (log: {})", log.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        let proc = Proc { child, base, log };
        let ready = wait_ready(http, &proc.base, wait).await;
        let base = proc.base.clone();
        let log = proc.log.display().to_string();
        // Added before the check, so that it is killed with the rest.
        self.procs.push(proc);
        anyhow::ensure!(
            ready,
            "instance {i} ({base}) not ready after {START_SECS} s (log: {log})"
        );
        Ok(base)
    }

    pub async fn shutdown(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.start_kill();
            let _ = p.child.wait().await;
        }
    }
}

/// Polls `/readyz` until it answers 200 or `within` has passed.
pub async fn wait_ready(http: &reqwest::Client, base: &str, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        let res = http
            .get(format!("{base}/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if res.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The value of metric `name` (a gauge, or a counter's `_total`) on
/// `base`'s `/metrics`.
pub async fn metric(http: &reqwest::Client, base: &str, name: &str) -> Option<i64> {
    let text = http
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().find_map(|l| {
        let rest = l
            .strip_prefix(name)
            .map(|r| r.strip_prefix("_total").unwrap_or(r))?;
        rest.strip_prefix(' ')?
            .trim()
            .parse::<f64>()
            .ok()
            .map(|v| v as i64)
    })
}

/// Waits (up to `within`) until every instance has applied the log up to
/// `head` (`recall_last_seq`); per instance: the last value seen and how
/// often it found the log's head behind what it had applied.
pub async fn caught_up(
    http: &reqwest::Client,
    bases: &[String],
    head: i64,
    within: Duration,
) -> Vec<(Option<i64>, Option<i64>)> {
    let until = Instant::now() + within;
    let mut out = Vec::new();
    for base in bases {
        let mut seen = None;
        loop {
            seen = metric(http, base, "recall_last_seq").await.or(seen);
            if seen == Some(head) || Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        out.push((seen, metric(http, base, "recall_log_regressions").await));
    }
    out
}
