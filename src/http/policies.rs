//! Client policies over HTTP (`/v1/admin/policies`), and the report a
//! verifier sends when a network-bound token whose policy says `revoke`
//! was used from elsewhere (`POST /v1/revocations/mismatch`).
//!
//! May import: what `http` may (its top comment).

use std::collections::BTreeMap;
use std::net::IpAddr;

use actix_web::{web, HttpRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::JsonBody;
use super::extract::{bearer, AdminCaller};
use super::reply::{no_content, ok, Reply};
use crate::domain::Policy;
use crate::service::Recall;

/// Every client type's policy.
#[derive(Serialize, ToSchema)]
pub struct PolicyList {
    /// `web`, `mobile` and `service`.
    policies: BTreeMap<String, Policy>,
}

/// A policy as set, and the event that set it.
#[derive(Serialize, ToSchema)]
pub struct PolicySet {
    policy: Policy,
    seq: i64,
}

#[utoipa::path(get, path = "/v1/admin/policies", tag = "admin",
    responses((status = 200, description = "Each client type's policy", body = PolicyList)),
    security(("admin" = [])))]
/// `GET /v1/admin/policies`
pub async fn list(admin: AdminCaller) -> Reply {
    let views = admin.recall.policies().await?;
    let policies = views.into_iter().map(|(t, v)| (t, v.policy)).collect();
    ok(PolicyList { policies })
}

#[utoipa::path(put, path = "/v1/admin/policies/{client_type}", tag = "admin",
    params(("client_type" = inline(crate::service::ClientType), Path, description = "web, mobile or service")),
    request_body = Policy,
    responses((status = 200, description = "Set, fleet-wide; applies to later logins", body = PolicySet),
        (status = 404, description = "No such client type", body = super::errors::ErrorBody)),
    security(("admin" = [])))]
/// `PUT /v1/admin/policies/{client_type}`
pub async fn set(admin: AdminCaller, path: web::Path<String>, body: JsonBody<Policy>) -> Reply {
    let controls = admin.recall.admin();
    let view = controls.set_policy(&path, body.0, &admin.meta).await?;
    ok(PolicySet {
        policy: view.policy,
        seq: view.seq,
    })
}

/// A verifier's report of a bound token used from elsewhere.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MismatchReport {
    /// The access token as presented.
    token: String,
    /// The client address it came from.
    #[schema(schema_with = ip_address_schema)]
    client_ip: IpAddr,
}

/// The schema of an `IpAddr` field: an IPv4 or an IPv6 address (JSON
/// Schema has a format for each, none for either).
fn ip_address_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let address = |format| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(format)))
    };
    AnyOfBuilder::new()
        .item(address(KnownFormat::Ipv4))
        .item(address(KnownFormat::Ipv6))
        .description(Some("The client address it came from: IPv4 or IPv6."))
        .build()
        .into()
}

#[utoipa::path(post, path = "/v1/revocations/mismatch", tag = "feed", request_body = MismatchReport,
    responses((status = 204, description = "Checked: revoked when it was from elsewhere and the policy says so"),
        (status = 401, description = "Not a service credential, or the token is not valid", body = super::errors::ErrorBody)),
    security(("service" = []), ("admin" = [])))]
/// `POST /v1/revocations/mismatch`: Recall checks the report itself (the
/// token's signature and binding against the reported address), so a
/// verifier cannot revoke a session that was used from its own network.
pub async fn mismatch(
    req: HttpRequest,
    recall: web::Data<Recall>,
    body: JsonBody<MismatchReport>,
) -> Reply {
    recall.feed().authorize(bearer(&req)?).await?;
    recall
        .report_mismatch(&body.0.token, body.0.client_ip)
        .await?;
    no_content()
}
