//! What the run records (every request, every acknowledged revoking call,
//! every probe result, fault and memory sample) and the state the tasks
//! share: the targets, the token table and one HTTP caller that records
//! each request it makes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::rng::Rng;

/// `Req::token` of a request sent without a user's token.
pub const NO_TOKEN: u32 = u32::MAX;
/// `Req::status` below 100: the request got no HTTP answer.
pub const ERR_CONNECT: u16 = 0;
pub const ERR_TIMEOUT: u16 = 1;
pub const ERR_OTHER: u16 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Register,
    Login,
    Refresh,
    Me,
    Verify,
    SidecarVerify,
    Logout,
    LogoutAll,
    LogoutOthers,
    DeleteSession,
    Password,
    AdminRevoke,
    AdminLock,
    AdminUnlock,
    AdminDeleteSession,
    RotateScheduled,
    RotateCompromised,
}

impl Kind {
    pub const ALL: [Kind; 17] = [
        Kind::Register,
        Kind::Login,
        Kind::Refresh,
        Kind::Me,
        Kind::Verify,
        Kind::SidecarVerify,
        Kind::Logout,
        Kind::LogoutAll,
        Kind::LogoutOthers,
        Kind::DeleteSession,
        Kind::Password,
        Kind::AdminRevoke,
        Kind::AdminLock,
        Kind::AdminUnlock,
        Kind::AdminDeleteSession,
        Kind::RotateScheduled,
        Kind::RotateCompromised,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Register => "POST /v1/users",
            Kind::Login => "POST /v1/auth/login",
            Kind::Refresh => "POST /v1/auth/refresh",
            Kind::Me => "GET /v1/me",
            Kind::Verify => "GET /v1/auth/verify (instance)",
            Kind::SidecarVerify => "GET /v1/auth/verify (sidecar)",
            Kind::Logout => "logout",
            Kind::LogoutAll => "logout-all",
            Kind::LogoutOthers => "logout-others",
            Kind::DeleteSession => "DELETE /v1/sessions/{id}",
            Kind::Password => "password change",
            Kind::AdminRevoke => "admin revoke-sessions",
            Kind::AdminLock => "admin lock",
            Kind::AdminUnlock => "admin unlock",
            Kind::AdminDeleteSession => "admin DELETE /v1/admin/sessions/{id}",
            Kind::RotateScheduled => "key rotation (scheduled)",
            Kind::RotateCompromised => "key rotation (compromised)",
        }
    }

    /// A request that presents a user's access token to be checked.
    pub fn is_auth(self) -> bool {
        matches!(self, Kind::Me | Kind::Verify | Kind::SidecarVerify)
    }

    /// A call that must leave an event in the log when acknowledged.
    pub fn is_revoking(self) -> bool {
        self >= Kind::Logout
    }
}

/// Where a request went: an instance's process (slot and restart
/// generation) or a sidecar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Instance { slot: u8, gen: u16 },
    Sidecar(u8),
}

impl Target {
    pub fn label(self) -> String {
        match self {
            Target::Instance { slot, gen } => format!("instance {slot} (process {gen})"),
            Target::Sidecar(i) => format!("sidecar {i}"),
        }
    }
}

/// One request, as the client saw it (times in µs since the run began;
/// `end` is when the answer's head arrived, or the error).
#[derive(Clone, Copy, Debug)]
pub struct Req {
    pub kind: Kind,
    pub target: Target,
    pub start: u64,
    pub end: u64,
    pub status: u16,
    pub token: u32,
    /// Sent with a token the client knew to be revoked.
    pub probe: bool,
}

/// An acknowledged revoking call (or rotation, or unlock).
#[derive(Clone, Debug)]
pub struct Revocation {
    pub kind: Kind,
    pub target: Target,
    pub start: u64,
    pub ack: u64,
    pub user: Option<Uuid>,
    /// The session ended (logout, session deletes) or the calling session
    /// (logout-all, logout-others, password change).
    pub session: Option<Uuid>,
    pub seq: Option<i64>,
    /// The new key of a rotation.
    pub kid: Option<String>,
    /// Access tokens it revoked.
    pub tokens: Vec<u32>,
}

