//! Domain types shared by the store, the dispatcher and the API.
//!
//! These are the words of hookd's contract: a [`MessageId`] names a message for its whole life, a
//! [`MessageRecord`] is what the store keeps about it, an [`AttemptRecord`] is one try at delivering it,
//! and [`State`] is the word the API reports. Timestamps are milliseconds since the Unix epoch (`u64`),
//! because they are persisted and compared as big-endian keys.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::timestamp::context::ContextV7;
use uuid::{Timestamp, Uuid};

/// Milliseconds since the Unix epoch, the one clock of records and keys.
pub type Millis = u64;

/// The wall clock in [`Millis`].
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A [`Millis`] time as people read it: RFC 3339, UTC, with milliseconds (`2026-11-21T09:50:06.964Z`).
pub fn rfc3339(at: Millis) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_millis(at))
}

/// The one clock sequence of every id this process makes: ids made in a millisecond are numbered in the order
/// they were made, and none is made at a millisecond before the last one.
static ID_CLOCK: Mutex<ContextV7> = Mutex::new(ContextV7::new());

/// A message's identity: a UUID v7, so ids sort by creation time. It is sent to receivers as
/// `webhook-id` on every attempt, so they can de-duplicate an at-least-once delivery.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Uuid);

impl MessageId {
    /// A fresh, time-ordered id, made now.
    pub fn new() -> Self {
        Self::at(now_millis())
    }

    /// A fresh id made at `at`: its [`created_at`](Self::created_at) is `at` unless an id was already made at
    /// a later millisecond (ids never go back in time, so one made after another sorts after it). An enqueue
    /// makes its messages' ids at the time it makes them due, so that they are "due when made" in the sled
    /// store's due index, which then keeps them once instead of twice (`store/sled/due/mod.rs`).
    pub fn at(at: Millis) -> Self {
        let clock = ID_CLOCK.lock().unwrap_or_else(PoisonError::into_inner);
        let nanos = (at % 1000) as u32 * 1_000_000;
        Self(Uuid::new_v7(Timestamp::from_unix(
            &*clock,
            at / 1000,
            nanos,
        )))
    }

    /// The 16 bytes used in store keys (time-ordered, so key order is creation order).
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// When the id was made (UUID v7 carries its milliseconds), if it is a v7 id.
    pub fn created_at(&self) -> Option<Millis> {
        let (seconds, nanos) = self.0.get_timestamp()?.to_unix();
        Some(seconds * 1000 + u64::from(nanos) / 1_000_000)
    }

    /// Reads an id back from its 16 key bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Uuid::from_slice(bytes).ok().map(Self)
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0)
    }
}

/// The error for a string that is not a message id.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a message id (expected a UUID)")]
pub struct BadMessageId(String);

impl FromStr for MessageId {
    type Err = BadMessageId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| BadMessageId(s.to_owned()))
    }
}

/// Where a message stands in its lifecycle, as stored. The API adds `held` on top (see [`State`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Waiting in the due index for `next_attempt_at`.
    Queued,
    /// Leased by a lane; an attempt is under way.
    InFlight,
    /// A receiver accepted it.
    Delivered,
    /// Parked in the dead-letter queue.
    Dead,
}

/// The state word the API reports: the stored [`Stage`], or `held` when a queued message's endpoint cannot
/// take it now (unknown to the running configuration; later also paused, disabled or unverified).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Queued,
    InFlight,
    Delivered,
    Dead,
    Held,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::InFlight => "in_flight",
            State::Delivered => "delivered",
            State::Dead => "dead",
            State::Held => "held",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the store keeps about one message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub id: MessageId,
    pub endpoint: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload exactly as the client sent it (compact JSON text). The store keeps it apart from the
    /// record (written once, never rewritten), so it is not serialized with it; records of the first store
    /// format carried it inline, which is why it is still read.
    #[serde(default, skip_serializing)]
    pub payload: String,
    pub idempotency_key: Option<String>,
    /// The contact the message is for, on formats that cap pending messages per contact (seed 004).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    pub created_at: Millis,
    pub stage: Stage,
    /// When the next attempt is due (meaningful while queued).
    pub next_attempt_at: Millis,
    /// Attempts made since the message was enqueued or last replayed; `max_attempts` counts these.
    pub cycle_attempts: u32,
    /// When the current cycle began (enqueue or replay); `max_age` counts from here.
    pub cycle_started_at: Millis,
    /// Attempts ever made, across replays: the number of the last attempt record.
    pub total_attempts: u32,
    pub delivered_at: Option<Millis>,
    /// Why it is dead, while it is.
    pub dead_reason: Option<String>,
    pub dead_at: Option<Millis>,
    /// The message's latest attempt. It lives in the record so that an attempt's outcome rewrites one key
    /// instead of adding one (most messages are delivered at their first attempt); the attempt before it moves
    /// to the `attempt` tree when the next one is recorded. Records of store formats 1 to 4 have none: all
    /// their attempts are in the tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<AttemptRecord>,
}

impl MessageRecord {
    /// A message just enqueued: queued and due at `now`, no attempts, no idempotency key or contact.
    pub fn new_queued(
        id: MessageId,
        endpoint: &str,
        kind: &str,
        payload: &str,
        now: Millis,
    ) -> Self {
        MessageRecord {
            id,
            endpoint: endpoint.to_owned(),
            kind: kind.to_owned(),
            payload: payload.to_owned(),
            idempotency_key: None,
            contact: None,
            created_at: now,
            stage: Stage::Queued,
            next_attempt_at: now,
            cycle_attempts: 0,
            cycle_started_at: now,
            total_attempts: 0,
            delivered_at: None,
            dead_reason: None,
            dead_at: None,
            last_attempt: None,
        }
    }
}

/// How one attempt ended, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    Delivered,
    Retry,
    Final,
}

/// One try at delivering a message: kept for `hookd msg show` and the dead-letter queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1-based, counted across replays.
    pub number: u32,
    pub started_at: Millis,
    pub duration_ms: u64,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The transport error kind (`connect`, `timeout`, ...), when it did not.
    pub error: Option<String>,
    /// Why the answer was classified as it was, in words.
    pub reason: String,
    pub result: AttemptResult,
    /// The first bytes of the answer body, lossily decoded.
    pub body_excerpt: String,
    /// The receiver's own reference for the message, when its protocol gives one (seed 000's `delivery_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}
