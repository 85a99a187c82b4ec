//! The load: client tasks, each owning a few users and their sessions, so
//! that a session's calls are sequential and the client knows which of its
//! tokens are live and which it logged out. A step is a login, a refresh,
//! a logout, `GET /v1/me` with a live token, or a logged-out token
//! presented again (`/v1/me` or `/v1/auth/verify`), each on the next
//! instance round robin. Every request is recorded with its times and
//! status; an outcome the client cannot know (no answer, a 5xx) creates no
//! obligation: the client forgets the session it touched.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::rng::Rng;

const USERS_PER_CLIENT: usize = 2;
const MAX_LIVE: usize = 6;
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Register,
    Login,
    Refresh,
    Logout,
    /// `GET /v1/me` with a live token.
    Me,
    /// A logged-out token presented again during the run.
    Revoked,
    /// A logged-out token presented once more after the failover.
    Sweep,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Login => "login",
            Kind::Refresh => "refresh",
            Kind::Logout => "logout",
            Kind::Me => "me",
            Kind::Revoked => "revoked",
            Kind::Sweep => "sweep",
        }
    }

    /// A call that appends to the log when it succeeds.
    pub fn writes(self) -> bool {
        matches!(
            self,
            Kind::Register | Kind::Login | Kind::Refresh | Kind::Logout
        )
    }
}

/// One request. `status` 0: no HTTP answer (`note` says why).
pub struct Rec {
    pub kind: Kind,
    pub inst: usize,
    pub start: u64,
    pub end: u64,
    pub status: u16,
    /// The user or session it was about, once known.
    pub user: Option<Uuid>,
    pub sid: Option<Uuid>,
    /// For `Revoked` and `Sweep`: the index in `Ctx::revoked`.
    pub tok: Option<usize>,
    /// The error description of a 5xx, or the transport error.
    pub note: Option<String>,
}

/// A logout the fleet acknowledged.
pub struct Revoked {
    pub sid: Uuid,
    pub access: String,
    /// The instance that answered 204, and when (µs since the epoch).
    pub inst: usize,
    pub ack: u64,
}

pub struct Ctx {
    epoch: Instant,
    http: reqwest::Client,
    pub bases: Mutex<Vec<String>>,
    rr: AtomicUsize,
    pub recs: Mutex<Vec<Rec>>,
    pub revoked: Mutex<Vec<Arc<Revoked>>>,
    pub stop: AtomicBool,
    /// When the promotion began (µs; 0 = not yet).
    pub promote_at: AtomicU64,
    /// Per instance: the end of the first 2xx write sent after `promote_at`
    /// (so served by the new primary).
    pub back_at: Mutex<Vec<Option<u64>>>,
    pub n_reqs: AtomicU64,
}

impl Ctx {
    pub fn new(epoch: Instant, bases: Vec<String>) -> anyhow::Result<Ctx> {
        let n = bases.len();
        Ok(Ctx {
            epoch,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()?,
            bases: Mutex::new(bases),
            rr: AtomicUsize::new(0),
            recs: Mutex::default(),
            revoked: Mutex::default(),
            stop: AtomicBool::new(false),
            promote_at: AtomicU64::new(0),
            back_at: Mutex::new(vec![None; n]),
            n_reqs: AtomicU64::new(0),
        })
    }

    /// µs since the run's epoch.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The instances the load spreads over (the first `back_at.len()`).
    fn next_instance(&self) -> usize {
        self.rr.fetch_add(1, Ordering::Relaxed) % self.back_at.lock().len()
    }

    /// Every instance has written to the new primary.
    pub fn all_back(&self) -> bool {
        self.back_at.lock().iter().all(Option::is_some)
    }

