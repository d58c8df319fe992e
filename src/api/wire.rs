//! The socket API's request and response bodies, shared by the server and the CLI client.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::{AttemptRecord, Millis, State};
use crate::store::StageCounts;
pub use crate::telemetry::{AttemptEvent, EndpointChange, EndpointEvent, Outcome, OutcomeCounts};

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

/// One message of `GET /v1/messages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageItem {
    pub id: String,
    pub endpoint: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: State,
    pub created_at: Millis,
    /// Attempts ever made (across replays and resends).
    pub attempts: u32,
    /// Attempts in the current cycle (since enqueue, replay or resend); `max_attempts` counts these.
    pub cycle_attempts: u32,
    /// While queued or held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<String>,
}

/// `GET /v1/messages`: a page in id (enqueue) order, and the cursor of the next one when there may be one.
#[derive(Debug, Serialize, Deserialize)]
pub struct MessageList {
    pub items: Vec<MessageItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `POST /v1/messages/{id}/retry` and `/resend`: the message, now due.
#[derive(Debug, Serialize, Deserialize)]
pub struct Nudged {
    pub id: String,
    pub endpoint: String,
    pub state: State,
    pub next_attempt_at: Millis,
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
    /// With `all`: only dead letters dead at or after this time (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Millis>,
    /// With `all`: only dead letters whose reason contains this text (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// With `all`: only dead letters whose last attempt got this HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Change nothing; answer which dead letters would be replayed or purged (`selected`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl DlqSelection {
    /// Whether any of the filters that narrow `all` is given.
    pub fn filtered(&self) -> bool {
        self.since.is_some() || self.reason.is_some() || self.status.is_some()
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReplayResponse {
    pub replayed: usize,
    /// Requested ids that were not in the dead-letter queue.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_dead: Vec<String>,
    /// Present and true when nothing was changed (`dry_run`): `selected` lists what would have been.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// On a dry run, the ids of the dead letters that would be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PurgeResponse {
    pub purged: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_dead: Vec<String>,
    /// Present and true when nothing was changed (`dry_run`): `selected` lists what would have been.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// On a dry run, the ids of the dead letters that would be purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<Vec<String>>,
}

/// An endpoint as the API shows it (secrets masked).
#[derive(Debug, Serialize, Deserialize)]
pub struct EndpointView {
    pub name: String,
    pub url: String,
    /// Per message type, the URL its messages go to instead of `url` (gateway-json's `urls`), masked.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub urls: std::collections::BTreeMap<String, String>,
    pub format: String,
    /// For a format that verifies its webhook (dlr-json): `handshake`, or `none` when the endpoint said
    /// `verification = "none"`. Absent for the other formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<String>,
    /// `active`, or why its messages are held: `unverified`, `paused`, `disabled`, `circuit_open`, `probing`.
    pub state: String,
    /// The detail behind a state other than `active` (a handshake error, why it was disabled, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    pub circuit: CircuitInfo,
    /// Requests per second at most, when limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// Whether requests carry Standard Webhooks signatures (the secrets are never shown).
    #[serde(default)]
    pub signed: bool,
    pub timeout_ms: u64,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub max_age: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    pub retry: String,
    /// The most messages it may have waiting before its enqueues get 429 `endpoint_full`.
    #[serde(default)]
    pub max_queued: u64,
    pub counts: StageCounts,
    /// `config` (declared in the config file) or `api` (created through the API).
    #[serde(default)]
    pub origin: String,
    /// For a declared endpoint, the keys changed at run time (`hookd endpoints reset` drops them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    /// The endpoint's own keys in config-file names and shapes (defaults not included), secrets masked.
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// An endpoint's circuit breaker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CircuitInfo {
    /// `closed`, `open` or `probing`.
    pub state: String,
    pub consecutive_failures: u32,
    pub failure_threshold: u32,
    pub cooldown_ms: u64,
    /// While open: when the probe goes out (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_until: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EndpointList {
    pub endpoints: Vec<EndpointView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `DELETE /v1/endpoints/{name}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct EndpointDeleted {
    pub name: String,
    pub deleted: bool,
    /// How many queued messages became dead letters (`messages=dead-letter`) or were purged.
    pub retired: usize,
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

/// `GET /v1/stats` as it is answered: [`Stats`] and, per endpoint, its lane's state, held messages, the age of
/// its oldest queued message and its recent outcomes.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusReport {
    #[serde(flatten)]
    pub stats: Stats,
    /// When this run of the daemon started (Unix ms).
    pub started_at: Millis,
    pub uptime_ms: u64,
    /// Attempt outcomes in the last 60 seconds, over every endpoint.
    pub last_minute: OutcomeCounts,
    /// Every configured endpoint, and every endpoint with messages in the store.
    pub endpoints: std::collections::BTreeMap<String, EndpointStatus>,
}

/// One endpoint in [`StatusReport`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointStatus {
    /// The lane's state in one word (`active`, `unverified`, `paused`, `disabled`, `circuit_open`,
    /// `probing`), or `not_configured` when no lane runs for the endpoint.
    pub state: String,
    /// Why, when the state has a reason (unverified, disabled) or an end (circuit_open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_detail: Option<String>,
    /// Queued and due for sending (counted under `held` instead while the lane is not active).
    pub queued: u64,
    /// Queued but waiting for the lane to become active.
    pub held: u64,
    pub in_flight: u64,
    pub delivered: u64,
    pub dead: u64,
    /// When the oldest queued or held message was enqueued (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_queued_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_queued_age_ms: Option<u64>,
    /// Attempt outcomes in the last 60 seconds.
    pub last_minute: OutcomeCounts,
    /// Counts since this run started.
    pub since_start: SinceStart,
}

/// An endpoint's counters since the daemon started.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct SinceStart {
    pub enqueued: u64,
    pub attempts: u64,
    pub delivered: u64,
    pub retries: u64,
    pub dead: u64,
}

/// One line of `GET /v1/events`: an attempt event, an endpoint event (it has `event`), or how many events
/// this listener missed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventLine {
    Lagged { lagged: u64 },
    Endpoint(EndpointEvent),
    Event(Box<AttemptEvent>),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    /// The backend: `sled` or `postgres`.
    #[serde(default)]
    pub store: String,
    /// Why the store cannot take writes now, while it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
}