/// The first rejection of a revocation's tokens by one target, probed
/// from the acknowledgement on.
#[derive(Clone, Copy, Debug)]
pub struct Prop {
    pub rev: usize,
    pub target: Target,
    /// (end of the first rejecting probe, its status); None: never within
    /// the probe window.
    pub rejected: Option<(u64, u16)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    RedisCut,
    PgBlackHole,
    Kill,
    Pause,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [
        FaultKind::RedisCut,
        FaultKind::PgBlackHole,
        FaultKind::Kill,
        FaultKind::Pause,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::RedisCut => "Redis cut (proxy refuses and drops)",
            FaultKind::PgBlackHole => "PostgreSQL black-holed (held, not forwarded)",
            FaultKind::Kill => "SIGKILL + restart on a new port",
            FaultKind::Pause => "SIGSTOP ... SIGCONT",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: FaultKind,
    pub slot: usize,
    pub start: u64,
    pub end: u64,
    pub note: String,
}

/// One RSS sample of one process.
#[derive(Clone, Debug)]
pub struct Rss {
    pub process: String,
    pub born: u64,
    pub t: u64,
    pub kib: u64,
}

/// One access token the run was given.
pub struct TokenMeta {
    pub user: Uuid,
    pub session: Uuid,
    pub kid: u16,
    pub issued: u64,
    pub access: Arc<str>,
}

/// The current address of every target; clients follow restarts here.
pub struct Targets {
    instances: RwLock<Vec<(String, u16)>>,
    sidecars: Vec<String>,
}

impl Targets {
    pub fn new(instances: Vec<(String, u16)>, sidecars: Vec<String>) -> Targets {
        Targets {
            instances: RwLock::new(instances),
            sidecars,
        }
    }

    pub fn set_instance(&self, slot: usize, base: String, gen: u16) {
        self.instances.write()[slot] = (base, gen);
    }

    pub fn instance(&self, slot: usize) -> (Target, String) {
        let (base, gen) = self.instances.read()[slot].clone();
        let slot = slot as u8;
        (Target::Instance { slot, gen }, base)
    }

    pub fn instances(&self) -> usize {
        self.instances.read().len()
    }

    pub fn sidecar(&self, i: usize) -> (Target, String) {
        (Target::Sidecar(i as u8), self.sidecars[i].clone())
    }

    pub fn sidecars(&self) -> usize {
        self.sidecars.len()
    }

    /// Any instance or sidecar, uniformly.
    pub fn any(&self, rng: &mut Rng) -> (Target, String) {
        let n = self.instances() + self.sidecars();
        let i = rng.below(n);
        if i < self.instances() {
            self.instance(i)
        } else {
            self.sidecar(i - self.instances())
        }
    }

    pub fn any_instance(&self, rng: &mut Rng) -> (Target, String) {
        self.instance(rng.below(self.instances()))
    }
}

/// What every task shares.
pub struct Ctx {
    epoch: Instant,
    pub stop: AtomicBool,
    pub http: reqwest::Client,
    sem: Semaphore,
    pub targets: Targets,
    pub admin_token: String,
    pub access_ttl_us: u64,
    pub reqs: Mutex<Vec<Req>>,
    pub revs: Mutex<Vec<Revocation>>,
    pub props: Mutex<Vec<Prop>>,
    pub faults: Mutex<Vec<Fault>>,
    pub rss: Mutex<Vec<Rss>>,
    pub tokens: Mutex<Vec<TokenMeta>>,
    kids: Mutex<Vec<String>>,
    /// Revoked tokens the clients send again now and then.
    pub revoked_pool: Mutex<VecDeque<u32>>,
    pub probes: Mutex<Vec<JoinHandle<()>>>,
    pub n_reqs: AtomicU64,
    pub n_revs: AtomicU64,
    pub n_faults: AtomicU64,
    pub n_retired_users: AtomicU64,
}

/// One request to make and record.
pub struct Call<'a> {
    pub kind: Kind,
    pub target: Target,
    pub method: reqwest::Method,
    pub url: String,
    pub bearer: Option<&'a str>,
    pub body: Option<Value>,
    pub timeout: Duration,
    pub token: u32,
    pub probe: bool,
}

/// Its outcome.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub start: u64,
    pub end: u64,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn answered(&self) -> bool {
        self.status >= 100
    }

    pub fn description(&self) -> &str {
        self.body["error_description"].as_str().unwrap_or("")
    }
}

