//! The user-facing service: registration, login, refresh, logout of one,
//! all or other sessions, password change, a user's own sessions, and
//! RFC 7009 revocation by a token's holder.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use uuid::Uuid;

use super::guess::guess_rules;
use super::{
    new_refresh_token, refresh_hash, secs, DeviceId, LoginInput, Password, Principal, RefreshInput,
    TokenResponse, UserAgent, Username,
};
use crate::clock::Timestamp;
use crate::domain::SessionEnd;
use crate::domain::{decide_refresh, may_log_in, BindingRefusal, RefreshLimits, RefreshRefusal};
use crate::error::{Error, TokenRefusal};
use crate::events::{Meta, RevokeCause, Stamp};
use crate::metrics::inc;
use crate::store::{Login, RefreshRules, Refreshed, SessionRecord};

core_service!(
    /// Operations a user does to their own account and sessions.
    Auth
);

impl Auth {
    /// Registers a user with no roles (open registration, or an admin's
    /// `POST /v1/users`).
    pub async fn register(
        &self,
        username: &str,
        password: String,
        meta: &Meta,
    ) -> Result<(Uuid, String), Error> {
        self.core.register(username, password, &[], meta).await
    }

    /// Ends the caller's own session `session_id` (404 if it is not theirs).
    pub async fn end_own_session(
        &self,
        p: &Principal,
        session_id: Uuid,
        meta: &Meta,
    ) -> Result<(), Error> {
        let how = SessionEnd::Revoked {
            cause: RevokeCause::User,
            reason: None,
        };
        self.end_session(session_id, Some(p.user_id), how, meta)
            .await
    }

    /// The caller's username. Usernames never change, so after the first
    /// read it comes from memory: `GET /v1/me` costs no store call.
    pub async fn username(&self, p: &Principal) -> Result<String, Error> {
        if let Some(name) = self.usernames.get(&p.user_id) {
            return Ok(name);
        }
        let user = self.me(p).await?;
        self.usernames.insert(p.user_id, user.username.clone());
        Ok(user.username)
    }

    /// The caller's own account.
    pub async fn me(&self, p: &Principal) -> Result<crate::store::UserRecord, Error> {
        self.store
            .user_by_id(p.user_id)
            .await?
            .ok_or(Error::Token(TokenRefusal::UnknownUser))
    }

    /// The caller's live sessions.
    pub async fn sessions(&self, p: &Principal) -> Result<Vec<super::SessionView>, Error> {
        self.core.live_sessions(p.user_id).await
    }

    /// RFC 7009: the holder of a token ends its session.
    pub async fn revoke_token(&self, token: &str, meta: &Meta) -> Result<(), Error> {
        self.core.revoke_token(token, meta).await
    }

    /// Ends every session of the caller, this one included.
    pub async fn logout_all(&self, p: &Principal, meta: &Meta) -> Result<(), Error> {
        self.end_all_sessions(p.user_id, RevokeCause::User, None, meta)
            .await
            .map(|_| ())
    }

