//! `JsonBody<T>`: the JSON extractor of every route. It caps the body at
//! 64 KiB (413) and names the offending field in 400s (serde_path_to_error),
//! which actix's `web::Json` cannot.
//!
//! May import: what `http` may (its top comment).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::errors::ApiError;
use super::MAX_BODY;

/// A parsed JSON request body.
pub struct JsonBody<T>(pub T);

/// Parses JSON, naming the field that failed.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::InvalidRequest(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::InvalidRequest(format!("invalid JSON body: field `{path}`: {inner}"))
        }
    })?;
    // One JSON value and nothing after it but whitespace.
    de.end()
        .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// Reads the whole body, refusing more than 64 KiB.
pub async fn read_limited(req: &HttpRequest, payload: &mut Payload) -> Result<BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::InvalidRequest(format!("unreadable body: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let json = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| {
                    let ct = ct.to_ascii_lowercase();
                    ct.starts_with("application/json") || ct.contains("+json")
                });
            let body = read_limited(&req, &mut payload).await?;
            if !json {
                return Err(ApiError::InvalidRequest(
                    "expected Content-Type: application/json".into(),
                ));
            }
            parse_json(&body).map(JsonBody)
        })
    }
}

/// A raw request body, capped at 64 KiB (form-encoded and optional bodies).
pub struct RawBody(pub BytesMut);

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move { read_limited(&req, &mut payload).await.map(RawBody) })
    }
}

/// Deserializes an optional integer that JSON Schema would call one: an
/// integer, a number with no fraction (`86400.0`), or such a string (query
/// strings). `null` is `None`. What the OpenAPI document calls valid, the
/// server accepts.
pub fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl<'a> serde::de::Visitor<'a> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("integer out of range"))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // Only where every integer is exact (|v| < 2^53): a larger
            // float may be a rounded integer out of i64's range.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if v.fract() == 0.0 && v.abs() < EXACT {
                Ok(Some(v as i64))
            } else {
                Err(E::custom("expected an integer"))
            }
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v.parse::<i64>() {
                Ok(n) => Ok(Some(n)),
                Err(_) => match v.parse::<f64>() {
                    Ok(f) if f.is_finite() => self.visit_f64(f),
                    _ => Err(E::custom("expected an integer")),
                },
            }
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<E: serde::Deserializer<'a>>(self, d: E) -> Result<Self::Value, E::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct N {
        #[serde(default, deserialize_with = "integer")]
        n: Option<i64>,
    }

    /// Found by the `json_bodies` fuzz target
    /// (fuzz/regressions/json_bodies-trailing-data): a body was accepted
    /// with anything after its JSON value.
    #[test]
    fn nothing_but_whitespace_may_follow_the_json_value() {
        let n = |json: &str| parse_json::<N>(json.as_bytes()).map(|v| v.n);
        assert_eq!(n("{\"n\": 1}  \n").ok(), Some(Some(1)));
        for bad in [
            "{\"n\": 1} and then anything",
            "{\"n\": 1}{\"n\": 2}",
            "{} x",
            "{}\u{0}",
        ] {
            let err = n(bad).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("trailing")),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn integers_as_json_schema_counts_them() {
        let n = |json: &str| parse_json::<N>(json.as_bytes()).map(|v| v.n);
        assert_eq!(n(r#"{"n": 86400}"#).ok(), Some(Some(86400)));
        assert_eq!(n(r#"{"n": 86400.0}"#).ok(), Some(Some(86400)));
        assert_eq!(n(r#"{"n": null}"#).ok(), Some(None));
        assert_eq!(n("{}").ok(), Some(None));
        assert!(n(r#"{"n": 1.5}"#).is_err());
        assert!(n(r#"{"n": 1e300}"#).is_err());
        assert!(n(r#"{"n": -9223372036854775809}"#).is_err());
        assert_eq!(
            n(r#"{"n": -9223372036854775808}"#).ok(),
            Some(Some(i64::MIN))
        );
        assert!(n(r#"{"n": "7"}"#).is_ok(), "strings are for query strings");
        assert!(n(r#"{"n": true}"#).is_err());
        let q = |s: &str| serde_urlencoded::from_str::<N>(s).map(|v| v.n);
        assert_eq!(q("n=5").ok(), Some(Some(5)));
        assert_eq!(q("n=5.0").ok(), Some(Some(5)));
        assert!(q("n=abc").is_err());
        assert!(q("n=-9223372036854775809").is_err());
        assert!(q("n=").is_err());
    }
}
