//! Erasing a user (crypto-shredding): what `DELETE /v1/admin/users/{id}`
//! and `recall admin erase-user` do.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use uuid::Uuid;

use super::admin::Admin;
use crate::error::{Error, Missing};
use crate::events::{Envelope, Meta, Stamp};
use crate::store::StoreError;

impl Admin {
    /// Erases a user: every session ends at once (fleet-wide, like a
    /// lock), the user's data key is destroyed so its personal data in the
    /// log and the sessions reads as null everywhere, and the username is
    /// free again. An unknown or already erased user: `NotFound`.
    pub async fn erase_user(&self, user_id: Uuid, meta: &Meta) -> Result<Envelope, Error> {
        let env = match self.store.erase_user(user_id, &Stamp::now(meta)).await {
            Ok(env) => env,
            Err(StoreError::NotFound) => return Err(Error::NotFound(Missing::User)),
            Err(e) => return Err(e.into()),
        };
        self.usernames.remove(&user_id);
        self.committed(std::slice::from_ref(&env)).await;
        Ok(env)
    }
}