    /// Sends one request to instance `inst` and records it: (status,
    /// body, end time).
    pub async fn call(&self, c: Call<'_>) -> (u16, Value, u64) {
        let base = self.bases.lock()[c.inst].clone();
        let timeout = if c.kind.writes() {
            WRITE_TIMEOUT
        } else {
            READ_TIMEOUT
        };
        let mut req = self
            .http
            .request(c.method, format!("{base}{}", c.path))
            .timeout(timeout);
        if let Some(b) = c.bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = &c.body {
            req = req.json(body);
        }
        let start = self.now();
        let res = req.send().await;
        let (status, body, note) = match res {
            Ok(r) => {
                let status = r.status().as_u16();
                let body: Value = if status == 204 {
                    Value::Null
                } else {
                    r.json().await.unwrap_or(Value::Null)
                };
                let note = (status >= 500).then(|| {
                    body["error_description"]
                        .as_str()
                        .unwrap_or("(no description)")
                        .to_owned()
                });
                (status, body, note)
            }
            Err(e) => (0, Value::Null, Some(format!("{e:#}"))),
        };
        let end = self.now();
        let sid = c.sid.or_else(|| {
            body["session_id"]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
        });
        let user = c.user.or_else(|| {
            body["user_id"]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
        });
        let promoted = self.promote_at.load(Ordering::SeqCst);
        if c.kind.writes() && (200..300).contains(&status) && promoted > 0 && start >= promoted {
            let mut back = self.back_at.lock();
            if let Some(slot) = back.get_mut(c.inst) {
                slot.get_or_insert(end);
            }
        }
        self.recs.lock().push(Rec {
            kind: c.kind,
            inst: c.inst,
            start,
            end,
            status,
            user,
            sid,
            tok: c.tok,
            note,
        });
        self.n_reqs.fetch_add(1, Ordering::Relaxed);
        (status, body, end)
    }
}

pub struct Call<'a> {
    pub kind: Kind,
    pub inst: usize,
    pub method: Method,
    pub path: &'a str,
    pub bearer: Option<&'a str>,
    pub body: Option<Value>,
    pub user: Option<Uuid>,
    pub sid: Option<Uuid>,
    pub tok: Option<usize>,
}

impl<'a> Call<'a> {
    pub fn new(kind: Kind, inst: usize, method: Method, path: &'a str) -> Call<'a> {
        Call {
            kind,
            inst,
            method,
            path,
            bearer: None,
            body: None,
            user: None,
            sid: None,
            tok: None,
        }
    }
}

struct Sess {
    sid: Uuid,
    access: String,
    refresh: String,
}

struct User {
    id: Uuid,
    name: String,
    password: String,
}

pub struct Client {
    id: usize,
    rng: Rng,
    ctx: Arc<Ctx>,
    users: Vec<User>,
    /// (user index, session).
    live: Vec<(usize, Sess)>,
    made: usize,
}

impl Client {
    pub fn new(id: usize, rng: Rng, ctx: Arc<Ctx>) -> Client {
        Client {
            id,
            rng,
            ctx,
            users: Vec::new(),
            live: Vec::new(),
            made: 0,
        }
    }

    /// Steps every `pace` until the run stops.
    pub async fn run(mut self, pace: Duration) {
        let mut tick = tokio::time::interval(pace);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.ctx.stopped() {
            tick.tick().await;
            self.step().await;
        }
    }

    async fn step(&mut self) {
        if self.users.len() < USERS_PER_CLIENT {
            return self.register().await;
        }
        let r = self.rng.f64();
        if self.live.is_empty() || (r < 0.15 && self.live.len() < MAX_LIVE) {
            let u = self.rng.below(self.users.len());
            self.login(u).await;
        } else if r < 0.40 {
            let s = self.rng.below(self.live.len());
            self.refresh(s).await;
        } else if r < 0.50 {
            let s = self.rng.below(self.live.len());
            self.logout(s).await;
        } else if r < 0.78 {
            let s = self.rng.below(self.live.len());
            self.me(s).await;
        } else {
            self.present_revoked().await;
        }
    }

