//! What hookd counts about itself while it runs, for `/metrics`, `hookd status` and `hookd tail`.
//!
//! The hot path (one call per attempt outcome, one per enqueue) touches only atomics of its endpoint and, once
//! per attempt, a small per-endpoint mutex around a one-minute ring of per-second totals. The endpoint table
//! is read-locked on every call and write-locked only the first time a name is seen (configured endpoints are
//! registered at start). Live attempt events go out on a `broadcast` channel; building an event is skipped
//! while nobody listens. Counters start at zero with each run: durable truth (queue depth) is the store's.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::model::{AttemptRecord, AttemptResult, MessageRecord, Millis};
use crate::retry::Decision;

/// Upper bounds (seconds) of the enqueue-to-delivery latency histogram's buckets; `+Inf` follows.
/// Sub-second buckets see first attempts; the long ones see deliveries after retries.
pub const LATENCY_BUCKETS: [f64; 20] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 1800.0, 3600.0, 21600.0, 86400.0,
];

/// How many attempt events a slow `tail` may fall behind before it is told it lagged.
const EVENT_BUFFER: usize = 1024;

/// The ring behind "last minute" rates: one slot per second.
const RATE_WINDOW_SECS: u64 = 60;

/// What became of a message after an attempt: the retry decision, in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Delivered,
    /// Queued again for a later attempt.
    Retry,
    /// Moved to the dead-letter queue.
    Dead,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Delivered, Outcome::Retry, Outcome::Dead];

    pub fn of(decision: &Decision) -> Outcome {
        match decision {
            Decision::Delivered => Outcome::Delivered,
            Decision::RetryAt(_) => Outcome::Retry,
            Decision::Dead { .. } => Outcome::Dead,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry => "retry",
            Outcome::Dead => "dead",
        }
    }

    fn index(self) -> usize {
        match self {
            Outcome::Delivered => 0,
            Outcome::Retry => 1,
            Outcome::Dead => 2,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not an [`Outcome`].
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not one of: delivered, retry, dead")]
pub struct BadOutcome(String);

impl FromStr for Outcome {
    type Err = BadOutcome;
    fn from_str(s: &str) -> Result<Outcome, BadOutcome> {
        match s {
            "delivered" => Ok(Outcome::Delivered),
            "retry" => Ok(Outcome::Retry),
            "dead" => Ok(Outcome::Dead),
            other => Err(BadOutcome(other.to_owned())),
        }
    }
}

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

/// Counts per outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    pub delivered: u64,
    pub retry: u64,
    pub dead: u64,
}

impl OutcomeCounts {
    pub fn get(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Delivered => self.delivered,
            Outcome::Retry => self.retry,
            Outcome::Dead => self.dead,
        }
    }

    pub fn add(&mut self, other: &OutcomeCounts) {
        self.delivered += other.delivered;
        self.retry += other.retry;
        self.dead += other.dead;
    }

    /// Every attempt counted, whatever its outcome.
    pub fn attempts(&self) -> u64 {
        self.delivered + self.retry + self.dead
    }
}

/// A histogram's state at one moment; `buckets` are per bucket (not cumulative), the last one `+Inf`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// How many observations; always the sum of the buckets, so a scrape is self-consistent.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// One endpoint's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointSnapshot {
    pub enqueued: u64,
    /// Attempt outcomes since start.
    pub outcomes: OutcomeCounts,
    /// Attempt outcomes in the last minute.
    pub last_minute: OutcomeCounts,
    /// Enqueue (or replay) to delivery.
    pub latency: HistogramSnapshot,
}

