//! Attempt outcomes: every attempt's outcomes waiting when the writer is free go into one statement (a group
//! commit, like the enqueue batcher's): each message's new record, its previous latest attempt moved to
//! `hookd_attempts`, its claim cleared. A message whose claim no longer holds (reaped and claimed anew by
//! another node) is left alone, so a late outcome never overwrites a newer claim.

use std::collections::HashMap;
use std::sync::Weak;

use sqlx::AssertSqlSafe;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::enqueue::with_waiting;
use super::row::{self, COLUMNS};
use super::{Inner, PgStore};
use crate::model::{AttemptRecord, MessageId, MessageRecord, Stage};
use crate::retry::Decision;
use crate::store::{AttemptOutcome, StoreError};

/// At most this many outcomes go into one statement.
const OUTCOMES_MAX: usize = 512;

/// One attempt's outcomes and where the answer goes.
pub struct OutcomeJob {
    outcomes: Vec<AttemptOutcome>,
    answer: oneshot::Sender<Result<(), StoreError>>,
}

/// The outcome writer: takes every attempt's outcomes waiting when it is free and writes them in one
/// statement (a group commit, like the enqueue batcher's), so that a delivery costs a share of a statement
/// and of a WAL flush, not one of each.
pub fn spawn_outcome_writer(store: Weak<Inner>, mut jobs: mpsc::Receiver<OutcomeJob>) {
    tokio::spawn(async move {
        while let Some(first) = jobs.recv().await {
            let batch = with_waiting(first, &mut jobs, OUTCOMES_MAX, |job| job.outcomes.len());
            let Some(store) = PgStore::upgrade(&store) else {
                return;
            };
            store.write_outcome_jobs(batch).await;
        }
    });
}

