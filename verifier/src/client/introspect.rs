//! RFC 7662 introspection from memory, for the sidecar's introspection
//! endpoint: whether a token is good now, for a caller that checks any
//! binding itself. Imports `error`; keys come from `keys`.

use std::net::IpAddr;

use super::Verifier;
use crate::error::{Principal, VerifyError};

impl Verifier {
    /// RFC 7662 introspection from memory: the token's verified claims when
    /// it is good now (signature, claims, revocation; a bound token counts,
    /// its binding is the resource server's to check with `cnf`), `None`
    /// when it is not, and `Stale` when this verifier cannot tell (fail
    /// closed). Fetches the JWKS first for a key not seen yet.
    ///
    /// A network-bound token is active only for a `client_ip` inside its
    /// session's network (without one, the caller could not check the
    /// binding, so it is not active for it).
    pub async fn introspect(
        &self,
        token: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<Option<Principal>, VerifyError> {
        let result = self.with_new_jwks(|| self.check(token)).await;
        let p = match result {
            Ok(p) => p,
            Err(VerifyError::Stale) => return Err(VerifyError::Stale),
            Err(_) => return Ok(None),
        };
        let Some(net) = p.verified.0.net.clone() else {
            return Ok(Some(p));
        };
        if !self.has_binding_key() && self.key_fetch_due() {
            self.fetch_binding_key().await;
        }
        let key = self.binding_key()?;
        let inside = client_ip.is_some_and(|ip| key.matches(p.session_id, &net, ip));
        Ok(inside.then_some(p))
    }
}
