//! Bad input gets a clear error and changes nothing; operations endpoints.

use serde_json::json;

use crate::both_stores;
use crate::fixtures::start;
use crate::helpers::{username, Kind};

both_stores!(
    bad_input_is_rejected_and_changes_nothing,
    operations_endpoints_answer
);

/// Every route answers any method it does not serve with 405 and `Allow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_methods_get_405_with_allow() {
    let (_b, app) = start(Kind::Sqlite).await;
    let id = uuid::Uuid::now_v7();
    let templates = [
        ("POST", "/v1/users"),
        ("POST", "/v1/auth/login"),
        ("POST", "/v1/auth/refresh"),
        ("POST", "/v1/auth/logout"),
        ("POST", "/v1/auth/logout-all"),
        ("POST", "/v1/auth/logout-others"),
        ("POST", "/v1/auth/password"),
        ("GET", "/v1/auth/verify"),
        ("GET", "/v1/me"),
        ("GET", "/v1/sessions"),
        ("DELETE", "/v1/sessions/{session_id}"),
        ("GET", "/v1/admin/users"),
        ("POST", "/v1/admin/users/{user_id}/revoke-sessions"),
        ("POST", "/v1/admin/users/{user_id}/lock"),
        ("POST", "/v1/admin/users/{user_id}/unlock"),
        ("GET", "/v1/admin/users/{user_id}/sessions"),
        ("DELETE", "/v1/admin/sessions/{session_id}"),
        ("POST", "/v1/admin/keys/rotate"),
        ("GET", "/v1/admin/keys"),
        ("GET", "/v1/admin/events"),
        ("GET", "/v1/admin/events/stream"),
        ("GET", "/v1/admin/log/verify"),
        ("GET", "/v1/admin/log/checkpoint"),
        ("POST", "/v1/admin/log/checkpoint"),
        ("POST", "/v1/admin/forensics/validity"),
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/.well-known/oauth-authorization-server"),
        ("GET", "/.well-known/openid-configuration"),
        ("GET", "/.well-known/oauth-protected-resource"),
        ("POST", "/oauth/token"),
        ("POST", "/v1/admin/services"),
        ("GET", "/v1/admin/services"),
        ("DELETE", "/v1/admin/services/{service_id}"),
        ("DELETE", "/v1/admin/users/{user_id}"),
        ("GET", "/v1/revocations"),
        ("POST", "/v1/revocations/mismatch"),
        ("GET", "/v1/admin/policies"),
        ("PUT", "/v1/admin/policies/{client_type}"),
        ("GET", "/.well-known/ssf-configuration"),
        ("POST", "/ssf/streams"),
        ("GET", "/ssf/streams"),
        ("PATCH", "/ssf/streams"),
        ("PUT", "/ssf/streams"),
        ("DELETE", "/ssf/streams"),
        ("GET", "/ssf/status"),
        ("POST", "/ssf/status"),
        ("POST", "/ssf/verify"),
        ("POST", "/ssf/poll/{stream_id}"),
        ("GET", "/v1/admin/ssf/streams"),
        ("GET", "/v1/revocations/stream"),
        ("POST", "/oauth/revoke"),
        ("POST", "/oauth/introspect"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ];
    // The OpenAPI document describes exactly these routes and methods.
    let spec = app.get("/openapi.json", None).await;
    let paths = spec.body["paths"].as_object().unwrap();
    let unique: std::collections::BTreeSet<_> = templates.iter().map(|t| t.1).collect();
    assert_eq!(paths.len(), unique.len(), "{:?}", paths.keys());
    for (method, template) in &templates {
        assert!(
            spec.body["paths"][*template][method.to_lowercase()].is_object(),
            "{method} {template} missing from /openapi.json"
        );
    }
    // Each path with every method it serves ("GET, POST"), as Allow says.
    let mut routes: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for (m, t) in &templates {
        let concrete = t
            .replace("{session_id}", &id.to_string())
            .replace("{user_id}", &id.to_string())
            .replace("{service_id}", &id.to_string())
            .replace("{stream_id}", &id.to_string())
            .replace("{client_type}", "mobile");
        routes.entry(concrete).or_default().push(m);
    }
    for (path, served) in &routes {
        let mut served = served.clone();
        served.sort();
        let allowed = served.join(", ");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if served.contains(&method) {
                continue;
            }
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let res = app.call(m, path, None, None).await;
            assert_eq!(res.status, 405, "{method} {path}");
            assert_eq!(
                res.headers["allow"].to_str().unwrap(),
                allowed,
                "{method} {path}"
            );
            assert_eq!(res.error(), "method_not_allowed", "{method} {path}");
        }
    }
    // Every answer, errors included, carries a request id, a new one each time.
    let a = app.get("/healthz", None).await;
    let b2 = app.get("/v1/me", None).await;
    let c = app.call(reqwest::Method::PUT, "/v1/me", None, None).await;
    let ids: Vec<String> = [&a, &b2, &c]
        .iter()
        .map(|r| r.headers["x-request-id"].to_str().unwrap().to_owned())
        .collect();
    for id in &ids {
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }
    assert!(ids[0] != ids[1] && ids[1] != ids[2]);
    // Requests are timed by route pattern (never by raw path), method and status.
    let text = app.text("/metrics").await;
    for line in [
        "recall_http_request_duration_seconds_count{route=\"/v1/sessions/{session_id}\",method=\"PUT\",status=\"405\"} 1",
        "recall_http_request_duration_seconds_count{route=\"/v1/me\",method=\"GET\",status=\"401\"} 1",
        "recall_build_info{version=\"",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(!text.contains(&id.to_string()), "a raw path became a label");
    // Unknown paths stay 404.
    assert_eq!(app.get("/v1/nothing-here", None).await.status, 404);
    app.stop().await;
}

