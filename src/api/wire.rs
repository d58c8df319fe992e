//! The socket API's request and response bodies, shared by the server and the CLI client.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::{AttemptRecord, Millis, State};
use crate::store::StageCounts;

/// `POST /v1/messages` and each item of a batch.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    pub endpoint: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EnqueueResponse {
    pub id: String,
    pub status: State,
    /// Present and true when the idempotency key was known: `id` is the first message's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// `POST /v1/messages/batch`: items are decoded one by one so one bad item does not refuse the rest.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub messages: Vec<Box<RawValue>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BatchResponse {
    pub results: Vec<BatchResult>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchResult {
    Queued(EnqueueResponse),
    Error { error: super::error::ErrorDetail },
}

/// `GET /v1/messages/{id}` and `GET /v1/dlq/{id}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct MessageView {
    pub id: String,
    pub endpoint: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: State,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_at: Option<Millis>,
    /// Attempts in the current cycle (since enqueue or the last replay).
    pub cycle_attempts: u32,
    pub attempts: Vec<AttemptRecord>,
    pub payload: Box<RawValue>,
}

/// One line of `GET /v1/dlq`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeadItem {
    pub id: String,
    pub endpoint: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub dead_at: Option<Millis>,
    pub reason: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeadList {
    pub items: Vec<DeadItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `POST /v1/dlq/replay` and `/v1/dlq/purge`: either `ids`, or `all` (optionally of one endpoint).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqSelection {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReplayResponse {
    pub replayed: usize,
    /// Requested ids that were not in the dead-letter queue.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_dead: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PurgeResponse {
    pub purged: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_dead: Vec<String>,
}

/// An endpoint as the API shows it (secrets masked).
#[derive(Debug, Serialize, Deserialize)]
pub struct EndpointView {
    pub name: String,
    pub url: String,
    pub format: String,
    /// `active`, or why its messages are held.
    pub state: String,
    pub timeout_ms: u64,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub max_age: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    pub retry: String,
    pub counts: StageCounts,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EndpointList {
    pub endpoints: Vec<EndpointView>,
}

/// `GET /v1/stats`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stats {
    pub totals: StageCounts,
    pub by_endpoint: std::collections::BTreeMap<String, StageCounts>,
    /// Endpoints with queued messages but no lane in the running configuration.
    pub held_endpoints: Vec<String>,
    pub size_on_disk: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}
