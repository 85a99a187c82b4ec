//! A stream's configuration as Recall keeps it (SSF 1.0 section 8.1.1):
//! typed, so the store, delivery and polling read fields, not JSON paths.
//! The push authorization header is kept here and never shown again
//! (`http::ssf_types` holds the receiver-facing view).
//!
//! May import: serde, uuid (nothing of Recall's).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// RFC 8935 push delivery.
pub const PUSH: &str = "urn:ietf:rfc:8935";
/// RFC 8936 poll delivery.
pub const POLL: &str = "urn:ietf:rfc:8936";

/// Where a stream's SETs go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method")]
pub enum Delivery {
    /// Recall POSTs each SET to the receiver's endpoint.
    #[serde(rename = "urn:ietf:rfc:8935")]
    Push {
        endpoint_url: String,
        /// Sent as the `Authorization` header of every push.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authorization_header: Option<String>,
    },
    /// The receiver polls `endpoint_url`, which Recall assigned.
    #[serde(rename = "urn:ietf:rfc:8936")]
    Poll { endpoint_url: String },
}

impl Delivery {
    /// The method's URN (`PUSH` or `POLL`).
    pub fn method(&self) -> &'static str {
        match self {
            Delivery::Push { .. } => PUSH,
            Delivery::Poll { .. } => POLL,
        }
    }

    /// Where SETs are pushed, or polled from.
    pub fn endpoint_url(&self) -> &str {
        match self {
            Delivery::Push { endpoint_url, .. } | Delivery::Poll { endpoint_url } => endpoint_url,
        }
    }
}

/// One stream's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    pub stream_id: Uuid,
    pub iss: String,
    /// The `aud` of this stream's SETs.
    pub aud: String,
    pub events_supported: Vec<String>,
    pub events_requested: Vec<String>,
    /// The event types it carries: those requested that Recall supports.
    pub events_delivered: Vec<String>,
    pub delivery: Delivery,
    pub description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_configuration_reads_back_as_written() {
        let stored = serde_json::json!({
            "stream_id": "0190f7a0-0000-7000-8000-000000000001",
            "iss": "https://auth.example",
            "aud": "urn:recall:service:x",
            "events_supported": ["a", "b"],
            "events_requested": ["a"],
            "events_delivered": ["a"],
            "delivery": {
                "method": PUSH,
                "endpoint_url": "https://rp.example/ssf",
                "authorization_header": "Bearer s"
            },
            "description": null
        });
        let config: StreamConfig = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(config.delivery.method(), PUSH);
        assert_eq!(config.delivery.endpoint_url(), "https://rp.example/ssf");
        assert_eq!(serde_json::to_value(&config).unwrap(), stored);
    }
}