async fn bad_input_is_rejected_and_changes_nothing(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (_name, s) = app.signup("ivy").await;
    let head = app.recall().store().head().await.unwrap();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "/v1/auth/login",
            b"{\"username\": ".to_vec(),
            400,
            "invalid JSON",
        ),
        ("/v1/auth/login", b"[1,2,3]".to_vec(), 400, "invalid JSON"),
        (
            "/v1/auth/login",
            br#"{"username": 5, "password": "x"}"#.to_vec(),
            400,
            "invalid type",
        ),
        (
            "/v1/auth/login",
            br#"{"username": "a"}"#.to_vec(),
            400,
            "password",
        ),
        (
            "/v1/auth/login",
            br#"{"username": "abc", "password": "abcdefgh", "admin": true}"#.to_vec(),
            400,
            "admin",
        ),
        (
            "/v1/auth/login",
            b"{\"username\": \"\xff\xfe\", \"password\": \"x\"}".to_vec(),
            400,
            "invalid JSON",
        ),
        ("/v1/users", vec![b' '; 70 * 1024], 413, "64 KiB"),
        (
            "/v1/auth/refresh",
            br#"{"refresh_token": null}"#.to_vec(),
            400,
            "refresh_token",
        ),
    ];
    for (path, body, status, needle) in cases {
        let res = app.raw(path, "application/json", body, None).await;
        assert_eq!(res.status, status, "{path}: {}", res.body);
        let desc = res.body["error_description"].as_str().unwrap_or_default();
        assert!(
            desc.contains(needle),
            "{path}: {desc:?} should name {needle:?}"
        );
        assert!(res.body["error"].is_string());
    }
    let wrong_ct = app
        .raw("/v1/auth/login", "text/plain", b"{}".to_vec(), None)
        .await;
    assert_eq!(wrong_ct.status, 400);
    // Bearer problems: 401 with WWW-Authenticate, never a panic.
    let none_alg = format!(
        "{}.{}.",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"alg":"none","typ":"at+jwt"}"#
        ),
        s.access.split('.').nth(1).unwrap()
    );
    for bearer in [
        None,
        Some("garbage"),
        Some(none_alg.as_str()),
        Some(&s.access[..s.access.len() - 3]),
    ] {
        let res = app.get("/v1/me", bearer).await;
        assert_eq!(res.status, 401, "{bearer:?}");
        assert_eq!(res.error(), "invalid_token");
        assert!(res.headers.contains_key("www-authenticate"));
    }
    let basic = app
        .http
        .get(format!("{}/v1/me", app.base))
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(app.get("/v1/nothing-here", None).await.error(), "not_found");
    // Nothing above appended an event.
    assert_eq!(app.recall().store().head().await.unwrap(), head);
    assert_eq!(app.me_status(&s.access).await, 200);
    app.stop().await;
}

