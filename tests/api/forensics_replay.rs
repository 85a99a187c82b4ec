//! Forensics against the live truth: a seeded random run (logins,
//! refreshes, refresh-token reuse, logouts, locks, password changes, key
//! rotations) records what the instance answered for every token it had
//! handed out, between every two steps; afterwards the log must answer
//! the same for every (token, T) and every (session, T). And `recall
//! admin replay` prints what the HTTP route answers.
//!
//! Rerun a failure with `RECALL_FORENSICS_SEED=<seed>`.

use recall::state::Rejection;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::both_stores;
use crate::cli::{cli_app, run_one, run_raw};
use crate::fixtures::start_tuned;
use crate::forensics::{claim, moment, session_at, token_at};
use crate::helpers::*;
use crate::resets::Rng;

both_stores!(the_log_agrees_with_every_live_verdict);

/// One of `n` (the seeded generator's).
fn pick(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

struct User {
    name: String,
    id: String,
    password: String,
}

struct Held {
    session: usize,
    access: String,
}

struct Open {
    user: usize,
    id: String,
    refresh: String,
    spent: Vec<String>,
}

/// What the instance said of one token at T (its state's reason, which
/// its HTTP answer agreed with).
struct Seen {
    t: i64,
    token: usize,
    reason: &'static str,
}

/// What the instance's state said of a session itself at T: its check
/// with the key active then, which passes the key (`live_session`).
struct SeenSession {
    t: i64,
    session: usize,
    reason: &'static str,
}

/// A test's world: the users, the sessions and every token handed out.
struct World {
    users: Vec<User>,
    sessions: Vec<Open>,
    tokens: Vec<Held>,
    passwords: usize,
}

fn reason_of(rejection: Rejection) -> &'static str {
    match rejection {
        Rejection::UnknownKey => "unknown_key",
        Rejection::KeyRevoked => "key_revoked",
        Rejection::KeyRetired => "key_retired",
        Rejection::SessionRevoked => "session_revoked",
        Rejection::UserLocked { .. } => "user_locked",
    }
}

/// The instance's verdict on `token` at `t`: its in-memory state's
/// reason, which `GET /v1/auth/verify` must agree with.
async fn live(app: &TestApp, token: &str, t: i64, seed: u64) -> &'static str {
    let (kid, sub, sid) = (
        kid_of(token),
        claim_id(token, "sub"),
        claim_id(token, "sid"),
    );
    let checked = app
        .recall()
        .sync()
        .state()
        .check(&kid, sub, sid, claim(token, "iat"), t);
    let reason = checked.map_or_else(reason_of, |()| "valid");
    let res = app.get("/v1/auth/verify", Some(token)).await;
    assert_eq!(
        res.status == 204,
        reason == "valid",
        "seed {seed}: verify {} vs state {reason}",
        res.status
    );
    reason
}

/// The instance's verdict on session `sid` of `sub` itself at `t`.
fn live_session(app: &TestApp, sub: Uuid, sid: Uuid, t: i64) -> &'static str {
    let state = app.recall().sync().state();
    let active = state.active_kid().expect("an active key").to_owned();
    let checked = state.check(&active, sub, sid, t / 1000, t);
    checked.map_or_else(reason_of, |()| "valid")
}

fn claim_id(token: &str, name: &str) -> Uuid {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims[name].as_str().unwrap().parse().unwrap()
}

impl World {
    /// A fresh session of user `u`, if it may log in.
    async fn login(&mut self, app: &TestApp, u: usize) {
        let user = &self.users[u];
        let res = app.try_login(&user.name, &user.password).await;
        if res.status != 200 {
            assert_eq!(res.status, 403, "login: {}", res.body);
            return;
        }
        let s = Session::from_body(&res.body, &user.id);
        self.sessions.push(Open {
            user: u,
            id: s.session_id,
            refresh: s.refresh,
            spent: Vec::new(),
        });
        let session = self.sessions.len() - 1;
        self.tokens.push(Held {
            session,
            access: s.access,
        });
    }

    /// The newest token of a session.
    fn newest(&self, session: usize) -> &str {
        let held = self.tokens.iter().rev().find(|h| h.session == session);
        &held.expect("every session has a token").access
    }

    /// One random step.
    async fn step(&mut self, app: &TestApp, rng: &mut Rng) {
        let (u, s) = (pick(rng, self.users.len()), pick(rng, self.sessions.len()));
        let user_id = self.users[u].id.clone();
        match rng.below(13) {
            0..=2 => self.login(app, u).await,
            3..=5 => {
                let open = &mut self.sessions[s];
                let reuse = !open.spent.is_empty() && rng.below(4) == 0;
                let presented = if reuse {
                    open.spent[pick(rng, open.spent.len())].clone()
                } else {
                    open.refresh.clone()
                };
                let res = app.refresh(&presented).await;
                if res.status == 200 {
                    let fresh = res.body["refresh_token"].as_str().unwrap().to_owned();
                    open.spent.push(std::mem::replace(&mut open.refresh, fresh));
                    let access = res.body["access_token"].as_str().unwrap().to_owned();
                    self.tokens.push(Held { session: s, access });
                }
            }
            6 => {
                let _ = app.logout(self.newest(s)).await;
            }
            7 => {
                let path = "/v1/auth/logout-all";
                let _ = app.post(path, Some(self.newest(s)), json!({})).await;
            }
            8 => {
                // Half of the locks end on their own a second later.
                let body = match rng.below(2) {
                    0 => json!({ "duration_secs": 1 }),
                    _ => json!({}),
                };
                let _ = app.admin_user_action(&user_id, "lock", body).await;
            }
            9 | 10 => {
                let _ = app.admin_user_action(&user_id, "unlock", json!({})).await;
            }
            11 => {
                let u = self.sessions[s].user;
                self.passwords += 1;
                let new = format!("password number {}", self.passwords);
                let old = self.users[u].password.clone();
                let res = app.change_password(self.newest(s), &old, &new).await;
                if res.status == 204 {
                    self.users[u].password = new;
                }
            }
            _ => {
                let compromised = rng.below(2) == 0;
                let res = app.rotate_key(json!({ "compromised": compromised })).await;
                assert_eq!(res.status, 200, "{}", res.body);
            }
        }
    }
}

