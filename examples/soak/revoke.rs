//! Revoking calls of every kind, the key rotations, and the probes that
//! follow each acknowledged revocation: from the acknowledgement on, every
//! instance and sidecar is sent one of the revoked tokens until it rejects
//! it, which measures propagation (and feeds the invariant check).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::{outcome, Client, Outcome, WRITE_TIMEOUT};
use crate::model::{Answer, Call, Ctx, Kind, Prop, Revocation, Target, NO_TOKEN};
use crate::rng::Rng;
use crate::PROBE_WINDOW_MS;

/// Relative frequency of each revoking call.
const WEIGHTS: [(Kind, f64); 8] = [
    (Kind::Logout, 3.0),
    (Kind::DeleteSession, 2.0),
    (Kind::LogoutAll, 1.0),
    (Kind::LogoutOthers, 1.5),
    (Kind::Password, 0.8),
    (Kind::AdminRevoke, 1.0),
    (Kind::AdminLock, 1.0),
    (Kind::AdminDeleteSession, 1.5),
];

impl Client {
    pub async fn revoke_any(&mut self) {
        let total: f64 = WEIGHTS.iter().map(|w| w.1).sum();
        let mut x = self.rng.f64() * total;
        let mut kind = Kind::Logout;
        for (k, w) in WEIGHTS {
            kind = k;
            if x < w {
                break;
            }
            x -= w;
        }
        let Some((u, s)) = self.pick_live() else {
            return;
        };
        let (user, sess) = (self.users[u].uuid, self.users[u].sessions[s].uuid);
        match kind {
            Kind::Logout | Kind::LogoutAll | Kind::LogoutOthers => {
                let path = match kind {
                    Kind::Logout => "/v1/auth/logout",
                    Kind::LogoutAll => "/v1/auth/logout-all",
                    _ => "/v1/auth/logout-others",
                };
                self.user_call(kind, u, s, Method::POST, path.into(), None)
                    .await;
            }
            Kind::Password => {
                let new = self.rng.word(20);
                let body =
                    json!({ "current_password": self.users[u].password, "new_password": new });
                if self
                    .user_call(
                        kind,
                        u,
                        s,
                        Method::POST,
                        "/v1/auth/password".into(),
                        Some(body),
                    )
                    .await
                {
                    self.users[u].password = new;
                }
            }
            Kind::DeleteSession => {
                let live = self.users[u].live();
                let victim = self.users[u].sessions[live[self.rng.below(live.len())]].uuid;
                self.user_call(
                    kind,
                    u,
                    s,
                    Method::DELETE,
                    format!("/v1/sessions/{victim}"),
                    None,
                )
                .await;
            }
            Kind::AdminRevoke => {
                let path = format!("/v1/admin/users/{user}/revoke-sessions");
                self.admin_call(
                    kind,
                    u,
                    Method::POST,
                    path,
                    Some(json!({ "reason": "soak" })),
                    None,
                )
                .await;
            }
            Kind::AdminLock => {
                let secs = 2 + self.rng.below(5) as u64;
                let body = json!({ "duration_secs": secs, "reason": "soak" });
                let path = format!("/v1/admin/users/{user}/lock");
                if self
                    .admin_call(kind, u, Method::POST, path, Some(body), None)
                    .await
                {
                    let now = Instant::now();
                    self.users[u].locked_until =
                        Some(now + Duration::from_millis(secs * 1000 + 300));
                    if self.rng.chance(0.5) {
                        self.users[u].unlock_at = Some(now + self.rng.ms(300, secs * 1000 - 300));
                    }
                }
            }
            _ => {
                let path = format!("/v1/admin/sessions/{sess}");
                self.admin_call(
                    Kind::AdminDeleteSession,
                    u,
                    Method::DELETE,
                    path,
                    None,
                    Some(sess),
                )
                .await;
            }
        }
    }

    pub async fn unlock(&mut self, u: usize) {
        let path = format!("/v1/admin/users/{}/unlock", self.users[u].uuid);
        if self
            .admin_call(Kind::AdminUnlock, u, Method::POST, path, None, None)
            .await
        {
            self.users[u].locked_until = None;
        }
    }

    /// A write to a random instance with `bearer` (token `token`): the
    /// target and its answer.
    async fn write(
        &mut self,
        kind: Kind,
        method: Method,
        path: &str,
        body: Option<Value>,
        bearer: &str,
        token: u32,
    ) -> (Target, Answer) {
        let (target, base) = self.ctx.targets.any_instance(&mut self.rng);
        let a = self
            .ctx
            .call(Call {
                kind,
                target,
                method,
                url: Client::url(&base, path),
                bearer: Some(bearer),
                body,
                timeout: WRITE_TIMEOUT,
                token,
                probe: false,
            })
            .await;
        (target, a)
    }

