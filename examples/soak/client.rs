//! The load: client tasks, each owning its users, so that a user's calls
//! are sequential and the client knows exactly which of its tokens are
//! live and which it revoked. Each step is mostly an authenticated request
//! (`GET /v1/me` or `GET /v1/auth/verify` on a random instance, or
//! `/v1/auth/verify` on a sidecar), sometimes a revoked token presented
//! again, a login, a registration, a refresh or a revoking call
//! (revoke.rs). An outcome the client cannot know (no answer, or a 5xx
//! other than a clean refusal) retires what it touched: a call that may
//! or may not have happened creates no obligation, and the client stops
//! using the user or session whose state it no longer knows.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::model::{Answer, Call, Ctx, Kind, Target, NO_TOKEN};
use crate::rng::Rng;

pub const USERS_PER_CLIENT: usize = 25;
const INITIAL_USERS: usize = 5;
const MAX_SESSIONS: usize = 4;
/// A session refreshes once its token is this old (TTL 60 s).
const REFRESH_AGE: Duration = Duration::from_secs(40);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Sess {
    pub uuid: Uuid,
    pub refresh: Option<String>,
    pub token: u32,
    pub access: Arc<str>,
    pub issued: Instant,
    pub alive: bool,
    /// Refused lately (a rotated key, most likely): refresh before use.
    pub stale: bool,
    pub tokens: Vec<u32>,
}

pub struct User {
    pub uuid: Uuid,
    pub name: String,
    pub password: String,
    pub sessions: Vec<Sess>,
    /// Every token any of its sessions was given.
    pub tokens: Vec<u32>,
    pub locked_until: Option<Instant>,
    pub unlock_at: Option<Instant>,
    pub retired: bool,
}

impl User {
    pub fn usable(&self, now: Instant) -> bool {
        !self.retired && self.locked_until.is_none_or(|t| t <= now)
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.sessions.len())
            .filter(|&s| self.sessions[s].alive)
            .collect()
    }

    /// Every session but `keep` ended (their tokens stay in `tokens`).
    pub fn end_all_but(&mut self, keep: Option<Uuid>) {
        self.sessions.retain(|s| s.alive && Some(s.uuid) == keep);
    }
}

/// How a call turned out for the client's bookkeeping.
#[derive(PartialEq, Eq)]
pub enum Outcome {
    Acked,
    /// Refused before anything happened (4xx, or a 503 for staleness or
    /// a full hash pool).
    Refused,
    /// No answer, or a 5xx that may have come after a commit.
    Unknown,
}

pub fn outcome(a: &Answer) -> Outcome {
    if a.ok() {
        Outcome::Acked
    } else if !a.answered() {
        Outcome::Unknown
    } else if a.status == 503
        && (a.description().contains("caught up") || a.description().contains("password checks"))
    {
        Outcome::Refused
    } else if a.status >= 500 {
        Outcome::Unknown
    } else {
        Outcome::Refused
    }
}

pub struct Client {
    pub id: usize,
    pub rng: Rng,
    pub ctx: Arc<Ctx>,
    pub users: Vec<User>,
    made: usize,
}

impl Client {
    pub fn new(id: usize, rng: Rng, ctx: Arc<Ctx>) -> Client {
        Client {
            id,
            rng,
            ctx,
            users: Vec::new(),
            made: 0,
        }
    }

    pub async fn run(mut self, deadline: Instant, pace: Duration) {
        for _ in 0..INITIAL_USERS {
            if Instant::now() >= deadline {
                return;
            }
            self.register().await;
        }
        let mut tick = tokio::time::interval(pace);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while Instant::now() < deadline && !self.ctx.stopped() {
            tick.tick().await;
            self.step().await;
        }
    }

    async fn step(&mut self) {
        self.housekeeping().await;
        let r = self.rng.f64();
        let live = self.live_sessions().len();
        // Logins: now and then, and more when few sessions are left.
        if (live < 8 && r < 0.05) || r < 0.006 {
            self.login_any().await;
        } else if r < 0.008 {
            let active = self.users.iter().filter(|u| !u.retired).count();
            if active < USERS_PER_CLIENT {
                self.register().await;
            }
        } else if r < 0.014 {
            if let Some((u, s)) = self.pick_live() {
                self.refresh(u, s).await;
            }
        } else if r < 0.020 {
            self.revoke_any().await;
        } else if r < 0.09 {
            self.present_revoked().await;
        } else {
            self.auth_live().await;
        }
    }

