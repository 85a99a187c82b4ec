//! Bound tokens on Recall's own routes: a token bound to a network must
//! come from it, a token bound to a DPoP key must come with a fresh proof
//! of that key, and a use from elsewhere under `on_mismatch = revoke`
//! ends the session fleet-wide (an event, and a CAEP session-revoked SET
//! whose reason says why).
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use std::net::IpAddr;

use uuid::Uuid;

use super::dpop::DpopInput;
use super::{Core, Principal};
use crate::domain::{BindingRefusal, SessionEnd};
use crate::error::{DpopRefusal, Error, TokenRefusal};
use crate::events::{Meta, RevokeCause};

/// A token as a request presents it: the token, whether it came with the
/// `DPoP` scheme, the request's DPoP input, and the client address.
#[derive(Debug, Clone)]
pub struct Presented {
    pub token: String,
    pub dpop_scheme: bool,
    pub dpop: DpopInput,
    pub ip: Option<IpAddr>,
}

impl Core {
    /// Resolves a token presented with a request: the in-memory checks of
    /// `authenticate`, then its binding (network, DPoP key).
    pub async fn authenticate_request(&self, p: &Presented) -> Result<Principal, Error> {
        let principal = self.authenticate(&p.token)?;
        self.check_binding(&principal, p).await?;
        Ok(principal)
    }

    /// The network binding of a verified token, with no I/O: `Err(true)`
    /// when the request is from elsewhere and the session must be revoked
    /// (`refuse_elsewhere` does both), `Err(false)` when it is only refused.
    pub fn check_network(&self, principal: &Principal, ip: Option<IpAddr>) -> Result<(), bool> {
        let claims = principal.claims();
        match &claims.net {
            None => Ok(()),
            Some(net) if ip.is_some_and(|ip| self.binding_key().matches(claims.sid, net, ip)) => {
                Ok(())
            }
            Some(net) => {
                self.metrics.token_rejected("other_network");
                Err(net.rv)
            }
        }
    }

    /// The refusal of a token used from another network, revoking its
    /// session first when its policy says so.
    pub async fn refuse_elsewhere(
        &self,
        principal: &Principal,
        revoke: bool,
        ip: Option<IpAddr>,
    ) -> Error {
        if revoke {
            let claims = principal.claims();
            self.revoke_for_mismatch(claims.sub, claims.sid, BindingRefusal::Network, ip)
                .await;
        }
        Error::Token(TokenRefusal::OtherNetwork)
    }

    /// Whether the request may use this (already verified) token.
    pub async fn check_binding(&self, principal: &Principal, p: &Presented) -> Result<(), Error> {
        let claims = principal.claims();
        if let Err(revoke) = self.check_network(principal, p.ip) {
            return Err(self.refuse_elsewhere(principal, revoke, p.ip).await);
        }
        let refuse = |refusal| Error::Dpop {
            refusal,
            resource: true,
        };
        match (&claims.cnf, p.dpop_scheme) {
            (None, false) => Ok(()),
            (None, true) => Err(refuse(DpopRefusal::NotBound)),
            (Some(_), false) => {
                self.metrics.token_rejected("dpop_as_bearer");
                Err(refuse(DpopRefusal::BoundAsBearer))
            }
            (Some(cnf), true) => {
                let proof = match &p.dpop.proof {
                    Some(Ok(proof)) => proof,
                    Some(Err(())) => {
                        return Err(refuse(DpopRefusal::Invalid(
                            recall_verifier::dpop::DpopError::Malformed,
                        )))
                    }
                    None => return Err(refuse(DpopRefusal::Missing)),
                };
                let proof = self.checked_proof(proof, &p.dpop, Some(&p.token), true)?;
                if proof.jkt != cnf.jkt {
                    self.metrics.token_rejected("dpop_wrong_key");
                    return Err(refuse(DpopRefusal::WrongKey));
                }
                self.first_use(&proof, true).await
            }
        }
    }

    /// A verifier's report that a network-bound token came from `ip`:
    /// checked here (signature, state, binding), and the session revoked
    /// when the address is outside its network and its policy says so.
    pub async fn report_mismatch(&self, token: &str, ip: IpAddr) -> Result<(), Error> {
        let principal = self.authenticate(token)?;
        let claims = principal.claims();
        if let Some(net) = claims.net.as_ref().filter(|n| n.rv) {
            if !self.binding_key().matches(claims.sid, net, ip) {
                self.revoke_for_mismatch(claims.sub, claims.sid, BindingRefusal::Network, Some(ip))
                    .await;
            }
        }
        Ok(())
    }

    /// Ends a session used from elsewhere when its policy says so. Best
    /// effort: the request is refused either way; a failure is logged.
    pub(super) async fn revoke_for_mismatch(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        why: BindingRefusal,
        ip: Option<IpAddr>,
    ) {
        let how = SessionEnd::Revoked {
            cause: RevokeCause::BindingMismatch,
            reason: Some(why.reason().to_owned()),
        };
        let meta = Meta {
            actor: Some("system".into()),
            ip: ip.map(|ip| ip.to_string()),
        };
        match self.end_session(session_id, None, how, &meta).await {
            Ok(()) => {
                tracing::warn!(%user_id, %session_id, reason = why.reason(), "session revoked: used from elsewhere")
            }
            Err(e) => {
                tracing::warn!(%session_id, error = %e, "could not revoke a mismatched session")
            }
        }
    }
}
