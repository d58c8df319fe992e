//! The live feed's events, as `GET /v1/events` streams them: attempts and changes in an endpoint's life.

use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::model::{AttemptResult, Millis};

/// One attempt on one message, as `GET /v1/events` streams it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptEvent {
    /// When the outcome was decided (Unix ms).
    pub at: Millis,
    pub message_id: String,
    pub endpoint: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// 1-based, counted across replays.
    pub attempt: u32,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The transport error kind (`connect`, `timeout`, ...), when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the answer was classified as it was.
    pub reason: String,
    /// How the answer was classified: delivered, retry or final.
    pub verdict: AttemptResult,
    /// What became of the message: delivered, retry or dead.
    pub result: Outcome,
    /// When the next attempt is due, for `retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Millis>,
    /// Why the message was dead-lettered, for `dead`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<String>,
    /// How long the request took.
    pub duration_ms: u64,
}

/// What changed about an endpoint, as `GET /v1/events` streams it beside the attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointChange {
    /// The circuit breaker opened: nothing is sent until its cooldown ends.
    CircuitOpened,
    /// The cooldown ended: one probe message is being sent.
    CircuitHalfOpen,
    /// The receiver answers again: sending as usual.
    CircuitClosed,
    Paused,
    Resumed,
    /// A 410 Gone disabled the endpoint.
    Disabled,
    Enabled,
    VerificationPassed,
    VerificationFailed,
}

impl EndpointChange {
    /// The words a line for people uses.
    pub fn words(self) -> &'static str {
        match self {
            EndpointChange::CircuitOpened => "circuit opened",
            EndpointChange::CircuitHalfOpen => "circuit half-open (probing)",
            EndpointChange::CircuitClosed => "circuit closed",
            EndpointChange::Paused => "paused",
            EndpointChange::Resumed => "resumed",
            EndpointChange::Disabled => "disabled",
            EndpointChange::Enabled => "enabled",
            EndpointChange::VerificationPassed => "verification passed",
            EndpointChange::VerificationFailed => "verification failed",
        }
    }
}

/// A change in an endpoint's life, as `GET /v1/events` streams it: `{"event":"circuit_opened",...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointEvent {
    pub event: EndpointChange,
    pub endpoint: String,
    /// When it changed (Unix ms).
    pub at: Millis,
    /// More about it (the failures that opened a circuit, a 410's or a failed handshake's reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One event of the live feed: an attempt's outcome, or a change in an endpoint's life.
#[derive(Clone, Debug, PartialEq)]
pub enum FeedEvent {
    Attempt(Box<AttemptEvent>),
    Endpoint(EndpointEvent),
}