impl Ctx {
    pub fn new(
        epoch: Instant,
        targets: Targets,
        admin_token: String,
        access_ttl_secs: u64,
        max_in_flight: usize,
    ) -> anyhow::Result<Ctx> {
        Ok(Ctx {
            epoch,
            stop: AtomicBool::new(false),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .pool_max_idle_per_host(64)
                .build()?,
            sem: Semaphore::new(max_in_flight),
            targets,
            admin_token,
            access_ttl_us: access_ttl_secs * 1_000_000,
            reqs: Mutex::new(Vec::with_capacity(1 << 20)),
            revs: Mutex::default(),
            props: Mutex::default(),
            faults: Mutex::default(),
            rss: Mutex::default(),
            tokens: Mutex::default(),
            kids: Mutex::default(),
            revoked_pool: Mutex::default(),
            probes: Mutex::default(),
            n_reqs: AtomicU64::new(0),
            n_revs: AtomicU64::new(0),
            n_faults: AtomicU64::new(0),
            n_retired_users: AtomicU64::new(0),
        })
    }

    /// µs since the run began.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Makes the request (at most `max_in_flight` at once across the run),
    /// records it, and never fails: a transport error is a status below 100.
    pub async fn call(&self, c: Call<'_>) -> Answer {
        let _permit = self.sem.acquire().await;
        let mut req = self.http.request(c.method, &c.url).timeout(c.timeout);
        if let Some(b) = c.bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = &c.body {
            req = req.json(body);
        }
        let start = self.now();
        let res = req.send().await;
        let end = self.now();
        let (status, body) = match res {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = if status == 204 {
                    Value::Null
                } else {
                    r.json().await.unwrap_or(Value::Null)
                };
                (status, body)
            }
            Err(e) if e.is_timeout() => (ERR_TIMEOUT, Value::Null),
            Err(e) if e.is_connect() => (ERR_CONNECT, Value::Null),
            Err(_) => (ERR_OTHER, Value::Null),
        };
        self.reqs.lock().push(Req {
            kind: c.kind,
            target: c.target,
            start,
            end,
            status,
            token: c.token,
            probe: c.probe,
        });
        self.n_reqs.fetch_add(1, Ordering::Relaxed);
        Answer {
            status,
            body,
            start,
            end,
        }
    }

    /// Records a token the run was given; returns its id.
    pub fn add_token(&self, user: Uuid, session: Uuid, access: &str, issued: u64) -> u32 {
        let kid = kid_of(access);
        let kid = {
            let mut kids = self.kids.lock();
            match kids.iter().position(|k| *k == kid) {
                Some(i) => i,
                None => {
                    kids.push(kid);
                    kids.len() - 1
                }
            }
        } as u16;
        let mut tokens = self.tokens.lock();
        tokens.push(TokenMeta {
            user,
            session,
            kid,
            issued,
            access: access.into(),
        });
        (tokens.len() - 1) as u32
    }

    /// Every token signed with `kid`.
    pub fn tokens_of_kid(&self, kid: &str) -> Vec<u32> {
        let Some(k) = self.kids.lock().iter().position(|x| x == kid) else {
            return Vec::new();
        };
        let tokens = self.tokens.lock();
        (0..tokens.len() as u32)
            .filter(|&i| tokens[i as usize].kid as usize == k)
            .collect()
    }

    /// A token still far from its expiry (worth presenting).
    pub fn fresh(&self, token: u32) -> Option<Arc<str>> {
        let tokens = self.tokens.lock();
        let t = tokens.get(token as usize)?;
        (t.issued + self.access_ttl_us > self.now() + 3_000_000).then(|| t.access.clone())
    }

    /// Adds revoked tokens to the pool clients present again.
    pub fn pool_revoked(&self, tokens: &[u32]) {
        let mut pool = self.revoked_pool.lock();
        for &t in tokens.iter().rev().take(64) {
            pool.push_back(t);
        }
        while pool.len() > 4000 {
            pool.pop_front();
        }
    }
}

/// The `kid` in a JWT's header ("" when unreadable).
pub fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap_or("");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .and_then(|h| h["kid"].as_str().map(str::to_owned))
        .unwrap_or_default()
}