    async fn register(&mut self) {
        self.made += 1;
        let name = format!("fo-c{}-u{}-{}", self.id, self.made, self.rng.word(6));
        let password = self.rng.word(20);
        let mut call = Call::new(
            Kind::Register,
            self.ctx.next_instance(),
            Method::POST,
            "/v1/users",
        );
        call.body = Some(json!({ "username": name, "password": password }));
        let (status, body, _) = self.ctx.call(call).await;
        let id = body["user_id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok());
        if let (201, Some(id)) = (status, id) {
            self.users.push(User { id, name, password });
        }
    }

    async fn login(&mut self, u: usize) {
        let user = &self.users[u];
        let mut call = Call::new(
            Kind::Login,
            self.ctx.next_instance(),
            Method::POST,
            "/v1/auth/login",
        );
        call.body = Some(json!({ "username": user.name, "password": user.password }));
        call.user = Some(user.id);
        let (status, body, _) = self.ctx.call(call).await;
        let (Some(access), Some(refresh), Some(sid)) = (
            body["access_token"].as_str(),
            body["refresh_token"].as_str(),
            body["session_id"]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok()),
        ) else {
            return;
        };
        if status == 200 {
            self.live.push((
                u,
                Sess {
                    sid,
                    access: access.to_owned(),
                    refresh: refresh.to_owned(),
                },
            ));
        }
    }

    async fn refresh(&mut self, s: usize) {
        let (u, sess) = &self.live[s];
        let mut call = Call::new(
            Kind::Refresh,
            self.ctx.next_instance(),
            Method::POST,
            "/v1/auth/refresh",
        );
        call.body = Some(json!({ "refresh_token": sess.refresh }));
        call.user = Some(self.users[*u].id);
        call.sid = Some(sess.sid);
        let (status, body, _) = self.ctx.call(call).await;
        let tokens = (
            body["access_token"].as_str(),
            body["refresh_token"].as_str(),
        );
        match (status, tokens) {
            (200, (Some(access), Some(refresh))) => {
                let sess = &mut self.live[s].1;
                sess.access = access.to_owned();
                sess.refresh = refresh.to_owned();
            }
            // Refused before anything happened (a 503 on a store that
            // cannot write): the refresh token is still good.
            (503, _) if !maybe_written(&body) => {}
            // Spent or not, or refused (recorded, and checked): forget it.
            _ => {
                self.live.swap_remove(s);
            }
        }
    }

    async fn logout(&mut self, s: usize) {
        let (_, sess) = self.live.swap_remove(s);
        let mut call = Call::new(
            Kind::Logout,
            self.ctx.next_instance(),
            Method::POST,
            "/v1/auth/logout",
        );
        call.bearer = Some(&sess.access);
        call.sid = Some(sess.sid);
        let inst = call.inst;
        let (status, _, ack) = self.ctx.call(call).await;
        if status == 204 {
            self.ctx.revoked.lock().push(Arc::new(Revoked {
                sid: sess.sid,
                access: sess.access,
                inst,
                ack,
            }));
        }
        // Otherwise the session's state is unknown: forgotten.
    }

    async fn me(&mut self, s: usize) {
        let (u, sess) = &self.live[s];
        let mut call = Call::new(Kind::Me, self.ctx.next_instance(), Method::GET, "/v1/me");
        call.bearer = Some(&sess.access);
        call.user = Some(self.users[*u].id);
        call.sid = Some(sess.sid);
        let (status, _, _) = self.ctx.call(call).await;
        if status == 401 || status == 403 {
            // Recorded and checked; the session is of no further use.
            self.live.swap_remove(s);
        }
    }

    async fn present_revoked(&mut self) {
        let (tok, r) = {
            let pool = self.ctx.revoked.lock();
            if pool.is_empty() {
                return;
            }
            let i = self.rng.below(pool.len());
            (i, pool[i].clone())
        };
        let path = if self.rng.chance(0.5) {
            "/v1/me"
        } else {
            "/v1/auth/verify"
        };
        let mut call = Call::new(Kind::Revoked, self.ctx.next_instance(), Method::GET, path);
        call.bearer = Some(&r.access);
        call.sid = Some(r.sid);
        call.tok = Some(tok);
        self.ctx.call(call).await;
    }
}

/// A 503 that may have come after the commit: a connection lost during
/// `COMMIT` answers "the store is unreachable", and the commit may still
/// have reached the standby. Refusals for staleness or a full hash pool
/// never write.
fn maybe_written(body: &Value) -> bool {
    let d = body["error_description"].as_str().unwrap_or("");
    !(d.contains("caught up") || d.contains("password checks"))
}