    /// A revoking call with session `s`'s bearer; true when acknowledged.
    async fn user_call(
        &mut self,
        kind: Kind,
        u: usize,
        s: usize,
        method: Method,
        path: String,
        body: Option<Value>,
    ) -> bool {
        let (access, token, caller) = {
            let sess = &self.users[u].sessions[s];
            (sess.access.clone(), sess.token, sess.uuid)
        };
        let (target, a) = self.write(kind, method, &path, body, &access, token).await;
        match outcome(&a) {
            Outcome::Acked => {}
            Outcome::Refused => {
                match a.status {
                    401 => self.users[u].sessions[s].stale = true,
                    403 => {
                        self.users[u].locked_until = Some(Instant::now() + Duration::from_secs(2))
                    }
                    _ => {}
                }
                return false;
            }
            Outcome::Unknown => {
                self.retire(u);
                return false;
            }
        }
        let user = &mut self.users[u];
        let (session, tokens) = match kind {
            Kind::Logout => {
                user.sessions[s].alive = false;
                (caller, user.sessions[s].tokens.clone())
            }
            Kind::DeleteSession => {
                let victim = path
                    .rsplit('/')
                    .next()
                    .and_then(|v| Uuid::parse_str(v).ok());
                let Some(v) = user.sessions.iter_mut().find(|x| Some(x.uuid) == victim) else {
                    return true;
                };
                v.alive = false;
                (v.uuid, v.tokens.clone())
            }
            Kind::LogoutAll => {
                user.end_all_but(None);
                (caller, user.tokens.clone())
            }
            // Logout-others and password change keep the calling session.
            _ => {
                let kept = user.sessions[s].tokens.clone();
                user.end_all_but(Some(caller));
                let t = user
                    .tokens
                    .iter()
                    .copied()
                    .filter(|t| !kept.contains(t))
                    .collect();
                (caller, t)
            }
        };
        let user = Some(user.uuid);
        record(
            &self.ctx,
            &a,
            kind,
            target,
            user,
            Some(session),
            tokens,
            None,
        );
        true
    }

    /// An admin call about user `u` (and session `sess`); true when
    /// acknowledged.
    async fn admin_call(
        &mut self,
        kind: Kind,
        u: usize,
        method: Method,
        path: String,
        body: Option<Value>,
        sess: Option<Uuid>,
    ) -> bool {
        let admin = self.ctx.admin_token.clone();
        let (target, a) = self
            .write(kind, method, &path, body, &admin, NO_TOKEN)
            .await;
        match outcome(&a) {
            Outcome::Acked => {}
            Outcome::Refused => return false,
            // An unlock that may not have happened: the lock ends anyway.
            Outcome::Unknown if kind == Kind::AdminUnlock => return false,
            Outcome::Unknown => {
                self.retire(u);
                return false;
            }
        }
        let user = &mut self.users[u];
        let tokens = match kind {
            Kind::AdminUnlock => Vec::new(),
            Kind::AdminDeleteSession => {
                let Some(v) = user.sessions.iter_mut().find(|x| Some(x.uuid) == sess) else {
                    return true;
                };
                v.alive = false;
                v.tokens.clone()
            }
            _ => {
                user.end_all_but(None);
                user.tokens.clone()
            }
        };
        let user = Some(user.uuid);
        record(&self.ctx, &a, kind, target, user, sess, tokens, None);
        true
    }
}

/// Records an acknowledged call and starts its probes.
#[allow(clippy::too_many_arguments)]
fn record(
    ctx: &Arc<Ctx>,
    a: &Answer,
    kind: Kind,
    target: Target,
    user: Option<Uuid>,
    session: Option<Uuid>,
    tokens: Vec<u32>,
    kid: Option<String>,
) {
    ctx.pool_revoked(&tokens);
    let probe: Vec<(u32, Arc<str>)> = tokens
        .iter()
        .rev()
        .filter_map(|&t| ctx.fresh(t).map(|a| (t, a)))
        .take(3)
        .collect();
    let rev = {
        let mut revs = ctx.revs.lock();
        revs.push(Revocation {
            kind,
            target,
            start: a.start,
            ack: a.end,
            user,
            session,
            seq: a.body["seq"].as_i64(),
            kid,
            tokens,
        });
        revs.len() - 1
    };
    ctx.n_revs.fetch_add(1, Ordering::Relaxed);
    if !probe.is_empty() {
        let c = ctx.clone();
        let h = tokio::spawn(probe_all(c, rev, a.end, probe));
        let mut probes = ctx.probes.lock();
        probes.retain(|h| !h.is_finished());
        probes.push(h);
    }
}

