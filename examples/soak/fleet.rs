//! The fleet on loopback: a scratch PostgreSQL database, three `recall
//! serve` processes (the release binary), each with its own proxies to
//! PostgreSQL and Redis, and `recall verifier` sidecars following them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::pg::pg_exec;
use crate::proxy::{Mode, Proxy};
use crate::rng::os_bytes;
use crate::spawn::announced_port;
use crate::{ACCESS_TTL_SECS, POLL_MS, STALENESS_MS};

/// The same for every instance, so they share one issuer.
const PUBLIC_URL: &str = "http://recall-soak.test";

/// A scratch database, dropped by `drop_db`.
#[derive(Clone)]
pub struct Db {
    admin: String,
    /// `postgres://user[:password]@`
    prefix: String,
    pub upstream_port: u16,
    pub name: String,
}

impl Db {
    pub async fn create(admin: &str) -> anyhow::Result<Db> {
        let rest = admin
            .strip_prefix("postgres://")
            .or_else(|| admin.strip_prefix("postgresql://"))
            .context("--pg must be a postgres:// URL")?;
        let (creds, hostpart) = match rest.split_once('@') {
            Some((c, h)) => (format!("{c}@"), h),
            None => (String::new(), rest),
        };
        let hostport = hostpart.split('/').next().unwrap_or("");
        let port = hostport
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(5432);
        anyhow::ensure!(
            hostport.starts_with("127.0.0.1") || hostport.starts_with("localhost"),
            "the soak runs on loopback only: --pg must point at 127.0.0.1"
        );
        let name = format!("recall_soak_{}", hex(&os_bytes::<6>()));
        pg_exec(admin, &format!("CREATE DATABASE {name}")).await?;
        Ok(Db {
            admin: admin.to_owned(),
            prefix: format!("postgres://{creds}"),
            upstream_port: port,
            name,
        })
    }

    /// The database through a proxy on `port`.
    fn url(&self, port: u16) -> String {
        format!("{}127.0.0.1:{port}/{}", self.prefix, self.name)
    }