async fn operations_endpoints_answer(kind: Kind) {
    let (b, app) = start(kind).await;
    assert_eq!(app.get("/healthz", None).await.status, 200);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["ready"], true);
    assert!(ready.body["caught_up_seq"].as_i64().unwrap() >= 1);
    assert!(ready.body["staleness_ms"].is_i64());
    let jwks = app.get("/.well-known/jwks.json", None).await;
    let keys = jwks.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert!(keys[0].get("d").is_none(), "no private part");
    let metrics = app.text("/metrics").await;
    for name in [
        "recall_propagation_lag_seconds_bucket",
        "recall_gaps_detected_total",
        "recall_catchup_reads_total",
        "recall_notices_received_total",
        "recall_staleness_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    let spec = app.get("/openapi.json", None).await;
    assert_eq!(spec.body["openapi"], "3.1.0");
    for path in [
        "/v1/auth/login",
        "/v1/admin/keys/rotate",
        "/readyz",
        "/oauth/revoke",
    ] {
        assert!(
            spec.body["paths"].get(path).is_some(),
            "{path} missing from openapi"
        );
    }
    let closed = {
        let mut s = b.settings();
        s.open_registration = false;
        b.spawn_with(s, None).await
    };
    let anon = closed
        .post(
            "/v1/users",
            None,
            json!({ "username": username("x"), "password": "password123" }),
        )
        .await;
    assert_eq!(anon.status, 401);
    let admin = closed
        .post(
            "/v1/users",
            Some(crate::helpers::ADMIN_TOKEN),
            json!({ "username": username("x"), "password": "password123" }),
        )
        .await;
    assert_eq!(admin.status, 201);
    closed.stop().await;
    app.stop().await;
}

/// The OpenAPI document is generated from the types, and complete: every
/// operation declares its success answer with a schema (or none, for 204),
/// its errors with the error schema, its security and its parameters;
/// request bodies name their required fields and refuse unknown ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_complete() {
    let (_b, app) = start(Kind::Sqlite).await;
    let spec = app.get("/openapi.json", None).await.body;
    assert_eq!(spec["openapi"], "3.1.0");
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for name in [
        "ErrorBody",
        "TokenResponse",
        "LoginBody",
        "Readiness",
        "EventPage",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["user"]["scheme"],
        "bearer"
    );
    assert_eq!(
        spec["components"]["securitySchemes"]["admin"]["scheme"],
        "bearer"
    );
    let login = &schemas["LoginBody"];
    assert_eq!(login["additionalProperties"], false);
    assert_eq!(login["required"], json!(["username", "password"]));
    let register = &schemas["RegisterBody"]["properties"];
    assert_eq!(register["password"]["minLength"], 8);
    assert_eq!(register["password"]["maxLength"], 1024);
    assert!(register["username"]["pattern"].is_string());
    let token = &schemas["TokenResponse"];
    assert!(token["required"]
        .as_array()
        .unwrap()
        .contains(&json!("access_token")));

    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            let success: Vec<_> = responses.keys().filter(|k| k.starts_with('2')).collect();
            assert_eq!(success.len(), 1, "{what}: one success answer");
            let ok = &responses[success[0].as_str()];
            if success[0] != "204" && path != "/oauth/revoke" {
                assert!(ok["content"].is_object(), "{what}: success has no content");
            }
            for (code, answer) in responses.iter().filter(|(k, _)| !k.starts_with('2')) {
                if what == "get /readyz" {
                    continue;
                }
                let schema = &answer["content"]["application/json"]["schema"]["$ref"];
                let expected = if path == "/oauth/token" && code != "429" {
                    "#/components/schemas/OAuthError" // RFC 6749 section 5.2
                } else {
                    "#/components/schemas/ErrorBody"
                };
                assert_eq!(schema, expected, "{what}: {code} without the error schema");
            }
            let secured = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| !r.as_object().unwrap().is_empty()));
            let admin = path.starts_with("/v1/admin")
                || path == "/oauth/introspect"
                || path.starts_with("/v1/revocations");
            let user = [
                "/v1/me",
                "/v1/sessions",
                "/v1/auth/logout",
                "/v1/auth/password",
                "/v1/auth/verify",
            ]
            .iter()
            .any(|p| path.starts_with(p));
            let receiver = path.starts_with("/ssf/");
            assert_eq!(
                secured,
                admin || user || receiver || path == "/v1/users",
                "{what}: security"
            );
            if secured {
                assert!(responses.contains_key("401"), "{what}: no 401");
            }
            for name in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            {
                let params = op["parameters"].as_array().unwrap();
                let p = params.iter().find(|p| p["name"] == name).unwrap();
                assert_eq!(p["in"], "path", "{what}: {name}");
                if name == "client_type" {
                    // An enum of the three client types, not an id.
                    assert_eq!(
                        p["schema"]["enum"],
                        json!(["web", "mobile", "service"]),
                        "{what}"
                    );
                } else {
                    assert_eq!(p["schema"]["format"], "uuid", "{what}: {name}");
                }
            }
        }
    }
    let events = &spec["paths"]["/v1/admin/events"]["get"]["parameters"];
    let names: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["after", "limit", "user_id", "type"]);
    app.stop().await;
}
