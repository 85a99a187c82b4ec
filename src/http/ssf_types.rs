//! The SSF 1.0 and RFC 8936 request and answer bodies, as types: they parse
//! the requests and describe both in the OpenAPI document, so a receiver's
//! generated client and schemathesis see the real rules.
//!
//! May import: what `http` may (its top comment).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::body::integer;
use super::errors::ApiError;

/// How SETs reach the receiver (SSF 1.0 section 8.1.1).
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(tag = "method")]
pub enum DeliveryInput {
    /// RFC 8935: Recall POSTs each SET to the receiver's endpoint.
    #[serde(rename = "urn:ietf:rfc:8935")]
    Push {
        /// The receiver's http(s) endpoint.
        #[schema(pattern = r"^https?://\S+$", max_length = 2048)]
        endpoint_url: String,
        /// Sent as the `Authorization` header of every push; never shown
        /// again.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(max_length = 4096)]
        authorization_header: Option<String>,
    },
    /// RFC 8936: the receiver polls `endpoint_url`, which Recall assigns.
    #[serde(rename = "urn:ietf:rfc:8936")]
    Poll {},
}

/// A stream's configuration as a receiver writes it. On POST every field
/// is optional (default: poll, every event, `aud` naming the service); PATCH
/// changes the fields given, PUT replaces them all. Read-only fields a
/// receiver echoes back (`iss`, `events_supported`, ...) are ignored.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct StreamInput {
    /// The `aud` of this stream's SETs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 512)]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery: Option<DeliveryInput>,
    /// Event type URIs; unknown ones are ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    events_requested: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1024)]
    description: Option<String>,
}

impl StreamInput {
    /// The fields given, as the service merges them.
    pub fn fields(&self) -> Result<Map<String, Value>, ApiError> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(ApiError::Internal("stream input did not serialize".into())),
        }
    }
}

/// PATCH and PUT: the stream, and its configuration as for POST.
#[derive(Deserialize, ToSchema)]
pub struct StreamUpdate {
    pub stream_id: Uuid,
    #[serde(flatten)]
    pub config: StreamInput,
}

/// Where a stream's SETs go, as its receiver reads it back (never the
/// authorization header it gave).
#[derive(Deserialize, Serialize, ToSchema)]
pub struct DeliveryView {
    /// `urn:ietf:rfc:8935` (push) or `urn:ietf:rfc:8936` (poll).
    method: String,
    endpoint_url: String,
}

/// A stream's configuration (SSF 1.0 section 8.1.1), as its receiver
/// reads it.
#[derive(Deserialize, Serialize, ToSchema)]
#[schema(as = StreamConfig)]
pub struct StreamConfigView {
    stream_id: Uuid,
    iss: String,
    aud: String,
    events_supported: Vec<String>,
    events_requested: Vec<String>,
    events_delivered: Vec<String>,
    delivery: DeliveryView,
    description: Option<String>,
}

impl StreamConfigView {
    /// The stored configuration without the push authorization header.
    pub fn from_stored(config: &crate::ssf::StreamConfig) -> Self {
        StreamConfigView {
            stream_id: config.stream_id,
            iss: config.iss.clone(),
            aud: config.aud.clone(),
            events_supported: config.events_supported.clone(),
            events_requested: config.events_requested.clone(),
            events_delivered: config.events_delivered.clone(),
            delivery: DeliveryView {
                method: config.delivery.method().to_owned(),
                endpoint_url: config.delivery.endpoint_url().to_owned(),
            },
            description: config.description.clone(),
        }
    }
}

/// `?stream_id=` where it may be absent: every stream of the caller.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// One stream; absent: every stream of the caller.
    pub stream_id: Option<Uuid>,
}

/// `?stream_id=` where it is required.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamIdQuery {
    pub stream_id: Uuid,
}

/// The states of a stream (SSF 1.0 section 8.1.2).
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// SETs are delivered.
    Enabled,
    /// SETs are held, and delivered once enabled again.
    Paused,
    /// SETs are dropped; enabling again starts from then.
    Disabled,
}

