//! The domain types the store's verbs take and give, the same for every backend: nothing here names a
//! backend's own types.

use std::collections::BTreeMap;

use super::StoreError;
use crate::model::{MessageId, MessageRecord, Millis};
use crate::retry::Decision;

/// A message as handed to [`Store::enqueue`](super::Store::enqueue).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub endpoint: String,
    pub kind: String,
    pub payload: String,
    pub idempotency_key: Option<String>,
    /// The contact and its cap of undelivered messages, on formats that have contacts.
    pub contact: Option<ContactLimit>,
}

/// At most `max_pending` undelivered messages for `contact` on the message's endpoint.
#[derive(Debug, Clone)]
pub struct ContactLimit {
    pub contact: String,
    pub max_pending: usize,
}

/// The answer to an enqueue (not yet durable: call [`Store::commit`](super::Store::commit) before acknowledging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: MessageId,
    /// True when the idempotency key was already known: `id` is the first message's, nothing was queued.
    pub duplicate: bool,
}

/// What a lane found when it asked for due work.
#[derive(Debug)]
pub enum Lease {
    /// These messages are now in flight (leased) for the caller.
    Taken(Vec<MessageRecord>),
    /// Nothing due yet; the earliest message is due at this time.
    NextDueAt(Millis),
    /// The endpoint has nothing queued.
    Idle,
}

/// What a lane's lease tells about the endpoint's queue beyond the messages it took ([`Store::lease_for_lane`]).
///
/// [`Store::lease_for_lane`]: crate::store::Store::lease_for_lane
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remaining {
    /// Every other queued message of the endpoint is in flight. Until something is enqueued, replayed,
    /// retried or given back (each of which wakes the lane), another lease would find nothing.
    Nothing,
    /// More may be queued, due now or later, or the backend cannot tell cheaply.
    Unknown,
}

/// Which dead letters a replay or purge applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Ids(Vec<MessageId>),
    All { endpoint: Option<String> },
}

/// One page of the dead-letter queue.
#[derive(Debug)]
pub struct DeadPage {
    pub items: Vec<MessageRecord>,
    /// The cursor for the next page, when there is one.
    pub next: Option<MessageId>,
}

/// Message counts by endpoint and stage.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub by_endpoint: BTreeMap<String, StageCounts>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageCounts {
    pub queued: u64,
    pub in_flight: u64,
    pub delivered: u64,
    pub dead: u64,
}

/// Per-endpoint facts kept across runs.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointState {
    /// The fingerprint of the (url, validation key) that last passed the verification handshake.
    #[serde(default)]
    pub verified_fingerprint: Option<u64>,
    #[serde(default)]
    pub verified_at: Option<Millis>,
    /// Why the last handshake failed, while it has.
    #[serde(default)]
    pub verification_error: Option<String>,
    /// For an endpoint declared in the config file: the keys changed at run time, laid over the file's
    /// table (config-file names and shapes). A first-format record's four settings read as such keys.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// For an endpoint created through the API: its whole table (config-file names and shapes, without
    /// `name`). `None` for an endpoint the config file declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<serde_json::Map<String, serde_json::Value>>,
    /// An operator paused the endpoint.
    #[serde(default)]
    pub paused: bool,
    /// Why the endpoint is disabled (a 410 Gone), while it is.
    #[serde(default)]
    pub disabled: Option<String>,
}

/// An API access token as stored: never the token itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenRecord {
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub created_at: Millis,
    /// The one endpoint a scoped token may read and change; `None`: an admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// What becomes of a deleted endpoint's queued messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retire {
    /// Dead letters with this reason.
    DeadLetter { reason: String },
    /// Deleted with everything about them.
    Purge,
}

/// One attempt's outcome for one message, as the dispatcher records it.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub id: MessageId,
    pub attempt: crate::model::AttemptRecord,
    pub decision: Decision,
    pub now: Millis,
    /// The message's record as [`Store::lease_due`](super::Store::lease_due) gave it, handed back: a hint a backend may use to
    /// write the outcome without reading the record again (the sled backend swaps it in against the bytes
    /// its lease read), or ignore. `None`: the backend reads the record.
    pub leased: Option<MessageRecord>,
}

/// The file that marks a directory as a hookd data dir, and the on-disk format it holds.
pub const MARKER_FILE: &str = "hookd-data";

/// The kind given to a quarantined message.
pub const CORRUPT_KIND: &str = "hookd.corrupt_record";

/// The one answer of a one-message enqueue.
pub fn first_answer(
    mut answers: Vec<Result<Enqueued, StoreError>>,
) -> Result<Enqueued, StoreError> {
    answers
        .pop()
        .unwrap_or_else(|| Err(StoreError::Corrupt("an enqueue gave no answer".into())))
}