    pub async fn drop_db(&self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        match pg_exec(&self.admin, &sql).await {
            Ok(()) => eprintln!("    [soak] dropped database {}", self.name),
            Err(e) => eprintln!("    [soak] could not drop {}: {e}", self.name),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One running process.
pub struct Proc {
    pub child: Child,
    pub pid: u32,
    pub port: u16,
    pub gen: u16,
}

pub struct Fleet {
    binary: PathBuf,
    pub logs: PathBuf,
    pub db: Db,
    master_key: String,
    pub admin_token: String,
    channel: String,
    pub pg: Vec<Proxy>,
    pub redis: Vec<Proxy>,
    /// The sidecars' stable addresses of the instances.
    fronts: Vec<Proxy>,
    pub procs: Vec<tokio::sync::Mutex<Proc>>,
    pub sidecars: Vec<tokio::sync::Mutex<Proc>>,
    /// (name, pid, born) of every live process, for the RSS sampler.
    pub live: Mutex<Vec<(String, u32, u64)>>,
    http: reqwest::Client,
}

pub struct Options<'a> {
    pub binary: &'a Path,
    pub logs: &'a Path,
    pub redis: &'a str,
    pub instances: usize,
    pub sidecars: usize,
}

impl Fleet {
    /// Everything up and ready on `db`; on error the caller drops the
    /// database (processes started so far are killed on drop).
    pub async fn start(o: &Options<'_>, db: Db, now: impl Fn() -> u64) -> anyhow::Result<Fleet> {
        std::fs::create_dir_all(o.logs)?;
        let redis_addr = o.redis.trim_start_matches("redis://").trim_end_matches('/');
        let redis_port: u16 = redis_addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(6379);
        anyhow::ensure!(
            redis_addr.starts_with("127.0.0.1") || redis_addr.starts_with("localhost"),
            "the soak runs on loopback only: --redis must point at 127.0.0.1"
        );
        let mut fleet = Fleet {
            binary: o.binary.to_owned(),
            logs: o.logs.to_owned(),
            master_key: base64::engine::general_purpose::STANDARD.encode(os_bytes::<32>()),
            admin_token: hex(&os_bytes::<24>()),
            channel: format!("recall:soak:{}", hex(&os_bytes::<8>())),
            pg: Vec::new(),
            redis: Vec::new(),
            fronts: Vec::new(),
            procs: Vec::new(),
            sidecars: Vec::new(),
            live: Mutex::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            db,
        };
        for _ in 0..o.instances {
            fleet.pg.push(Proxy::new(fleet.db.upstream_port).await?);
            fleet.redis.push(Proxy::new(redis_port).await?);
        }
        for slot in 0..o.instances {
            let p = fleet.spawn_instance(slot, 1, now()).await?;
            fleet.fronts.push(Proxy::new(p.port).await?);
            fleet.procs.push(tokio::sync::Mutex::new(p));
        }
        let base = fleet.base(fleet.procs[0].lock().await.port);
        let res = fleet
            .http
            .post(format!("{base}/v1/admin/services"))
            .bearer_auth(&fleet.admin_token)
            .json(&json!({ "name": "soak-sidecars" }))
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let service_token = body["token"]
            .as_str()
            .with_context(|| format!("POST /v1/admin/services: {status} {body}"))?
            .to_owned();
        for i in 0..o.sidecars {
            let mut ups: Vec<String> = fleet
                .fronts
                .iter()
                .map(|f| format!("http://127.0.0.1:{}", f.port))
                .collect();
            // Each sidecar starts on a different instance.
            let n = ups.len();
            ups.rotate_left(i % n);
            let p = fleet
                .spawn_sidecar(i, &ups.join(","), &service_token, now())
                .await?;
            fleet.sidecars.push(tokio::sync::Mutex::new(p));
        }
        Ok(fleet)
    }

    pub fn base(&self, port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }

    /// Starts instance `slot` (restart generation `gen`) and waits until ready.
    pub async fn spawn_instance(&self, slot: usize, gen: u16, born: u64) -> anyhow::Result<Proc> {
        let log = self.logs.join(format!("instance-{slot}-process-{gen}.log"));
        let data = self.logs.join(format!("data-{slot}"));
        std::fs::create_dir_all(&data)?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RECALL_BIND", "127.0.0.1:0")
            .env("RECALL_DATABASE_URL", self.db.url(self.pg[slot].port))
            .env(
                "RECALL_REDIS_URL",
                format!("redis://127.0.0.1:{}", self.redis[slot].port),
            )
            .env("RECALL_REDIS_CHANNEL", &self.channel)
            .env("RECALL_MASTER_KEY", &self.master_key)
            .env("RECALL_ADMIN_TOKEN", &self.admin_token)
            .env("RECALL_PUBLIC_URL", PUBLIC_URL)
            .env("RECALL_RATE_LIMIT_PER_MIN", "1000000")
            .env("RECALL_ACCESS_TTL_SECS", ACCESS_TTL_SECS.to_string())
            .env("RECALL_MAX_STALENESS_MS", STALENESS_MS.to_string())
            .env("RECALL_POLL_INTERVAL_MS", POLL_MS.to_string())
            .env("RECALL_DATA_DIR", &data)
            .env("RUST_LOG", "warn");
        let proc = self
            .spawn(cmd, &log, "recall listening on port ", gen)
            .await?;
        self.live
            .lock()
            .push((format!("instance {slot} (process {gen})"), proc.pid, born));
        Ok(proc)
    }

    async fn spawn_sidecar(
        &self,
        i: usize,
        ups: &str,
        token: &str,
        born: u64,
    ) -> anyhow::Result<Proc> {
        let log = self.logs.join(format!("sidecar-{i}.log"));
        let mut cmd = Command::new(&self.binary);
        cmd.args(["verifier", "--upstream", ups, "--service-token", token])
            .args(["--bind", "127.0.0.1:0"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RECALL_MAX_STALENESS_MS", STALENESS_MS.to_string())
            .env("RUST_LOG", "warn");
        let proc = self
            .spawn(cmd, &log, "recall verifier listening on port ", 1)
            .await?;
        self.live
            .lock()
            .push((format!("sidecar {i}"), proc.pid, born));
        Ok(proc)
    }

    async fn spawn(
        &self,
        mut cmd: Command,
        log: &Path,
        prefix: &str,
        gen: u16,
    ) -> anyhow::Result<Proc> {
        let file = std::fs::File::create(log)?;
        cmd.stdout(Stdio::piped()).stderr(file).kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let pid = child.id().unwrap_or(0);
        let port = announced_port(&mut child, prefix, Duration::from_secs(60))
            .await
            .with_context(|| format!("no '{prefix}N' line (log: {})", log.display()))?;
        let base = self.base(port);
        let started = Instant::now();
        loop {
            if let Ok(r) = self.http.get(format!("{base}/readyz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "{base} not ready after 60 s (log: {})",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Proc {
            child,
            pid,
            port,
            gen,
        })
    }

    /// SIGKILL instance `slot`, wait `down`, start its next process on a
    /// new port. Returns (base, gen, pid) of the new one.
    pub async fn kill_restart(
        &self,
        slot: usize,
        down: Duration,
        now: impl Fn() -> u64,
    ) -> anyhow::Result<(String, u16, u32)> {
        let mut p = self.procs[slot].lock().await;
        let _ = p.child.start_kill();
        let _ = p.child.wait().await;
        let old = p.pid;
        self.live.lock().retain(|(_, pid, _)| *pid != old);
        tokio::time::sleep(down).await;
        let mut tries = 0;
        let next = loop {
            tries += 1;
            match self.spawn_instance(slot, p.gen + 1, now()).await {
                Ok(next) => break next,
                Err(e) if tries < 3 => {
                    eprintln!("    [chaos] restart of instance {slot} failed ({e:#}); again")
                }
                Err(e) => return Err(e),
            }
        };
        self.fronts[slot].retarget(next.port);
        *p = next;
        Ok((self.base(p.port), p.gen, p.pid))
    }

    pub fn signal(pid: u32, sig: &str) -> bool {
        std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn set_pg(&self, slot: usize, mode: Mode) {
        self.pg[slot].set(mode);
    }

    pub fn set_redis(&self, slot: usize, mode: Mode) {
        self.redis[slot].set(mode);
    }

    /// Every proxy open, every process running, then all stopped and the
    /// database dropped.
    pub async fn shutdown(&self) {
        for p in self.pg.iter().chain(&self.redis) {
            p.set(Mode::Open);
        }
        for p in &self.procs {
            let mut p = p.lock().await;
            Fleet::signal(p.pid, "-CONT");
            let _ = p.child.start_kill();
            let _ = p.child.wait().await;
        }
        for p in &self.sidecars {
            let mut p = p.lock().await;
            let _ = p.child.start_kill();
            let _ = p.child.wait().await;
        }
        self.db.drop_db().await;
    }
}

/// VmRSS of a process, KiB (None once it is gone).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