async fn the_log_agrees_with_every_live_verdict(kind: Kind) {
    let seed = std::env::var("RECALL_FORENSICS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| recall::clock::Timestamp::now().ms() as u64);
    eprintln!("forensics random run ({kind:?}): RECALL_FORENSICS_SEED={seed}");
    let mut rng = Rng(seed);
    // No grace: a spent refresh token presented again is theft at once.
    let (_b, app) = start_tuned(kind, |s| s.refresh_grace_secs = 0).await;
    let mut world = World {
        users: Vec::new(),
        sessions: Vec::new(),
        tokens: Vec::new(),
        passwords: 0,
    };
    for i in 0..3 {
        let name = username(&format!("fr{i}"));
        let id = app.register(&name).await;
        world.users.push(User {
            name,
            id,
            password: PASSWORD.to_owned(),
        });
        world.login(&app, i).await;
    }
    let (mut seen, mut seen_sessions) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        world.step(&app, &mut rng).await;
        let t = moment().await;
        for (i, held) in world.tokens.iter().enumerate() {
            let reason = live(&app, &held.access, t, seed).await;
            seen.push(Seen {
                t,
                token: i,
                reason,
            });
        }
        for (i, open) in world.sessions.iter().enumerate() {
            let sub = world.users[open.user].id.parse().unwrap();
            let reason = live_session(&app, sub, open.id.parse().unwrap(), t);
            seen_sessions.push(SeenSession {
                t,
                session: i,
                reason,
            });
        }
    }
    let mut tally = std::collections::BTreeMap::new();
    for s in &seen {
        *tally.entry(s.reason).or_insert(0) += 1;
    }
    eprintln!(
        "seed {seed}: {} tokens, {} sessions, live verdicts {tally:?}",
        world.tokens.len(),
        world.sessions.len()
    );
    for s in &seen {
        let held = &world.tokens[s.token];
        let answer = token_at(&app, &held.access, s.t).await;
        assert_eq!(
            answer["reason"], s.reason,
            "seed {seed}: token {} of session {} at {}: {answer}",
            s.token, held.session, s.t
        );
    }
    // A session: its own revocation or lock if its state had one at T;
    // else valid when any of its tokens was; else its newest token's reason.
    for seen_session in &seen_sessions {
        let (t, i) = (seen_session.t, seen_session.session);
        let reasons: Vec<&str> = seen
            .iter()
            .filter(|s| s.t == t && world.tokens[s.token].session == i)
            .map(|s| s.reason)
            .collect();
        let expected = match seen_session.reason {
            "valid" if reasons.contains(&"valid") => "valid",
            "valid" => reasons.last().expect("a token"),
            own => own,
        };
        let answer = session_at(&app, &world.sessions[i].id, t).await;
        assert_eq!(
            answer["reason"], expected,
            "seed {seed}: session {i} at {t}: tokens {reasons:?}: {answer}"
        );
    }
    app.stop().await;
}

/// `recall admin replay` prints what the HTTP route answers, for a token
/// and for a session, and refuses what the route refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_replay_agrees_with_the_http_answer() {
    let (b, app) = cli_app().await;
    let (_, s) = app.signup("fx-cli").await;
    let before = moment().await;
    assert_eq!(app.logout(&s.access).await.status, 204);
    let after = moment().await;
    for t in [before, after] {
        let at = recall::clock::rfc3339(t);
        let printed = run_one(&b, &["replay", "--at", &at, "--token", &s.access]).await;
        assert_eq!(printed, token_at(&app, &s.access, t).await);
        let printed = run_one(&b, &["replay", "--at", &at, "--session", &s.session_id]).await;
        assert_eq!(printed, session_at(&app, &s.session_id, t).await);
    }
    assert_eq!(
        run_one(
            &b,
            &[
                "replay",
                "--at",
                &recall::clock::rfc3339(after),
                "--token",
                &s.access
            ]
        )
        .await["reason"],
        "session_revoked"
    );
    for bad in [
        vec!["replay", "--at", "yesterday", "--token", &s.access],
        vec![
            "replay",
            "--at",
            "2026-01-01T00:00:00Z",
            "--token",
            "forged.token.here",
        ],
        vec!["replay", "--at", "2026-01-01T00:00:00Z"],
        vec![
            "replay",
            "--at",
            "2026-01-01T00:00:00Z",
            "--token",
            &s.access,
            "--session",
            &s.session_id,
        ],
    ] {
        let (ok, out, _) = run_raw(&b, &bad, "").await;
        assert!(!ok, "{bad:?} succeeded: {out:?}");
        assert!(out.is_empty(), "{bad:?} printed {out:?}");
    }
    app.stop().await;
}