impl StreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Paused => "paused",
            Self::Disabled => "disabled",
        }
    }
}

/// A status change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusInput {
    pub stream_id: Uuid,
    pub status: StreamState,
    #[schema(max_length = 1024)]
    pub reason: Option<String>,
}

/// A stream's status.
#[derive(Serialize, ToSchema)]
pub struct StatusView {
    pub stream_id: Uuid,
    /// `enabled`, `paused` or `disabled`.
    #[schema(value_type = StreamState)]
    pub status: String,
    pub reason: Option<String>,
}

/// A verification request (SSF 1.0 section 8.1.4).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyInput {
    pub stream_id: Uuid,
    /// Echoed in the verification event, at most 256 characters.
    #[schema(max_length = 256)]
    pub state: Option<String>,
}

/// Why a receiver could not use a SET (RFC 8936 section 2.4).
#[derive(Deserialize, ToSchema)]
pub struct SetError {
    pub err: String,
    pub description: Option<String>,
}

/// An RFC 8936 poll: acknowledge, then ask for more. The body may be empty.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PollInput {
    /// The jtis received and kept.
    #[serde(default)]
    pub ack: Vec<String>,
    /// SETs received but refused, by jti: delivered all the same.
    #[serde(default, rename = "setErrs")]
    pub set_errs: BTreeMap<String, SetError>,
    /// At most this many SETs (default 100).
    #[serde(default, rename = "maxEvents", deserialize_with = "integer")]
    #[schema(value_type = Option<u32>, minimum = 0, maximum = 1000)]
    pub max_events: Option<i64>,
    /// Answer at once, even with nothing to send (default: wait up to 10 s).
    #[serde(default, rename = "returnImmediately")]
    pub return_immediately: Option<bool>,
}

impl PollInput {
    /// `maxEvents` within 0 to 1000.
    pub fn max(&self) -> Result<usize, ApiError> {
        match self.max_events {
            None => Ok(100),
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| *n <= 1000)
                .ok_or_else(|| ApiError::InvalidRequest("maxEvents: 0 to 1000".into())),
        }
    }
}

/// An RFC 8936 poll's answer.
#[derive(Serialize, ToSchema)]
pub struct PollView {
    /// SETs by jti (each a compact `secevent+jwt`).
    pub sets: BTreeMap<String, String>,
    #[serde(rename = "moreAvailable")]
    pub more_available: bool,
}

/// One stream, as an admin sees it.
#[derive(Serialize, ToSchema)]
pub struct AdminStream {
    pub stream_id: Uuid,
    pub service_id: Uuid,
    pub aud: String,
    pub method: String,
    #[schema(value_type = StreamState)]
    pub status: String,
    pub reason: Option<String>,
    /// The last log seq delivered (or passed over) on this stream.
    pub cursor_seq: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// Every stream.
#[derive(Serialize, ToSchema)]
pub struct AdminStreams {
    pub streams: Vec<AdminStream>,
}

/// An authorization scheme receivers may use (SSF 1.0 section 7.1).
#[derive(Deserialize, Serialize, ToSchema)]
pub struct AuthorizationScheme {
    spec_urn: String,
}

/// Transmitter configuration metadata (SSF 1.0 section 7.1).
#[derive(Deserialize, Serialize, ToSchema)]
pub struct TransmitterMetadata {
    spec_version: String,
    issuer: String,
    jwks_uri: String,
    delivery_methods_supported: Vec<String>,
    configuration_endpoint: String,
    status_endpoint: String,
    verification_endpoint: String,
    authorization_schemes: Vec<AuthorizationScheme>,
    default_subjects: String,
}

impl TransmitterMetadata {
    pub fn from_value(v: Value) -> Result<Self, ApiError> {
        serde_json::from_value(v).map_err(|e| ApiError::Internal(format!("SSF metadata: {e}")))
    }
}