    /// Username and password login; one answer for every failure.
    pub async fn login(&self, input: LoginInput, meta: &Meta) -> Result<TokenResponse, Error> {
        let client_type = input.client_type.as_str();
        // The proof first: a bad one costs no hash and no guess.
        let proof = self.token_proof(&input.dpop).await?;
        let now = Timestamp::now();
        let name = input.username.to_lowercase();
        let Ok(username) = Username::parse(&name) else {
            // Not a possible username: still pay for one verify (same timing).
            self.hasher.verify(input.password, None).await?;
            return Err(Error::BadCredentials);
        };
        let guess = self.reserve_guess(username.as_str(), meta).await?;
        let user = match self.store.user_by_name(username.as_str()).await {
            Ok(user) => user,
            Err(e) => {
                guess.release().await;
                return Err(e.into());
            }
        };
        let verified = self
            .hasher
            .verify(
                input.password,
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await;
        let ok = match verified {
            Ok(ok) => ok,
            Err(saturated) => {
                // Never checked: the guess goes back to the budget.
                guess.release().await;
                return Err(saturated.into());
            }
        };
        guess.settle();
        let Some(user) = user.filter(|_| ok) else {
            self.metrics.login("failed");
            let env = self
                .store
                .guess_failed(
                    username.as_str(),
                    &guess_rules(self.settings.lockout),
                    &Stamp::now(meta),
                )
                .await?;
            self.committed(&[env]).await;
            return Err(Error::BadCredentials);
        };
        let refresh_token = new_refresh_token();
        let session_id = Uuid::now_v7();
        let policy = self.policy_for(client_type).await?;
        let terms = self.terms_for(&policy, session_id, input.ip, proof.map(|p| p.jkt))?;
        let created_at = Timestamp::now();
        let record = SessionRecord {
            id: session_id,
            user_id: user.id,
            client_type: client_type.to_owned(),
            device_id: input.device_id.map(DeviceId::into_string),
            ip: meta.ip.clone(),
            user_agent: input.user_agent.map(UserAgent::into_string),
            created_at,
            refresh_expires_at: now.plus(secs(policy.refresh_ttl_secs)),
            revoked_at: None,
            terms,
        };
        let login_meta = Meta::user(user.id, meta.ip.clone());
        let refresh = refresh_hash(&refresh_token);
        let created = self
            .store
            .login(
                &record,
                &refresh,
                may_log_in,
                &Stamp::new(&login_meta, created_at),
            )
            .await?;
        let env = match created {
            Login::Created(env) => env,
            // A lock committed while the hash ran: the lock wins.
            Login::Locked { until } => return Err(Error::locked(until)),
        };
        self.committed(&[env]).await;
        self.metrics.login("succeeded");
        let jkt = record.terms.jkt.clone();
        self.token_response(&record, refresh_token, jkt).await
    }

    /// Rotates a refresh token; reuse of a spent one revokes its session.
    /// A session bound to a network or a DPoP key refreshes only from it.
    pub async fn refresh(&self, input: RefreshInput, meta: &Meta) -> Result<TokenResponse, Error> {
        let token = input.refresh_token.as_str();
        if token.is_empty() || token.len() > 512 {
            return Err(Error::Grant(RefreshRefusal::Unknown));
        }
        let proof = self.token_proof(&input.dpop).await?;
        let jkt = proof.map(|p| p.jkt);
        let check = {
            let (key, ip, jkt) = (self.binding_key().clone(), input.ip, jkt.clone());
            Box::new(move |s: &SessionRecord| {
                if let Some(net) = &s.terms.net {
                    if !ip.is_some_and(|ip| key.matches(s.id, net, ip)) {
                        return Some(BindingRefusal::Network);
                    }
                }
                match &s.terms.jkt {
                    Some(bound) if jkt.as_ref() != Some(bound) => Some(BindingRefusal::Key),
                    _ => None,
                }
            })
        };
        let now = Timestamp::now();
        let limits = RefreshLimits {
            refresh_ttl: secs(self.settings.refresh_ttl_secs),
            grace: secs(self.settings.refresh_grace_secs),
            session_max: secs(self.settings.session_max_secs),
        };
        let rules = RefreshRules {
            decide: Box::new(move |facts| decide_refresh(facts, &limits, now)),
            check,
        };
        let next = new_refresh_token();
        let outcome = self
            .store
            .refresh(
                &refresh_hash(token),
                &refresh_hash(&next),
                rules,
                &Stamp::new(meta, now),
            )
            .await?;
        let refused = match outcome {
            Ok(Refreshed { session, event }) => {
                self.committed(&[event]).await;
                inc(&self.metrics.refreshes);
                // A bound session's key, or the key of this proof.
                let jkt = session.terms.jkt.clone().or(jkt);
                return self.token_response(&session, next, jkt).await;
            }
            Err(refused) => refused,
        };
        if let Some(event) = refused.event {
            tracing::warn!(seq = event.seq, "refresh token reuse: session revoked");
            self.committed(&[event]).await;
        }
        match (refused.refusal, refused.session) {
            (RefreshRefusal::Elsewhere(refusal), Some(session)) => {
                self.metrics.token_rejected(match refusal {
                    BindingRefusal::Network => "refresh_other_network",
                    BindingRefusal::Key => "refresh_dpop_key",
                });
                if session.terms.revoke_on_mismatch {
                    self.revoke_for_mismatch(session.user_id, session.id, refusal, input.ip)
                        .await;
                }
                Err(match refusal {
                    BindingRefusal::Network => Error::Grant(RefreshRefusal::Elsewhere(refusal)),
                    BindingRefusal::Key => Error::Dpop {
                        refusal: if jkt.is_some() {
                            crate::error::DpopRefusal::WrongKey
                        } else {
                            crate::error::DpopRefusal::Missing
                        },
                        resource: false,
                    },
                })
            }
            (refusal, _) => Err(Error::Grant(refusal)),
        }
    }

    /// Ends the caller's session. Idempotent.
    pub async fn logout(&self, p: &Principal, meta: &Meta) -> Result<(), Error> {
        self.end_session(p.session_id, Some(p.user_id), SessionEnd::Logout, meta)
            .await
    }

    /// Ends every session of the caller but the one making the call.
    pub async fn logout_others(&self, p: &Principal, meta: &Meta) -> Result<(), Error> {
        let env = self
            .store
            .revoke_other_sessions(
                p.user_id,
                Some(p.session_id),
                RevokeCause::User,
                None,
                &Stamp::now(meta),
            )
            .await?;
        self.committed(&[env]).await;
        Ok(())
    }

    /// Changes the caller's password and ends their other sessions.
    pub async fn change_password(
        &self,
        p: &Principal,
        current: String,
        new: String,
        meta: &Meta,
    ) -> Result<(), Error> {
        let new = Password::parse(new, "new_password")?;
        let user = self
            .store
            .user_by_id(p.user_id)
            .await?
            .ok_or(Error::Token(TokenRefusal::UnknownUser))?;
        // `current_password` is a guess like a login's (API.md, G10).
        let guess = self.reserve_guess(&user.username, meta).await?;
        let ok = match self.hasher.verify(current, Some(user.password_hash)).await {
            Ok(ok) => ok,
            Err(saturated) => {
                guess.release().await;
                return Err(saturated.into());
            }
        };
        if !ok {
            guess.settle();
            let envs = self
                .store
                .password_guess_failed(
                    &user.username,
                    p.user_id,
                    p.session_id,
                    &guess_rules(self.settings.lockout),
                    &Stamp::now(meta),
                )
                .await?;
            self.committed(&envs).await;
            return Err(Error::BadCredentials);
        }
        // Right: the change clears the counts. Until it is handed to the
        // store, a vanished caller gives the guess back.
        let hash = match self.hasher.hash(new.0).await {
            Ok(hash) => hash,
            Err(e) => {
                guess.release().await;
                return Err(e.into());
            }
        };
        guess.settle();
        let env = self
            .store
            .change_password(p.user_id, &hash, Some(p.session_id), &Stamp::now(meta))
            .await?;
        self.committed(&[env]).await;
        Ok(())
    }
}