/// Lock-free latency histogram: a counter per bucket and the sum in milliseconds (the store's clock unit).
#[derive(Debug)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ms: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ms: AtomicU64::new(0),
        }
    }

    fn observe(&self, millis: u64) {
        let seconds = millis as f64 / 1000.0;
        let index = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(millis, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_seconds: self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

/// Outcomes per second over the last minute; slot `second % 60`, stamped with its second.
#[derive(Debug)]
struct RateRing {
    slots: [(u64, OutcomeCounts); RATE_WINDOW_SECS as usize],
}

impl RateRing {
    fn bump(&mut self, now: Millis, outcome: Outcome) {
        let second = now / 1000;
        let slot = &mut self.slots[(second % RATE_WINDOW_SECS) as usize];
        if slot.0 != second {
            *slot = (second, OutcomeCounts::default());
        }
        match outcome {
            Outcome::Delivered => slot.1.delivered += 1,
            Outcome::Retry => slot.1.retry += 1,
            Outcome::Dead => slot.1.dead += 1,
        }
    }

    fn last_minute(&self, now: Millis) -> OutcomeCounts {
        let second = now / 1000;
        let mut total = OutcomeCounts::default();
        for (stamp, counts) in &self.slots {
            if *stamp <= second && second - *stamp < RATE_WINDOW_SECS {
                total.add(counts);
            }
        }
        total
    }
}

#[derive(Debug)]
struct EndpointTelemetry {
    enqueued: AtomicU64,
    /// Indexed by [`Outcome::index`].
    outcomes: [AtomicU64; 3],
    latency: Histogram,
    rate: Mutex<RateRing>,
}

impl EndpointTelemetry {
    fn new() -> EndpointTelemetry {
        EndpointTelemetry {
            enqueued: AtomicU64::new(0),
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: Histogram::new(),
            rate: Mutex::new(RateRing {
                slots: [(0, OutcomeCounts::default()); RATE_WINDOW_SECS as usize],
            }),
        }
    }

    fn rate(&self) -> std::sync::MutexGuard<'_, RateRing> {
        // A poisoned ring only means a panic mid-bump; its counts are still usable.
        self.rate.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn snapshot(&self, now: Millis) -> EndpointSnapshot {
        let outcome = |o: Outcome| self.outcomes[o.index()].load(Ordering::Relaxed);
        EndpointSnapshot {
            enqueued: self.enqueued.load(Ordering::Relaxed),
            outcomes: OutcomeCounts {
                delivered: outcome(Outcome::Delivered),
                retry: outcome(Outcome::Retry),
                dead: outcome(Outcome::Dead),
            },
            last_minute: self.rate().last_minute(now),
            latency: self.latency.snapshot(),
        }
    }
}

/// The daemon's run-time counters and its live attempt feed. Shared as `Arc<Telemetry>` by the API and the
/// lanes.
#[derive(Debug)]
pub struct Telemetry {
    started_at: Millis,
    /// Write-locked only to add an endpoint seen for the first time.
    endpoints: RwLock<HashMap<String, Arc<EndpointTelemetry>>>,
    /// The sending half of the live feed; each `subscribe` is one listener.
    events: broadcast::Sender<FeedEvent>,
}

impl Telemetry {
    /// Counters for `endpoints` (shown at zero until something happens), started at `now`.
    pub fn new<'a>(endpoints: impl IntoIterator<Item = &'a str>, now: Millis) -> Telemetry {
        let table = endpoints
            .into_iter()
            .map(|name| (name.to_owned(), Arc::new(EndpointTelemetry::new())))
            .collect();
        Telemetry {
            started_at: now,
            endpoints: RwLock::new(table),
            events: broadcast::channel(EVENT_BUFFER).0,
        }
    }

    pub fn started_at(&self) -> Millis {
        self.started_at
    }

    fn endpoint(&self, name: &str) -> Arc<EndpointTelemetry> {
        {
            let table = self.endpoints.read().unwrap_or_else(|p| p.into_inner());
            if let Some(found) = table.get(name) {
                return Arc::clone(found);
            }
        }
        let mut table = self.endpoints.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            table
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(EndpointTelemetry::new())),
        )
    }

    /// A new message was made durable for `endpoint` (idempotent duplicates are not counted).
    pub fn enqueued(&self, endpoint: &str) {
        self.endpoint(endpoint)
            .enqueued
            .fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt on `message` ended with `record` and `decision` at `now`: count it, and tell live listeners.
    pub fn attempt_recorded(
        &self,
        endpoint: &str,
        message: &MessageRecord,
        record: &AttemptRecord,
        decision: &Decision,
        now: Millis,
    ) {
        let outcome = Outcome::of(decision);
        let counters = self.endpoint(endpoint);
        counters.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::Delivered {
            counters
                .latency
                .observe(now.saturating_sub(message.cycle_started_at));
        }
        counters.rate().bump(now, outcome);
        if self.events.receiver_count() == 0 {
            return;
        }
        let event = AttemptEvent {
            at: now,
            message_id: message.id.to_string(),
            endpoint: endpoint.to_owned(),
            kind: message.kind.clone(),
            attempt: record.number,
            status: record.status,
            error: record.error.clone(),
            reason: record.reason.clone(),
            verdict: record.result,
            result: outcome,
            retry_at: match decision {
                Decision::RetryAt(at) => Some(*at),
                _ => None,
            },
            dead_reason: match decision {
                Decision::Dead { reason } => Some(reason.clone()),
                _ => None,
            },
            duration_ms: record.duration_ms,
        };
        // An error only means the last listener left meanwhile.
        let _ = self.events.send(FeedEvent::Attempt(Box::new(event)));
    }

    /// `endpoint` changed (circuit, control, verification): tell live listeners (nothing is counted).
    pub fn endpoint_changed(&self, endpoint: &str, event: EndpointChange, detail: Option<String>) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let _ = self.events.send(FeedEvent::Endpoint(EndpointEvent {
            event,
            endpoint: endpoint.to_owned(),
            at: crate::model::now_millis(),
            detail,
        }));
    }

    /// A live feed of attempt and endpoint events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.events.subscribe()
    }

    /// How many live feeds are open.
    pub fn subscribers(&self) -> usize {
        self.events.receiver_count()
    }

    /// Every endpoint's counters, by name.
    pub fn snapshot(&self, now: Millis) -> BTreeMap<String, EndpointSnapshot> {
        let table = self.endpoints.read().unwrap_or_else(|p| p.into_inner());
        table
            .iter()
            .map(|(name, counters)| (name.clone(), counters.snapshot(now)))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::MessageId;

    fn attempt(number: u32, result: AttemptResult) -> AttemptRecord {
        AttemptRecord {
            number,
            started_at: 0,
            duration_ms: 3,
            status: Some(200),
            error: None,
            reason: "HTTP 200".into(),
            result,
            body_excerpt: String::new(),
            receipt: None,
        }
    }

    #[test]
    fn counts_outcomes_latency_and_the_last_minute() {
        let telemetry = Telemetry::new(["a", "b"], 1_000);
        let message = MessageRecord::new_queued(MessageId::new(), "a", "t", "{}", 10_000);
        let delivered = attempt(1, AttemptResult::Delivered);
        telemetry.enqueued("a");
        telemetry.attempt_recorded("a", &message, &delivered, &Decision::Delivered, 10_250);
        telemetry.attempt_recorded("a", &message, &delivered, &Decision::RetryAt(1), 10_300);
        telemetry.attempt_recorded(
            "a",
            &message,
            &delivered,
            &Decision::Dead { reason: "x".into() },
            80_000,
        );
        let snapshot = telemetry.snapshot(80_000);
        let a = &snapshot["a"];
        assert_eq!(a.enqueued, 1);
        assert_eq!(
            a.outcomes,
            OutcomeCounts {
                delivered: 1,
                retry: 1,
                dead: 1
            }
        );
        assert_eq!(
            a.last_minute,
            OutcomeCounts {
                delivered: 0,
                retry: 0,
                dead: 1
            },
            "the outcomes at 10 s fell out of the minute before 80 s"
        );
        assert_eq!(a.latency.count(), 1);
        assert_eq!(a.latency.sum_seconds, 0.25);
        let le_025 = LATENCY_BUCKETS.iter().position(|b| *b == 0.25).unwrap();
        assert_eq!(a.latency.buckets[le_025], 1);
        assert_eq!(
            snapshot["b"],
            EndpointSnapshot {
                latency: HistogramSnapshot {
                    buckets: vec![0; LATENCY_BUCKETS.len() + 1],
                    sum_seconds: 0.0
                },
                ..EndpointSnapshot::default()
            }
        );
    }

    #[test]
    fn events_reach_subscribers_only() {
        let telemetry = Telemetry::new(["a"], 0);
        let message = MessageRecord::new_queued(MessageId::new(), "a", "t", "{}", 0);
        let record = attempt(2, AttemptResult::Retry);
        telemetry.attempt_recorded("a", &message, &record, &Decision::RetryAt(99), 5);
        let mut feed = telemetry.subscribe();
        telemetry.attempt_recorded("a", &message, &record, &Decision::RetryAt(77), 6);
        let FeedEvent::Attempt(event) = feed.try_recv().unwrap() else {
            panic!("an attempt event")
        };
        assert_eq!(event.result, Outcome::Retry);
        assert_eq!(event.retry_at, Some(77));
        assert_eq!(event.attempt, 2);
        assert!(
            feed.try_recv().is_err(),
            "the event before subscribing is not replayed"
        );
        telemetry.endpoint_changed("a", EndpointChange::Paused, None);
        let FeedEvent::Endpoint(event) = feed.try_recv().unwrap() else {
            panic!("an endpoint event")
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap()["event"],
            "paused",
            "{event:?}"
        );
    }
}