impl PgStore {
    /// Writes the outcomes, together with those of the other attempts waiting at the same time: each
    /// message's new record, its previous latest attempt moved to `hookd_attempts`, its claim cleared; a
    /// message whose claim no longer holds is left alone. Answers after the COMMIT.
    pub async fn record_attempts(&self, outcomes: Vec<AttemptOutcome>) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let (answer, answered) = oneshot::channel();
        let job = OutcomeJob { outcomes, answer };
        if self.inner.outcomes.send(job).await.is_err() {
            return Err(StoreError::Unavailable("the store is closing".into()));
        }
        answered
            .await
            .map_err(|_| StoreError::Unavailable("the store is closing".into()))?
    }

    /// Writes several attempts' outcomes in one statement; when that fails for another reason than an
    /// unreachable database, each attempt's outcomes are written alone, so that one bad outcome fails only
    /// its own attempt.
    async fn write_outcome_jobs(&self, jobs: Vec<OutcomeJob>) {
        if jobs.len() == 1 {
            for job in jobs {
                let written = self.write_outcomes(job.outcomes).await;
                let _ = job.answer.send(written);
            }
            return;
        }
        let all: Vec<AttemptOutcome> = jobs
            .iter()
            .flat_map(|job| job.outcomes.iter().cloned())
            .collect();
        match self.write_outcomes(all).await {
            Ok(()) => {
                for job in jobs {
                    let _ = job.answer.send(Ok(()));
                }
            }
            Err(StoreError::Unavailable(reason)) => {
                for job in jobs {
                    let _ = job
                        .answer
                        .send(Err(StoreError::Unavailable(reason.clone())));
                }
            }
            Err(_) => {
                for job in jobs {
                    let written = self.write_outcomes(job.outcomes).await;
                    let _ = job.answer.send(written);
                }
            }
        }
    }

    /// Writes the outcomes in one statement.
    async fn write_outcomes(&self, outcomes: Vec<AttemptOutcome>) -> Result<(), StoreError> {
        let records = self.leased_records(&outcomes).await?;
        let mut rows = row::Rows::default();
        let mut claims = Vec::new();
        let (mut moved_ids, mut moved_numbers, mut moved_records) =
            (Vec::new(), Vec::new(), Vec::new());
        for outcome in &outcomes {
            let Some(mut record) = records.get(&outcome.id).cloned() else {
                continue;
            };
            if let Some(previous) = apply(&mut record, outcome) {
                moved_ids.push(row::uuid(outcome.id));
                moved_numbers.push(previous.number as i32);
                moved_records.push(encode_attempt(&previous)?);
            }
            claims.push(self.inner.claims.claim_of(outcome.id));
            rows.push(&record)?;
        }
        let written: Vec<(Uuid, String, String)> = sqlx::query_as(
            "WITH written AS (
                 UPDATE hookd_messages m
                 SET stage = u.stage, due_at = u.due_at, delivered_at = u.delivered_at,
                     record = u.record, claim_id = NULL, claim_owner = NULL, claim_until = NULL
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[], $6::text[])
                     AS u(id, claim, stage, due_at, delivered_at, record)
                 WHERE m.id = u.id AND m.claim_id IS NOT DISTINCT FROM u.claim
                 RETURNING m.id, m.endpoint, m.stage),
             moved AS (
                 INSERT INTO hookd_attempts (message_id, number, record)
                 SELECT a.id, a.number, a.record
                 FROM UNNEST($7::uuid[], $8::int[], $9::text[]) AS a(id, number, record)
                 JOIN written ON written.id = a.id
                 ON CONFLICT DO NOTHING)
             SELECT id, endpoint, stage FROM written",
        )
        .bind(&rows.ids)
        .bind(&claims)
        .bind(&rows.stages)
        .bind(&rows.due_ats)
        .bind(&rows.delivered_ats)
        .bind(&rows.records)
        .bind(&moved_ids)
        .bind(&moved_numbers)
        .bind(&moved_records)
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        self.wrote();
        self.inner
            .claims
            .drop_ids(written.iter().map(|(id, _, _)| row::message_id(*id)));
        for (id, endpoint, stage) in &written {
            let from = match records.get(&row::message_id(*id)) {
                Some(record) => record.stage,
                None => Stage::InFlight,
            };
            self.inner
                .tally
                .moved(endpoint, Some(from), Some(row::stage_of(stage)?), 1);
        }
        if written.len() < rows.len() {
            tracing::warn!(
                lost = rows.len() - written.len(),
                "outcomes not written: their claims ran out and the messages were claimed again"
            );
        }
        Ok(())
    }

    /// The records the outcomes apply to: the ones handed back from the lease, the others read.
    async fn leased_records(
        &self,
        outcomes: &[AttemptOutcome],
    ) -> Result<HashMap<MessageId, MessageRecord>, StoreError> {
        let mut records: HashMap<MessageId, MessageRecord> = outcomes
            .iter()
            .filter_map(|o| o.leased.clone().map(|record| (o.id, record)))
            .collect();
        let missing: Vec<Uuid> = outcomes
            .iter()
            .filter(|o| !records.contains_key(&o.id))
            .map(|o| row::uuid(o.id))
            .collect();
        if !missing.is_empty() {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM hookd_messages WHERE id = ANY($1)"
            )))
            .bind(&missing)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.failed_with(e))?;
            for found in &rows {
                let record = row::record_of(found)?;
                records.insert(record.id, record);
            }
        }
        Ok(records)
    }
}

/// Counts the attempt and applies the decision to the record; answers the attempt it held before.
fn apply(record: &mut MessageRecord, outcome: &AttemptOutcome) -> Option<AttemptRecord> {
    record.cycle_attempts += 1;
    record.total_attempts = record.total_attempts.max(outcome.attempt.number);
    let previous = record.last_attempt.replace(outcome.attempt.clone());
    match &outcome.decision {
        Decision::Delivered => {
            record.stage = Stage::Delivered;
            record.delivered_at = Some(outcome.now);
        }
        Decision::RetryAt(due_at) => {
            record.stage = Stage::Queued;
            record.next_attempt_at = *due_at;
        }
        Decision::Dead { reason } => {
            record.stage = Stage::Dead;
            record.dead_reason = Some(reason.clone());
            record.dead_at = Some(outcome.now);
        }
    }
    previous
}

pub(super) fn encode_attempt(attempt: &AttemptRecord) -> Result<String, StoreError> {
    serde_json::to_string(attempt)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode attempt {}: {e}", attempt.number)))
}
