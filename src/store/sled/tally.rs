//! Live message counts per endpoint and stage, kept in memory beside the trees.
//!
//! Counting from the indexes reads every entry (and a record per in-flight, dead and delivered entry), far too
//! slow for `status`, `/metrics` or the `max_queue_depth` check on every enqueue. The tally is counted from
//! the indexes once when the store opens, then moved by each committed transaction's stage change, so it is
//! exact for this process; the conformance suite checks it against a fresh count after every kind of change.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Counts, StageCounts};
use crate::model::Stage;

/// Counts per endpoint and stage.
#[derive(Debug, Default)]
pub(super) struct Tally {
    by_endpoint: Mutex<BTreeMap<String, StageCounts>>,
}

fn slot(counts: &mut StageCounts, stage: Stage) -> Option<&mut u64> {
    match stage {
        Stage::Queued => Some(&mut counts.queued),
        Stage::InFlight => Some(&mut counts.in_flight),
        Stage::Delivered => Some(&mut counts.delivered),
        Stage::Dead => Some(&mut counts.dead),
    }
}

impl Tally {
    pub fn new(counts: Counts) -> Tally {
        Tally {
            by_endpoint: Mutex::new(counts.by_endpoint),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, StageCounts>) -> T) -> T {
        let mut map = match self.by_endpoint.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut map)
    }

    /// One message of `endpoint` moved from stage `from` (`None`: it is new) to `to` (`None`: deleted).
    pub fn moved(&self, endpoint: &str, from: Option<Stage>, to: Option<Stage>) {
        if from == to {
            return;
        }
        self.with(|map| {
            let counts = match map.get_mut(endpoint) {
                Some(counts) => counts,
                None => map.entry(endpoint.to_owned()).or_default(),
            };
            if let Some(n) = from.and_then(|stage| slot(counts, stage)) {
                *n = n.saturating_sub(1);
            }
            if let Some(n) = to.and_then(|stage| slot(counts, stage)) {
                *n += 1;
            }
            // An endpoint with no messages left is absent, as in a count from the indexes.
            if *counts == StageCounts::default() {
                map.remove(endpoint);
            }
        });
    }

    pub fn snapshot(&self) -> Counts {
        Counts {
            by_endpoint: self.with(|map| map.clone()),
        }
    }

    /// Messages of `endpoint` not yet delivered or dead (queued, held or in flight).
    pub fn pending_of(&self, endpoint: &str) -> u64 {
        self.with(|map| map.get(endpoint).map_or(0, |c| c.queued + c.in_flight))
    }

    /// The `n` endpoints with the most messages pending, most first.
    pub fn most_pending(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self.with(|map| {
            map.iter()
                .map(|(name, c)| (name.clone(), c.queued + c.in_flight))
                .filter(|(_, pending)| *pending > 0)
                .collect()
        });
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// Messages not yet delivered or dead (queued, held or in flight), over every endpoint.
    pub fn pending(&self) -> u64 {
        self.with(|map| map.values().map(|c| c.queued + c.in_flight).sum())
    }
}
