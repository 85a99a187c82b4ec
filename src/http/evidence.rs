//! The log as evidence over HTTP (admin only): verifying its hash chain and
//! its signed checkpoints.
//!
//! May import: what `http` may (its top comment).

use actix_web::web;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::errors::ApiError;
use super::extract::AdminCaller;
use super::reply::{ok, Reply};
use crate::store::evidence::Checkpoint;

/// `?from=SEQ`
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// Verify from this sequence number (default: the first event kept).
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "super::body::integer")]
    from: Option<i64>,
}

/// What verifying the chain found.
#[derive(Serialize, ToSchema)]
pub struct VerifyReport {
    /// Every event from `from` to the head checked out.
    ok: bool,
    /// The last seq whose bytes and link checked out.
    verified_through: i64,
    /// The first seq that did not: edited, missing, or cut from the tail.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_bad_seq: Option<i64>,
}

/// A signed checkpoint of the chain.
#[derive(Serialize, ToSchema)]
pub struct CheckpointView {
    /// The checkpoint event's own seq.
    seq: i64,
    #[schema(format = DateTime)]
    at: String,
    /// The events up to this seq...
    through_seq: i64,
    /// ...hash to this (hex SHA-256, the hash of event `through_seq`).
    head: String,
    /// The signing key (in the JWKS).
    kid: String,
    /// Compact JWS (EdDSA, `typ: recall-checkpoint+jwt`) over
    /// `{iss, through_seq, head, iat}`.
    jws: String,
}

fn view(cp: Checkpoint) -> CheckpointView {
    CheckpointView {
        seq: cp.seq,
        at: cp.at.rfc3339(),
        through_seq: cp.through_seq,
        head: cp.head,
        kid: cp.kid,
        jws: cp.jws,
    }
}

#[utoipa::path(get, path = "/v1/admin/log/verify", tag = "admin", params(VerifyQuery),
    responses((status = 200, description = "What verifying the chain found", body = VerifyReport)), security(("admin" = [])))]
/// `GET /v1/admin/log/verify?from=SEQ`
pub async fn verify(admin: AdminCaller, q: web::Query<VerifyQuery>) -> Reply {
    let from = q.from.unwrap_or(0);
    if from < 0 {
        return Err(ApiError::InvalidRequest(
            "from: a sequence number, 0 or more".into(),
        ));
    }
    let v = admin.recall.admin().verify_log(from).await?;
    ok(VerifyReport {
        ok: v.ok,
        verified_through: v.verified_through,
        first_bad_seq: v.first_bad_seq,
    })
}

#[utoipa::path(get, path = "/v1/admin/log/checkpoint", tag = "admin",
    responses((status = 200, description = "The latest signed checkpoint", body = CheckpointView)), security(("admin" = [])))]
/// `GET /v1/admin/log/checkpoint`: the latest signed checkpoint.
pub async fn latest_checkpoint(admin: AdminCaller) -> Reply {
    match admin.recall.admin().checkpoint(false, &admin.meta).await? {
        Some(cp) => ok(view(cp)),
        None => Err(ApiError::NotFound("no checkpoint yet".into())),
    }
}

#[utoipa::path(post, path = "/v1/admin/log/checkpoint", tag = "admin",
    responses((status = 200, description = "A checkpoint of the log as it is now (the latest, if nothing was appended since)", body = CheckpointView)), security(("admin" = [])))]
/// `POST /v1/admin/log/checkpoint`: signs a checkpoint of the log now.
pub async fn new_checkpoint(admin: AdminCaller) -> Reply {
    match admin.recall.admin().checkpoint(true, &admin.meta).await? {
        Some(cp) => ok(view(cp)),
        None => Err(ApiError::NotFound("the log is empty".into())),
    }
}
