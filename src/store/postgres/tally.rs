//! The live counts per endpoint and stage, in memory, for the store's synchronous reads (admission, stats).
//!
//! The database's own tally is `hookd_tally`: triggers append each statement's signed changes, so a read
//! of it sums a few rows per endpoint instead of counting messages. A node loads it at start and applies
//! its own writes as it makes them, so on one node the counts are exact after every verb. While other nodes
//! are alive, the heartbeat rereads the database's tally and replaces the node's copy: the counts then lag
//! the other nodes' writes by up to one heartbeat, which admission (`max_queued`, the global guard) allows.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{PgStore, lock, pg_error, row};
use crate::model::Stage;
use crate::store::{Counts, StageCounts, StoreError};

/// The node's copy of the counts.
#[derive(Default)]
pub struct Tally {
    by_endpoint: Mutex<HashMap<String, StageCounts>>,
}

impl Tally {
    /// `n` messages of `endpoint` moved from one stage to another (`None`: created, or deleted).
    pub fn moved(&self, endpoint: &str, from: Option<Stage>, to: Option<Stage>, n: u64) {
        if n == 0 || from == to {
            return;
        }
        let mut all = lock(&self.by_endpoint);
        let counts = all.entry(endpoint.to_owned()).or_default();
        if let Some(from) = from {
            let slot = slot(counts, from);
            *slot = slot.saturating_sub(n);
        }
        if let Some(to) = to {
            *slot(counts, to) += n;
        }
        if *counts == StageCounts::default() {
            all.remove(endpoint);
        }
    }

    pub fn counts(&self) -> Counts {
        let all = lock(&self.by_endpoint);
        Counts {
            by_endpoint: all.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }

    /// Queued and in flight, over every endpoint.
    pub fn pending(&self) -> u64 {
        lock(&self.by_endpoint).values().map(pending).sum()
    }

    pub fn pending_of(&self, endpoint: &str) -> u64 {
        lock(&self.by_endpoint).get(endpoint).map_or(0, pending)
    }

    pub fn most_pending(&self, n: usize) -> Vec<(String, u64)> {
        let all = lock(&self.by_endpoint);
        let mut most: Vec<(String, u64)> = all
            .iter()
            .map(|(name, counts)| (name.clone(), pending(counts)))
            .filter(|(_, pending)| *pending > 0)
            .collect();
        most.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        most.truncate(n);
        most
    }

    pub fn has_queued(&self, endpoint: &str) -> bool {
        self.pending_of(endpoint) > 0
    }

    pub fn queued_endpoints(&self) -> Vec<String> {
        let all = lock(&self.by_endpoint);
        let mut names: Vec<String> = all
            .iter()
            .filter(|(_, counts)| pending(counts) > 0)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    fn replace(&self, counts: Counts) {
        *lock(&self.by_endpoint) = counts.by_endpoint.into_iter().collect();
    }
}

fn pending(counts: &StageCounts) -> u64 {
    counts.queued + counts.in_flight
}

fn slot(counts: &mut StageCounts, stage: Stage) -> &mut u64 {
    match stage {
        Stage::Queued => &mut counts.queued,
        Stage::InFlight => &mut counts.in_flight,
        Stage::Delivered => &mut counts.delivered,
        Stage::Dead => &mut counts.dead,
    }
}

impl PgStore {
    /// Replaces the node's counts with the database's tally.
    pub(super) async fn reload_tally(&self) -> Result<(), StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT endpoint, stage, sum(n)::bigint FROM hookd_tally GROUP BY 1, 2 HAVING sum(n) <> 0",
        )
        .fetch_all(self.pool())
        .await
        .map_err(pg_error)?;
        self.inner.tally.replace(counts_of(rows)?);
        Ok(())
    }

    /// Counts every message, slowly: what the tally must agree with.
    pub async fn recount(&self) -> Result<Counts, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT endpoint, stage, count(*) FROM hookd_messages GROUP BY 1, 2")
                .fetch_all(self.pool())
                .await
                .map_err(|e| self.failed_with(e))?;
        counts_of(rows)
    }

    pub fn counts(&self) -> Result<Counts, StoreError> {
        Ok(self.inner.tally.counts())
    }
    pub fn pending(&self) -> u64 {
        self.inner.tally.pending()
    }
    pub fn pending_of(&self, endpoint: &str) -> u64 {
        self.inner.tally.pending_of(endpoint)
    }
    pub fn most_pending(&self, n: usize) -> Vec<(String, u64)> {
        self.inner.tally.most_pending(n)
    }
    pub fn has_queued(&self, endpoint: &str) -> bool {
        self.inner.tally.has_queued(endpoint)
    }
    pub fn queued_endpoints(&self) -> Vec<String> {
        self.inner.tally.queued_endpoints()
    }
}

fn counts_of(rows: Vec<(String, String, i64)>) -> Result<Counts, StoreError> {
    let mut counts = Counts::default();
    for (endpoint, stage, n) in rows {
        let stage = row::stage_of(&stage)?;
        *slot(counts.by_endpoint.entry(endpoint).or_default(), stage) += n.max(0) as u64;
    }
    counts
        .by_endpoint
        .retain(|_, c| *c != StageCounts::default());
    Ok(counts)
}
