//! `DELETE /v1/admin/users/{user_id}`: erasing a user (crypto-shredding).
//!
//! May import: what `http` may (its top comment) (and its sibling modules, never in a circle).

use actix_web::web;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{path_id, AdminCaller};
use super::reply::{ok, Reply};

/// An erasure's outcome.
#[derive(Serialize, ToSchema)]
pub struct Erased {
    /// The `user_erased` event.
    seq: i64,
    /// How many live sessions it ended.
    revoked_sessions: usize,
}

#[utoipa::path(delete, path = "/v1/admin/users/{user_id}", tag = "admin", params(("user_id" = Uuid, Path, description = "The user")),
    responses((status = 200, description = "Erased: every session ended, the user's personal data unreadable for good, the username free", body = Erased)), security(("admin" = [])))]
/// `DELETE /v1/admin/users/{user_id}`
pub async fn erase_user(admin: AdminCaller, path: web::Path<String>) -> Reply {
    let user = path_id(&path, "user")?;
    let env = admin.recall.admin().erase_user(user, &admin.meta).await?;
    ok(Erased {
        seq: env.seq,
        revoked_sessions: env.event.revoked_sessions().len(),
    })
}
