//! Per-endpoint run-time counters: lock-free atomics, the latency histogram, the last-minute ring, and the
//! snapshots a scrape reads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::model::Millis;

/// Upper bounds (seconds) of the enqueue-to-delivery latency histogram's buckets; `+Inf` follows.
/// Sub-second buckets see first attempts; the long ones see deliveries after retries.
pub const LATENCY_BUCKETS: [f64; 20] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 1800.0, 3600.0, 21600.0, 86400.0,
];

/// The ring behind "last minute" rates: one slot per second.
const RATE_WINDOW_SECS: u64 = 60;

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
pub(super) struct Histogram {
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

    pub(super) fn observe(&self, millis: u64) {
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
pub(super) struct RateRing {
    slots: [(u64, OutcomeCounts); RATE_WINDOW_SECS as usize],
}

impl RateRing {
    pub(super) fn bump(&mut self, now: Millis, outcome: Outcome) {
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
pub(super) struct EndpointTelemetry {
    pub(super) enqueued: AtomicU64,
    /// Indexed by [`Outcome::index`].
    pub(super) outcomes: [AtomicU64; 3],
    pub(super) latency: Histogram,
    rate: Mutex<RateRing>,
}

impl EndpointTelemetry {
    pub(super) fn new() -> EndpointTelemetry {
        EndpointTelemetry {
            enqueued: AtomicU64::new(0),
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: Histogram::new(),
            rate: Mutex::new(RateRing {
                slots: [(0, OutcomeCounts::default()); RATE_WINDOW_SECS as usize],
            }),
        }
    }

    pub(super) fn rate(&self) -> std::sync::MutexGuard<'_, RateRing> {
        // A poisoned ring only means a panic mid-bump; its counts are still usable.
        self.rate.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn snapshot(&self, now: Millis) -> EndpointSnapshot {
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