async fn probe_all(ctx: Arc<Ctx>, rev: usize, ack: u64, tokens: Vec<(u32, Arc<str>)>) {
    let n = ctx.targets.instances() + ctx.targets.sidecars();
    let jobs = (0..n).map(|i| probe_one(&ctx, rev, ack, i, &tokens));
    let props = futures_util::future::join_all(jobs).await;
    ctx.props.lock().extend(props);
}

/// Presents the tokens to target `i` until it rejects one (any HTTP answer
/// but 2xx) or the probe window ends.
async fn probe_one(ctx: &Ctx, rev: usize, ack: u64, i: usize, tokens: &[(u32, Arc<str>)]) -> Prop {
    let mut n = 0;
    loop {
        let (target, base) = if i < ctx.targets.instances() {
            ctx.targets.instance(i)
        } else {
            ctx.targets.sidecar(i - ctx.targets.instances())
        };
        let (token, access) = &tokens[n % tokens.len()];
        let (kind, path) = match target {
            Target::Instance { .. } if n % 2 == 1 => (Kind::Me, "/v1/me"),
            Target::Instance { .. } => (Kind::Verify, "/v1/auth/verify"),
            Target::Sidecar(_) => (Kind::SidecarVerify, "/v1/auth/verify"),
        };
        let a = ctx
            .call(Call {
                kind,
                target,
                method: Method::GET,
                url: Client::url(&base, path),
                bearer: Some(access),
                body: None,
                timeout: Duration::from_secs(2),
                token: *token,
                probe: true,
            })
            .await;
        if a.answered() && !a.ok() {
            return Prop {
                rev,
                target,
                rejected: Some((a.end, a.status)),
            };
        }
        if ctx.now() > ack + PROBE_WINDOW_MS * 1000 {
            return Prop {
                rev,
                target,
                rejected: None,
            };
        }
        n += 1;
        // Back to back for the first 50 ms (propagation is expected in
        // well under that), then every 3 ms; 100 ms after no answer.
        if !a.answered() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else if ctx.now() < ack + 50_000 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
}

/// Rotates the signing key every `every` (jittered); the second rotation,
/// and a third of the later ones, as compromised.
pub async fn rotations(ctx: Arc<Ctx>, mut rng: Rng, deadline: Instant, every: Duration) {
    let mut n = 0;
    loop {
        let ms = every.as_millis() as u64;
        let wake = Instant::now() + rng.ms(ms / 2, ms * 3 / 2);
        if wake >= deadline || ctx.stopped() {
            return;
        }
        tokio::time::sleep_until(wake.into()).await;
        n += 1;
        let compromised = n == 2 || (n > 2 && rng.chance(0.35));
        let kind = if compromised {
            Kind::RotateCompromised
        } else {
            Kind::RotateScheduled
        };
        let (target, base) = ctx.targets.any_instance(&mut rng);
        let admin = ctx.admin_token.clone();
        let a = ctx
            .call(Call {
                kind,
                target,
                method: Method::POST,
                url: Client::url(&base, "/v1/admin/keys/rotate"),
                bearer: Some(&admin),
                body: Some(json!({ "compromised": compromised, "reason": "soak" })),
                timeout: WRITE_TIMEOUT,
                token: NO_TOKEN,
                probe: false,
            })
            .await;
        if !a.ok() {
            eprintln!(
                "    [keys] +{:.1}s rotation refused: {}",
                a.end as f64 / 1e6,
                a.status
            );
            continue;
        }
        let kid = a.body["kid"].as_str().map(str::to_owned);
        let previous = a.body["previous_kid"].as_str().unwrap_or("").to_owned();
        let tokens = if compromised {
            ctx.tokens_of_kid(&previous)
        } else {
            Vec::new()
        };
        eprintln!(
            "    [keys] +{:.1}s {} rotation via {}: {} tokens of the old key revoked",
            a.end as f64 / 1e6,
            if compromised {
                "compromised"
            } else {
                "scheduled"
            },
            target.label(),
            tokens.len()
        );
        record(&ctx, &a, kind, target, None, None, tokens, kid);
    }
}
