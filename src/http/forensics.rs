//! Forensics over HTTP (admin only): `POST /v1/admin/forensics/validity`,
//! would a token (or any token of a session) have been accepted at a past
//! moment, and which events of the log decide it.
//!
//! May import: what `http` may (its top comment).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::JsonBody;
use super::extract::AdminCaller;
use super::reply::{ok, Reply};
use crate::service::forensics::{parse_instant, Subject, Validity, Verdict};

/// The question: exactly one of `token` and `session_id`, and when.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidityQuestion {
    /// An access token of this fleet (any age, any key it ever had).
    token: Option<String>,
    /// A session: would any token of it have been accepted?
    session_id: Option<Uuid>,
    /// The moment asked about, RFC 3339.
    #[schema(format = DateTime)]
    at: String,
}

/// The question about a token, as the OpenAPI document gives it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct TokenQuestion {
    /// An access token of this fleet (any age, any key it ever had).
    token: String,
    /// The moment asked about, RFC 3339.
    #[schema(format = DateTime)]
    at: String,
}

/// The question about a session, as the OpenAPI document gives it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SessionQuestion {
    /// A session: would any token of it have been accepted?
    session_id: Uuid,
    /// The moment asked about, RFC 3339.
    #[schema(format = DateTime)]
    at: String,
}

/// Exactly one of the two (the document's `oneOf`; `ValidityQuestion`
/// reads either and names the field when a body has both or neither).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ValidityQuestionSchema {
    Token(TokenQuestion),
    Session(SessionQuestion),
}

/// An event that decides the answer.
#[derive(Serialize, ToSchema)]
pub struct DecidingEvent {
    seq: i64,
    /// The event type, e.g. `logged_out`.
    #[serde(rename = "type")]
    kind: &'static str,
    #[schema(format = DateTime)]
    at: String,
    actor: Option<String>,
}

/// The answer.
#[derive(Serialize, ToSchema)]
pub struct ValidityAnswer {
    valid: bool,
    #[schema(value_type = Verdict)]
    reason: &'static str,
    session_id: Uuid,
    user_id: Option<Uuid>,
    /// The session's login and the events that ended it, in seq order.
    decided_by: Vec<DecidingEvent>,
}

/// The answer's JSON form (also what `recall admin replay` prints).
pub fn validity_answer(v: &Validity) -> ValidityAnswer {
    ValidityAnswer {
        valid: v.valid(),
        reason: v.verdict.as_str(),
        session_id: v.session_id,
        user_id: v.user_id,
        decided_by: v
            .decided_by
            .iter()
            .map(|e| DecidingEvent {
                seq: e.seq,
                kind: e.event.kind(),
                at: e.at.rfc3339(),
                actor: e.actor.clone(),
            })
            .collect(),
    }
}

#[utoipa::path(post, path = "/v1/admin/forensics/validity", tag = "admin",
    request_body = ValidityQuestionSchema,
    responses((status = 200, description = "Whether it would have been accepted then, and why", body = ValidityAnswer)),
    security(("admin" = [])))]
/// `POST /v1/admin/forensics/validity`
pub async fn validity(admin: AdminCaller, body: JsonBody<ValidityQuestion>) -> Reply {
    let q = body.0;
    let subject = Subject::from_parts(q.token, q.session_id)?;
    let at = parse_instant(&q.at)?;
    let answer = admin.recall.admin().validity(subject, at).await?;
    ok(validity_answer(&answer))
}
