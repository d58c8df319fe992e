//! What hookd counts about itself while it runs, for `/metrics`, `hookd status` and `hookd tail`.
//!
//! The hot path (one call per attempt outcome, one per enqueue) touches only atomics of its endpoint and, once
//! per attempt, a small per-endpoint mutex around a one-minute ring of per-second totals. The endpoint table
//! is read-locked on every call and write-locked only the first time a name is seen (configured endpoints are
//! registered at start). Live attempt events go out on a `broadcast` channel; building an event is skipped
//! while nobody listens. Counters start at zero with each run: durable truth (queue depth) is the store's.

mod endpoint_counters;
mod feed_events;
mod outcome;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;

use endpoint_counters::EndpointTelemetry;
pub use endpoint_counters::{EndpointSnapshot, HistogramSnapshot, LATENCY_BUCKETS, OutcomeCounts};
pub use feed_events::{AttemptEvent, EndpointChange, EndpointEvent, FeedEvent};
pub use outcome::{BadOutcome, Outcome};

use crate::model::{AttemptRecord, MessageRecord, Millis};
use crate::retry::Decision;

/// How many attempt events a slow `tail` may fall behind before it is told it lagged.
const EVENT_BUFFER: usize = 1024;

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
    use crate::model::{AttemptResult, MessageId};

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
