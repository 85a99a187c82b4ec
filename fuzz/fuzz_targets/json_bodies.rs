//! Every request body of the HTTP API, parsed the way its handler parses it:
//! `parse_json` (the `JsonBody<T>` extractor) for the JSON bodies, the
//! admin's optional bodies (empty or `null` = defaults), the RFC 8936 poll
//! (empty = defaults), the RFC 7009/7662 token form as JSON or form-encoded,
//! the RFC 6749 token request, and the query strings. Then what the handler
//! does next with the parsed value (`StreamInput::fields`, `PollInput::max`,
//! the username/password/client-type rules) and the error answer
//! (`ApiError` as a response). Nothing may panic, and `parse_json` (which
//! names the failing field) must accept exactly what plain serde_json does.
#![no_main]


use actix_web::ResponseError;
use libfuzzer_sys::fuzz_target;
use recall::http::admin::{EventsQuery, LockBody, ReasonBody, RotateBody, UserQuery};
use recall::http::body::parse_json;
use recall::http::errors::ApiError;
use recall::http::feed::{FeedQuery, ServiceBody};
use recall::http::oauth::TokenRequest;
use recall::http::ops::TokenForm;
use recall::http::site::WebLogin;
use recall::http::ssf_types::{
    PollInput, StatusInput, StreamIdQuery, StreamInput, StreamQuery, StreamUpdate, VerifyInput,
};
use recall::http::users::{LoginBody, PasswordBody, RefreshBody, RegisterBody};
use recall::service::{ClientType, Password, Username};
use serde::de::DeserializeOwned;

/// The answer a client would get: status, code, message, response body.
fn answer(e: &ApiError) {
    let _ = e.code();
    let _ = e.to_string();
    let _ = e.status_code();
    let _ = e.error_response();
}

/// `parse_json::<T>`, cross-checked against plain serde_json.
fn json<T: DeserializeOwned>(data: &[u8], name: &str) -> Option<T> {
    let plain = serde_json::from_slice::<T>(data);
    match parse_json::<T>(data) {
        Ok(v) => {
            if let Err(e) = plain {
                panic!("{name}: parse_json accepted what serde_json refuses ({e})");
            }
            Some(v)
        }
        Err(e) => {
            assert!(plain.is_err(), "{name}: parse_json refused what serde_json accepts: {e}");
            assert_eq!(e.code(), "invalid_request", "{name}: {e}");
            answer(&e);
            None
        }
    }
}

/// The admin's optional bodies (`optional_json` in src/http/admin.rs).
fn optional_json<T: DeserializeOwned + Default>(data: &[u8], name: &str) -> Option<T> {
    if data.iter().all(u8::is_ascii_whitespace) || data.trim_ascii() == b"null" {
        return Some(T::default());
    }
    json(data, name)
}

/// Query strings, as actix's `web::Query` reads them.
fn query<T: DeserializeOwned>(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = serde_urlencoded::from_str::<T>(s);
    }
}

/// The field rules the service applies to the strings of a body.
fn field_rules(data: &[u8]) {
    let Ok(serde_json::Value::Object(m)) = parse_json::<serde_json::Value>(data) else {
        return;
    };
    for (k, v) in &m {
        let Some(s) = v.as_str() else { continue };
        let result = match k.as_str() {
            "username" => Username::parse(s).map(|u| {
                let _ = u.as_str();
            }),
            "password" | "new_password" | "current_password" => {
                Password::parse(s.to_owned(), "password").map(|_| ())
            }
            "client_type" => ClientType::parse(Some(s)).map(|_| ()),
            _ => continue,
        };
        if let Err(e) = result {
            answer(&ApiError::from(e));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Any JSON at all, and the string fields' rules.
    let _ = json::<serde_json::Value>(data, "Value");
    field_rules(data);

    // Users and sessions (src/http/users.rs), the web login (site.rs).
    let _ = json::<RegisterBody>(data, "RegisterBody");
    let _ = json::<LoginBody>(data, "LoginBody");
    let _ = json::<RefreshBody>(data, "RefreshBody");
    let _ = json::<PasswordBody>(data, "PasswordBody");
    let _ = json::<WebLogin>(data, "WebLogin");

    // Admin (admin.rs): two optional bodies and the key rotation.
    let _ = optional_json::<ReasonBody>(data, "ReasonBody");
    let _ = optional_json::<LockBody>(data, "LockBody");
    let _ = json::<RotateBody>(data, "RotateBody");

    // Service credentials (feed.rs).
    let _ = json::<ServiceBody>(data, "ServiceBody");

    // SSF streams (ssf.rs, ssf_types.rs).
    if let Some(input) = json::<StreamInput>(data, "StreamInput") {
        if let Err(e) = input.fields() {
            panic!("StreamInput parsed but its fields do not serialize: {e}");
        }
    }
    if let Some(update) = json::<StreamUpdate>(data, "StreamUpdate") {
        if let Err(e) = update.config.fields() {
            panic!("StreamUpdate parsed but its fields do not serialize: {e}");
        }
    }
    let _ = json::<StatusInput>(data, "StatusInput").map(|s| s.status.as_str());
    let _ = json::<VerifyInput>(data, "VerifyInput");
    let poll = if data.iter().all(u8::is_ascii_whitespace) {
        Some(PollInput::default())
    } else {
        json::<PollInput>(data, "PollInput")
    };
    if let Some(poll) = poll {
        match poll.max() {
            Ok(n) => assert!(n <= 1000, "PollInput::max gave {n}"),
            Err(e) => answer(&e),
        }
    }

    // RFC 7009 / 7662 (ops.rs): JSON or form-encoded; RFC 6749 (oauth.rs).
    let _ = serde_json::from_slice::<TokenForm>(data);
    let _ = serde_urlencoded::from_bytes::<TokenForm>(data);
    let _ = serde_urlencoded::from_bytes::<TokenRequest>(data);

    // Query strings.
    query::<UserQuery>(data);
    query::<EventsQuery>(data);
    query::<FeedQuery>(data);
    query::<StreamQuery>(data);
    query::<StreamIdQuery>(data);
});
