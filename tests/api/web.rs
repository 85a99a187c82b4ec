//! The browser side over plain HTTP: the refresh cookie's attributes, the
//! Origin check on every cookie route, the pages' headers, the embedded
//! assets, and CORS. The flows in a real browser are in tests/browser.

use reqwest::header::{HeaderMap, ORIGIN, SET_COOKIE};
use reqwest::Method;
use serde_json::{json, Value};

use crate::fixtures::start_tuned;
use crate::helpers::{username, Backend, Kind, Res, TestApp};

/// Recall's own origin in these tests (its RECALL_PUBLIC_URL).
const OWN: &str = "https://recall.test";
const COOKIE: &str = "__Host-recall_refresh";

async fn app() -> (Backend, TestApp) {
    let (b, app) = start_tuned(Kind::Sqlite, |s| {
        s.public_url = OWN.into();
    })
    .await;
    (b, app)
}

async fn web(
    app: &TestApp,
    path: &str,
    origin: Option<&str>,
    cookie: Option<&str>,
    body: Option<Value>,
) -> Res {
    let mut req = app.http.post(format!("{}{}", app.base, path));
    if let Some(o) = origin {
        req = req.header(ORIGIN, o);
    }
    if let Some(c) = cookie {
        req = req.header("cookie", format!("{COOKIE}={c}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    Res::read(req.send().await.unwrap()).await
}

/// The refresh cookie a response sets: its value and its attributes.
fn set_cookie(headers: &HeaderMap) -> (String, String) {
    let line = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(COOKIE))
        .unwrap_or_else(|| panic!("no {COOKIE} cookie in {headers:?}"))
        .to_owned();
    let value = line[COOKIE.len() + 1..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (value, line)
}

async fn registered(app: &TestApp) -> (String, String) {
    let name = username("web");
    app.register(&name).await;
    (name, crate::helpers::PASSWORD.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_token_lives_only_in_a_host_only_httponly_strict_cookie() {
    let (_b, app) = app().await;
    let (name, password) = registered(&app).await;
    let res = web(
        &app,
        "/web/login",
        Some(OWN),
        None,
        Some(json!({"username": name, "password": password})),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(
        res.body.get("refresh_token").is_none(),
        "never in the body: {}",
        res.body
    );
    assert!(res.body["access_token"].as_str().is_some());
    assert_eq!(res.headers["cache-control"], "no-store");
    let (value, line) = set_cookie(&res.headers);
    assert!(value.len() > 20);
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(line.contains(attribute), "{attribute} in {line}");
    }
    assert!(!line.to_ascii_lowercase().contains("domain="), "{line}");

    // The cookie renews the access token and rotates itself.
    let res = web(&app, "/web/refresh", Some(OWN), Some(&value), None).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let (rotated, _) = set_cookie(&res.headers);
    assert_ne!(rotated, value);
    let access = res.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.me_status(&access).await, 200);

    // Logging out ends the session and clears the cookie.
    let res = web(&app, "/web/logout", Some(OWN), Some(&rotated), None).await;
    assert_eq!(res.status, 204);
    let (cleared, line) = set_cookie(&res.headers);
    assert_eq!(cleared, "");
    assert!(line.contains("Max-Age=0"), "{line}");
    assert_eq!(app.me_status(&access).await, 401);
    let res = web(&app, "/web/refresh", Some(OWN), Some(&rotated), None).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error(), "invalid_grant");
    // No cookie at all: 401 that says so.
    let res = web(&app, "/web/refresh", Some(OWN), None, None).await;
    assert_eq!(res.status, 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_routes_refuse_any_origin_but_recalls_own_and_change_nothing() {
    let (_b, app) = app().await;
    let (name, password) = registered(&app).await;
    let login = json!({"username": name, "password": password});
    let res = web(&app, "/web/login", Some(OWN), None, Some(login.clone())).await;
    let (cookie, _) = set_cookie(&res.headers);
    let before = crate::helpers::events(&app, "").await.len();
    let foreign = [
        Some("https://evil.example"),
        Some("https://recall.test.evil.example"),
        Some("http://recall.test"),
        Some("null"),
        None,
    ];
    for origin in foreign {
        for path in ["/web/login", "/web/refresh", "/web/logout"] {
            let body = (path == "/web/login").then(|| login.clone());
            let res = web(&app, path, origin, Some(&cookie), body).await;
            assert_eq!(res.status, 403, "{path} from {origin:?}: {}", res.body);
            assert_eq!(res.error(), "forbidden");
            assert!(
                res.headers.get(SET_COOKIE).is_none(),
                "{path} from {origin:?} set a cookie"
            );
        }
    }
    assert_eq!(
        crate::helpers::events(&app, "").await.len(),
        before,
        "no event was written"
    );
    // The cookie was never spent: it still refreshes (once).
    let res = web(&app, "/web/refresh", Some(OWN), Some(&cookie), None).await;
    assert_eq!(res.status, 200, "{}", res.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_to_the_cookie_routes_is_refused_cleanly() {
    let (_b, app) = app().await;
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"{".to_vec(), 400),
        (b"{\"username\": 1}".to_vec(), 400),
        (
            b"{\"username\": \"a\", \"password\": \"b\", \"extra\": 1}".to_vec(),
            400,
        ),
        (vec![0xff, 0xfe], 400),
        (vec![b' '; 70 * 1024], 413),
    ];
    for (body, status) in cases {
        let res = app
            .http
            .post(format!("{}/web/login", app.base))
            .header(ORIGIN, OWN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status);
    }
    let res = web(
        &app,
        "/web/login",
        Some(OWN),
        None,
        Some(json!({"username": "nobody", "password": "wrong password"})),
    )
    .await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error(), "invalid_credentials");
    // A cookie that is not a refresh token.
    let res = web(&app, "/web/refresh", Some(OWN), Some("not-a-token"), None).await;
    assert_eq!(res.status, 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_served_with_a_strict_policy_and_embedded_assets() {
    let (_b, app) = app().await;
    for path in ["/", "/account", "/admin"] {
        let res = app.get_raw(path).await;
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers().clone();
        let csp = h["content-security-policy"].to_str().unwrap();
        for rule in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(rule), "{path}: {rule} in {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = res.text().await.unwrap();
        assert!(!html.contains("<script>"), "no inline script on {path}");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing from elsewhere on {path}"
        );
    }
    for (asset, kind) in [
        ("app.css", "text/css"),
        ("common.js", "text/javascript"),
        ("admin.js", "text/javascript"),
    ] {
        let res = app.get_raw(&format!("/assets/{asset}")).await;
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    }
    for missing in ["/assets/nope.js", "/assets/..%2Fsrc%2Fmain.rs", "/assets/"] {
        let res = app.get(missing, None).await;
        assert_eq!(res.status, 404, "{missing}");
    }
    // Registration closed: the login page offers no sign-up.
    let b = Backend::new(Kind::Sqlite).await;
    let mut s = b.settings();
    s.open_registration = false;
    let closed = b.spawn_with(s, None).await;
    let html = closed.text("/").await;
    assert!(html.contains("id=\"login\""));
    assert!(!html.contains("id=\"register\""));
    closed.stop().await;
    app.stop().await;
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.http
        .request(Method::OPTIONS, format!("{}/v1/sessions", app.base))
        .header(ORIGIN, origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_opens_the_json_api_to_listed_origins_only() {
    // Nothing is open by default.
    let (_b, closed) = app().await;
    let res = preflight(&closed, "https://app.example").await;
    assert!(res.headers().get("access-control-allow-origin").is_none());
    closed.stop().await;

    let (_b, app) = start_tuned(Kind::Sqlite, |s| {
        s.public_url = OWN.into();
        s.cors_origins = vec!["https://app.example".into()];
    })
    .await;
    let res = preflight(&app, "https://app.example").await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        res.headers()
            .get("access-control-allow-credentials")
            .is_none(),
        "never with cookies"
    );
    let (_name, session) = app.signup("cors").await;
    let res = app
        .http
        .get(format!("{}/v1/sessions", app.base))
        .header(ORIGIN, "https://app.example")
        .bearer_auth(&session.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    // Another origin gets no CORS headers (the browser withholds the answer)
    // but the request itself is judged as ever.
    for origin in ["https://evil.example", "https://app.example.evil.example"] {
        let res = preflight(&app, origin).await;
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "{origin}"
        );
        let res = app
            .http
            .get(format!("{}/v1/sessions", app.base))
            .header(ORIGIN, origin)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        assert!(res.headers().get("access-control-allow-origin").is_none());
    }
    // The cookie routes stay Recall's own, whatever CORS allows.
    let res = web(
        &app,
        "/web/refresh",
        Some("https://app.example"),
        Some("x"),
        None,
    )
    .await;
    assert_eq!(res.status, 403);
    app.stop().await;
}