    /// Planned unlocks, and locks that ran out.
    async fn housekeeping(&mut self) {
        let now = Instant::now();
        for u in 0..self.users.len() {
            self.users[u].sessions.retain(|s| s.alive);
            if self.users[u].unlock_at.is_some_and(|t| t <= now) {
                self.users[u].unlock_at = None;
                self.unlock(u).await;
            }
            if self.users[u].locked_until.is_some_and(|t| t <= now) {
                self.users[u].locked_until = None;
            }
        }
    }

    /// (user, session) of every session the client may use now.
    pub fn live_sessions(&self) -> Vec<(usize, usize)> {
        let now = Instant::now();
        let mut v = Vec::new();
        for (u, user) in self.users.iter().enumerate() {
            if user.usable(now) {
                v.extend(user.live().into_iter().map(|s| (u, s)));
            }
        }
        v
    }

    pub fn pick_live(&mut self) -> Option<(usize, usize)> {
        let v = self.live_sessions();
        (!v.is_empty()).then(|| v[self.rng.below(v.len())])
    }

    pub fn retire(&mut self, u: usize) {
        if !self.users[u].retired {
            self.users[u].retired = true;
            self.ctx.n_retired_users.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn url(base: &str, path: &str) -> String {
        format!("{base}{path}")
    }

    async fn register(&mut self) {
        self.made += 1;
        let name = format!("soak-c{}-u{}-{}", self.id, self.made, self.rng.word(6));
        let password = self.rng.word(20);
        let (target, base) = self.ctx.targets.any_instance(&mut self.rng);
        let a = self
            .ctx
            .call(Call {
                kind: Kind::Register,
                target,
                method: Method::POST,
                url: Self::url(&base, "/v1/users"),
                bearer: None,
                body: Some(json!({ "username": name, "password": password })),
                timeout: WRITE_TIMEOUT,
                token: NO_TOKEN,
                probe: false,
            })
            .await;
        let Some(uuid) = a.body["user_id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
        else {
            return;
        };
        self.users.push(User {
            uuid,
            name,
            password,
            sessions: Vec::new(),
            tokens: Vec::new(),
            locked_until: None,
            unlock_at: None,
            retired: false,
        });
        self.login(self.users.len() - 1).await;
    }

    async fn login_any(&mut self) {
        let now = Instant::now();
        let cands: Vec<usize> = (0..self.users.len())
            .filter(|&u| self.users[u].usable(now) && self.users[u].live().len() < MAX_SESSIONS)
            .collect();
        if cands.is_empty() {
            return;
        }
        let u = cands[self.rng.below(cands.len())];
        self.login(u).await;
    }

    async fn login(&mut self, u: usize) {
        let (target, base) = self.ctx.targets.any_instance(&mut self.rng);
        let body = json!({ "username": self.users[u].name, "password": self.users[u].password });
        let a = self
            .ctx
            .call(Call {
                kind: Kind::Login,
                target,
                method: Method::POST,
                url: Self::url(&base, "/v1/auth/login"),
                bearer: None,
                body: Some(body),
                timeout: WRITE_TIMEOUT,
                token: NO_TOKEN,
                probe: false,
            })
            .await;
        match a.status {
            200 => {
                let b = &a.body;
                let (Some(access), Some(refresh), Some(sid)) = (
                    b["access_token"].as_str(),
                    b["refresh_token"].as_str(),
                    b["session_id"]
                        .as_str()
                        .and_then(|s| Uuid::parse_str(s).ok()),
                ) else {
                    return;
                };
                let user = &mut self.users[u];
                let token = self.ctx.add_token(user.uuid, sid, access, a.end);
                user.tokens.push(token);
                user.sessions.push(Sess {
                    uuid: sid,
                    refresh: Some(refresh.to_owned()),
                    token,
                    access: access.into(),
                    issued: Instant::now(),
                    alive: true,
                    stale: false,
                    tokens: vec![token],
                });
            }
            403 => self.users[u].locked_until = Some(Instant::now() + Duration::from_secs(2)),
            // The client's password is wrong: its view of the user is off.
            401 => self.retire(u),
            _ => {}
        }
    }

    pub async fn refresh(&mut self, u: usize, s: usize) {
        let Some(rt) = self.users[u].sessions[s].refresh.clone() else {
            self.users[u].sessions[s].alive = false;
            return;
        };
        let (target, base) = self.ctx.targets.any_instance(&mut self.rng);
        let a = self
            .ctx
            .call(Call {
                kind: Kind::Refresh,
                target,
                method: Method::POST,
                url: Self::url(&base, "/v1/auth/refresh"),
                bearer: None,
                body: Some(json!({ "refresh_token": rt })),
                timeout: WRITE_TIMEOUT,
                token: NO_TOKEN,
                probe: false,
            })
            .await;
        let user_uuid = self.users[u].uuid;
        let sess = &mut self.users[u].sessions[s];
        match (outcome(&a), a.status) {
            (Outcome::Acked, _) => {
                let (Some(access), Some(refresh)) = (
                    a.body["access_token"].as_str(),
                    a.body["refresh_token"].as_str(),
                ) else {
                    // Rotated, but the answer was lost: the refresh token is spent.
                    sess.alive = false;
                    sess.refresh = None;
                    return;
                };
                let token = self.ctx.add_token(user_uuid, sess.uuid, access, a.end);
                sess.refresh = Some(refresh.to_owned());
                sess.token = token;
                sess.access = access.into();
                sess.issued = Instant::now();
                sess.stale = false;
                sess.tokens.push(token);
                self.users[u].tokens.push(token);
            }
            (Outcome::Refused, 403) => {
                self.users[u].locked_until = Some(Instant::now() + Duration::from_secs(2))
            }
            (Outcome::Refused, 401) => sess.alive = false,
            (Outcome::Refused, _) => {}
            (Outcome::Unknown, _) => {
                // Spent or not: presenting it again could count as reuse.
                sess.alive = false;
                sess.refresh = None;
            }
        }
    }

    async fn auth_live(&mut self) {
        let Some((u, s)) = self.pick_live() else {
            self.login_any().await;
            return;
        };
        let sess = &self.users[u].sessions[s];
        if sess.stale || sess.issued.elapsed() > REFRESH_AGE {
            self.refresh(u, s).await;
            return;
        }
        let (access, token) = (sess.access.clone(), sess.token);
        let a = self.present(&access, token, false).await;
        match a.status {
            401 => self.users[u].sessions[s].stale = true,
            403 => self.users[u].locked_until = Some(Instant::now() + Duration::from_secs(2)),
            _ => {}
        }
    }

    /// A token the run revoked, presented again to a random target.
    async fn present_revoked(&mut self) {
        let token = {
            let pool = self.ctx.revoked_pool.lock();
            if pool.is_empty() {
                return;
            }
            pool[self.rng.below(pool.len())]
        };
        let Some(access) = self.ctx.fresh(token) else {
            return;
        };
        self.present(&access, token, true).await;
    }

    /// `access` (token `token`) presented to a random target: an
    /// instance's `/v1/me` or `/v1/auth/verify`, or a sidecar's
    /// `/v1/auth/verify`.
    async fn present(&mut self, access: &str, token: u32, probe: bool) -> Answer {
        let (target, base) = self.ctx.targets.any(&mut self.rng);
        let (kind, path) = match target {
            Target::Instance { .. } if self.rng.chance(0.5) => (Kind::Me, "/v1/me"),
            Target::Instance { .. } => (Kind::Verify, "/v1/auth/verify"),
            Target::Sidecar(_) => (Kind::SidecarVerify, "/v1/auth/verify"),
        };
        self.ctx
            .call(Call {
                kind,
                target,
                method: Method::GET,
                url: Self::url(&base, path),
                bearer: Some(access),
                body: None,
                timeout: AUTH_TIMEOUT,
                token,
                probe,
            })
            .await
    }
}
