//! `GET /openapi.json`: the OpenAPI 3.1 description, built from one table.

use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

/// (method, path, summary, auth, success status, request body fields)
type Op = (
    &'static str,
    &'static str,
    &'static str,
    Auth,
    &'static str,
    &'static [&'static str],
);

#[derive(Clone, Copy)]
enum Auth {
    None,
    Bearer,
    Admin,
}

const OPS: &[Op] = &[
    (
        "post",
        "/v1/users",
        "Register a user",
        Auth::None,
        "201",
        &["username", "password"],
    ),
    (
        "post",
        "/v1/auth/login",
        "Log in with username and password",
        Auth::None,
        "200",
        &["username", "password", "client_type", "device_id"],
    ),
    (
        "post",
        "/v1/auth/refresh",
        "Rotate a refresh token",
        Auth::None,
        "200",
        &["refresh_token"],
    ),
    (
        "post",
        "/v1/auth/logout",
        "Revoke this session",
        Auth::Bearer,
        "204",
        &[],
    ),
    (
        "post",
        "/v1/auth/logout-all",
        "Revoke every session of the user",
        Auth::Bearer,
        "204",
        &[],
    ),
    (
        "post",
        "/v1/auth/logout-others",
        "Revoke every other session of the user",
        Auth::Bearer,
        "204",
        &[],
    ),
    (
        "post",
        "/v1/auth/password",
        "Change password; revokes other sessions",
        Auth::Bearer,
        "204",
        &["current_password", "new_password"],
    ),
    (
        "get",
        "/v1/auth/verify",
        "Forward auth (nginx auth_request, Traefik)",
        Auth::Bearer,
        "204",
        &[],
    ),
    ("get", "/v1/me", "The caller", Auth::Bearer, "200", &[]),
    (
        "get",
        "/v1/sessions",
        "The caller's live sessions",
        Auth::Bearer,
        "200",
        &[],
    ),
    (
        "delete",
        "/v1/sessions/{session_id}",
        "Revoke one of the caller's sessions",
        Auth::Bearer,
        "204",
        &[],
    ),
    (
        "get",
        "/v1/admin/users",
        "Find a user by username",
        Auth::Admin,
        "200",
        &[],
    ),
    (
        "post",
        "/v1/admin/users/{user_id}/revoke-sessions",
        "Revoke every session of a user",
        Auth::Admin,
        "200",
        &["reason"],
    ),
    (
        "post",
        "/v1/admin/users/{user_id}/lock",
        "Lock a user and revoke every session",
        Auth::Admin,
        "200",
        &["duration_secs", "reason"],
    ),
    (
        "post",
        "/v1/admin/users/{user_id}/unlock",
        "Lift a lock",
        Auth::Admin,
        "200",
        &[],
    ),
    (
        "get",
        "/v1/admin/users/{user_id}/sessions",
        "A user's live sessions",
        Auth::Admin,
        "200",
        &[],
    ),
    (
        "delete",
        "/v1/admin/sessions/{session_id}",
        "Revoke any session",
        Auth::Admin,
        "204",
        &[],
    ),
    (
        "post",
        "/v1/admin/keys/rotate",
        "Rotate the signing key (scheduled or compromised)",
        Auth::Admin,
        "200",
        &["compromised", "reason"],
    ),
    (
        "get",
        "/v1/admin/keys",
        "List signing keys",
        Auth::Admin,
        "200",
        &[],
    ),
    (
        "get",
        "/v1/admin/events",
        "The audit log",
        Auth::Admin,
        "200",
        &[],
    ),
    (
        "get",
        "/v1/admin/events/stream",
        "Live events (text/event-stream)",
        Auth::Admin,
        "200",
        &[],
    ),
    (
        "get",
        "/.well-known/jwks.json",
        "Public signing keys (RFC 7517)",
        Auth::None,
        "200",
        &[],
    ),
    (
        "post",
        "/oauth/revoke",
        "Token revocation (RFC 7009)",
        Auth::None,
        "200",
        &["token", "token_type_hint"],
    ),
    (
        "post",
        "/oauth/introspect",
        "Token introspection (RFC 7662)",
        Auth::Admin,
        "200",
        &["token", "token_type_hint"],
    ),
    ("get", "/healthz", "Liveness", Auth::None, "200", &[]),
    (
        "get",
        "/readyz",
        "Readiness: caught up with the log",
        Auth::None,
        "200",
        &[],
    ),
    (
        "get",
        "/metrics",
        "Prometheus metrics",
        Auth::None,
        "200",
        &[],
    ),
    (
        "get",
        "/openapi.json",
        "This document",
        Auth::None,
        "200",
        &[],
    ),
];

/// Builds the document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, auth, status, fields) in OPS {
        let mut op = json!({
            "summary": summary,
            "responses": {
                *status: { "description": "success" },
                "default": { "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
        if !matches!(auth, Auth::None) {
            op["security"] = json!([{ "bearer": [] }]);
        }
        if matches!(auth, Auth::Admin) {
            op["description"] = json!("Admin only: RECALL_ADMIN_TOKEN or a user with role admin.");
        }
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if !fields.is_empty() {
            let props: Map<String, Value> =
                fields.iter().map(|f| (f.to_string(), json!({}))).collect();
            op["requestBody"] = json!({ "content": { "application/json": { "schema": { "type": "object", "properties": props } } } });
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Recall", "version": env!("CARGO_PKG_VERSION"),
                  "description": "JWT auth with real logout: event-sourced revocation shared by a fleet." },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": { "Error": { "type": "object", "required": ["error", "error_description"],
                "properties": { "error": { "type": "string" }, "error_description": { "type": "string" } } } }
        }
    })
}

/// `GET /openapi.json`
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
