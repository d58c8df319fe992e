//! Dead letters and the bulk verbs that end or revive messages: a page of the dead-letter queue, the count
//! a replay is admitted against, replay (back to the queue, due now), purge (deleted for good), the
//! retention pruning of delivered messages, and retiring a deleted endpoint's queued messages.
//!
//! A bulk verb works in steps of at most [`STEP`] messages, each one statement or one short transaction
//! that locks its rows with `FOR UPDATE SKIP LOCKED`: no statement holds thousands of row locks, other
//! endpoints' work interleaves, and a row another statement holds (a claim) is left to it. A rewrite is
//! made in Rust and written back with one `UPDATE ... FROM UNNEST`; a delete takes the message's attempts.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::model::{MessageId, Millis, Stage};
use crate::store::postgres::enqueue::notices;
use crate::store::postgres::row::{self, COLUMNS, COLUMNS_NO_PAYLOAD, Rows};
use crate::store::postgres::{PgStore, distinct, sql_millis};
use crate::store::{DeadPage, Retire, Selection, StoreError};

/// At most this many messages change in one step of a bulk verb.
const STEP: usize = 500;

/// Which messages a query or a step takes: those in `stage`, narrowed by the other fields.
#[derive(Clone, Copy)]
struct Pick<'a> {
    stage: Stage,
    ids: Option<&'a [Uuid]>,
    endpoint: Option<&'a str>,
    /// Past this id (a bulk verb's cursor, a page's).
    after: Option<Uuid>,
    delivered_before: Option<i64>,
}

impl<'a> Pick<'a> {
    fn of(stage: Stage) -> Pick<'a> {
        Pick {
            stage,
            ids: None,
            endpoint: None,
            after: None,
            delivered_before: None,
        }
    }

    /// The selection's messages in `stage`: its ids, or every one (of its endpoint).
    fn of_selection(stage: Stage, selection: &'a Selection) -> Pick<'a> {
        match selection {
            Selection::Ids(_) => Pick::of(stage),
            Selection::All { endpoint } => Pick {
                endpoint: endpoint.as_deref(),
                ..Pick::of(stage)
            },
        }
    }

    /// Appends the ` WHERE ...` clause.
    fn push_where(&self, sql: &mut QueryBuilder<Postgres>) {
        sql.push(" WHERE stage = ")
            .push_bind(row::stage_name(self.stage));
        if let Some(ids) = self.ids {
            sql.push(" AND id = ANY(").push_bind(ids).push(")");
        }
        if let Some(endpoint) = self.endpoint {
            sql.push(" AND endpoint = ").push_bind(endpoint);
        }
        if let Some(after) = self.after {
            sql.push(" AND id > ").push_bind(after);
        }
        if let Some(before) = self.delivered_before {
            sql.push(" AND delivered_at < ").push_bind(before);
        }
    }
}

/// What one step of a bulk verb does to each message it takes.
enum Step<'a> {
    /// Back to the queue, due `now`, with a fresh cycle (history kept).
    Replay { now: Millis },
    /// A dead letter with this reason.
    Retire { reason: &'a str, now: Millis },
    /// Deleted with its attempts (and so its idempotency key, which lives on the row).
    Delete,
}

/// The ids of `Selection::Ids`, each once, in the order given; `None` for `Selection::All`.
fn selected_ids(selection: &Selection) -> Option<Vec<Uuid>> {
    let Selection::Ids(ids) = selection else {
        return None;
    };
    let mut seen = HashSet::new();
    Some(
        ids.iter()
            .map(|id| row::uuid(*id))
            .filter(|id| seen.insert(*id))
            .collect(),
    )
}

impl PgStore {
    /// A page of dead letters (with their payloads) in id order, optionally of one endpoint, starting after
    /// `after`. `next` is given only when another dead letter follows the page.
    pub async fn list_dead(
        &self,
        endpoint: Option<&str>,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<DeadPage, StoreError> {
        let pick = Pick {
            endpoint,
            after: after.map(row::uuid),
            ..Pick::of(Stage::Dead)
        };
        let mut sql = QueryBuilder::new(format!("SELECT {COLUMNS} FROM hookd_messages"));
        pick.push_where(&mut sql);
        let (items, next) = self.fetch_page(sql, limit).await?;
        Ok(DeadPage { items, next })
    }

    /// How many of the selected dead letters each endpoint has (ids given twice count once).
    pub async fn dead_by_endpoint(
        &self,
        selection: &Selection,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        let ids = selected_ids(selection);
        let chunks: Vec<Option<&[Uuid]>> = match &ids {
            Some(ids) => ids.chunks(STEP).map(Some).collect(),
            None => vec![None],
        };
        let mut counts = BTreeMap::new();
        for chunk in chunks {
            let pick = Pick {
                ids: chunk,
                ..Pick::of_selection(Stage::Dead, selection)
            };
            let mut sql = QueryBuilder::new("SELECT endpoint, count(*) FROM hookd_messages");
            pick.push_where(&mut sql);
            sql.push(" GROUP BY endpoint");
            let rows: Vec<(String, i64)> = sql
                .build_query_as()
                .fetch_all(self.pool())
                .await
                .map_err(|e| self.failed_with(e))?;
            for (endpoint, n) in rows {
                *counts.entry(endpoint).or_insert(0) += n.max(0) as u64;
            }
        }
        Ok(counts)
    }

    /// Moves dead letters back to the queue, due now, with a fresh attempt count and age (history kept),
    /// and wakes their lanes on every node. Returns the replayed messages' endpoints, one per message (in
    /// the order given, or in id order); ids not dead are skipped.
    pub async fn replay(
        &self,
        selection: &Selection,
        now: Millis,
    ) -> Result<Vec<String>, StoreError> {
        let pick = Pick::of_selection(Stage::Dead, selection);
        let ids = selected_ids(selection);
        let (_, endpoints) = self
            .in_steps(pick, ids.as_deref(), &Step::Replay { now }, true)
            .await?;
        Ok(endpoints)
    }

    /// Deletes dead letters for good: record, payload, attempts and idempotency key. Returns how many.
    pub async fn purge(&self, selection: &Selection) -> Result<usize, StoreError> {
        let pick = Pick::of_selection(Stage::Dead, selection);
        let ids = selected_ids(selection);
        let (purged, _) = self
            .in_steps(pick, ids.as_deref(), &Step::Delete, false)
            .await?;
        Ok(purged)
    }

    /// Removes delivered messages delivered before `before` (the retention window). Returns how many.
    pub async fn prune_delivered(&self, before: Millis) -> Result<usize, StoreError> {
        let pick = Pick {
            delivered_before: Some(sql_millis(before)),
            ..Pick::of(Stage::Delivered)
        };
        let (pruned, _) = self.in_steps(pick, None, &Step::Delete, false).await?;
        Ok(pruned)
    }

    /// Retires every queued message of `endpoint` that no node has claimed: dead letters with a reason, or
    /// purged. Returns how many.
    pub async fn retire_queued(
        &self,
        endpoint: &str,
        how: &Retire,
        now: Millis,
    ) -> Result<usize, StoreError> {
        let pick = Pick {
            endpoint: Some(endpoint),
            ..Pick::of(Stage::Queued)
        };
        let step = match how {
            Retire::DeadLetter { reason } => Step::Retire { reason, now },
            Retire::Purge => Step::Delete,
        };
        let (retired, _) = self.in_steps(pick, None, &step, false).await?;
        Ok(retired)
    }

    /// Applies `step` to the messages `pick` takes, a step at a time: the `ids` given, in chunks, or (without
    /// ids) every match, in id order from a cursor, so no message is taken twice. Answers how many changed
    /// and, when `keep`, each one's endpoint (in the order of `ids`, or in id order).
    async fn in_steps(
        &self,
        pick: Pick<'_>,
        ids: Option<&[Uuid]>,
        step: &Step<'_>,
        keep: bool,
    ) -> Result<(usize, Vec<String>), StoreError> {
        let (mut changed, mut endpoints) = (0, Vec::new());
        if let Some(ids) = ids {
            for chunk in ids.chunks(STEP) {
                let pick = Pick {
                    ids: Some(chunk),
                    ..pick
                };
                let mut done: HashMap<Uuid, String> =
                    self.bulk_step(pick, step).await?.into_iter().collect();
                changed += done.len();
                if keep {
                    endpoints.extend(chunk.iter().filter_map(|id| done.remove(id)));
                }
            }
            return Ok((changed, endpoints));
        }
        let mut after = None;
        loop {
            let done = self.bulk_step(Pick { after, ..pick }, step).await?;
            let Some((last, _)) = done.last() else {
                return Ok((changed, endpoints));
            };
            after = Some(*last);
            changed += done.len();
            if keep {
                endpoints.extend(done.into_iter().map(|(_, endpoint)| endpoint));
            }
        }
    }

    /// One step: at most [`STEP`] messages `pick` takes, changed as `step` says and committed, the tally
    /// moved. Answers their ids and endpoints in id order (none: nothing left).
    async fn bulk_step(
        &self,
        pick: Pick<'_>,
        step: &Step<'_>,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        let (done, to) = match step {
            Step::Delete => (self.delete_step(pick).await?, None),
            Step::Replay { .. } => (self.rewrite_step(pick, step).await?, Some(Stage::Queued)),
            Step::Retire { .. } => (self.rewrite_step(pick, step).await?, Some(Stage::Dead)),
        };
        if !done.is_empty() {
            self.wrote();
            let mut per_endpoint: HashMap<&str, u64> = HashMap::new();
            for (_, endpoint) in &done {
                *per_endpoint.entry(endpoint).or_default() += 1;
            }
            for (endpoint, n) in per_endpoint {
                self.inner.tally.moved(endpoint, Some(pick.stage), to, n);
            }
        }
        Ok(done)
    }

    /// Deletes the messages of one step and their attempts, in one statement.
    async fn delete_step(&self, pick: Pick<'_>) -> Result<Vec<(Uuid, String)>, StoreError> {
        let mut sql = QueryBuilder::new("WITH picked AS (SELECT id FROM hookd_messages");
        pick.push_where(&mut sql);
        sql.push(" ORDER BY id LIMIT ").push_bind(STEP as i64).push(
            " FOR UPDATE SKIP LOCKED),
                 gone AS (
                     DELETE FROM hookd_messages m USING picked WHERE m.id = picked.id
                     RETURNING m.id, m.endpoint),
                 attempts AS (DELETE FROM hookd_attempts a USING gone WHERE a.message_id = gone.id)
                 SELECT id, endpoint FROM gone ORDER BY id",
        );
        sql.build_query_as()
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.failed_with(e))
    }

    /// Rewrites the records of one step (a replay or a retirement) in one short transaction: the rows
    /// locked, each record changed in Rust, all written back by one `UPDATE`; a replay also notifies the
    /// other nodes, on commit.
    async fn rewrite_step(
        &self,
        pick: Pick<'_>,
        step: &Step<'_>,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        let mut tx = self.pool().begin().await.map_err(|e| self.failed_with(e))?;
        let mut sql = QueryBuilder::new(format!("SELECT {COLUMNS_NO_PAYLOAD} FROM hookd_messages"));
        pick.push_where(&mut sql);
        sql.push(" ORDER BY id LIMIT ")
            .push_bind(STEP as i64)
            .push(" FOR UPDATE SKIP LOCKED");
        let found = sql
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.failed_with(e))?;
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = Rows::default();
        let mut done = Vec::with_capacity(found.len());
        for found in &found {
            let mut record = row::record_of(found)?;
            match *step {
                Step::Replay { now } => {
                    record.stage = Stage::Queued;
                    record.next_attempt_at = now;
                    record.cycle_attempts = 0;
                    record.cycle_started_at = now;
                    record.dead_reason = None;
                    record.dead_at = None;
                }
                Step::Retire { reason, now } => {
                    record.stage = Stage::Dead;
                    record.dead_reason = Some(reason.to_owned());
                    record.dead_at = Some(now);
                }
                Step::Delete => {}
            }
            rows.push(&record)?;
            done.push((row::uuid(record.id), record.endpoint));
        }
        sqlx::query(
            "UPDATE hookd_messages m
             SET stage = u.stage, due_at = u.due_at, delivered_at = u.delivered_at, record = u.record,
                 claim_id = NULL, claim_owner = NULL, claim_until = NULL
             FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])
                 AS u(id, stage, due_at, delivered_at, record)
             WHERE m.id = u.id",
        )
        .bind(&rows.ids)
        .bind(&rows.stages)
        .bind(&rows.due_ats)
        .bind(&rows.delivered_ats)
        .bind(&rows.records)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.failed_with(e))?;
        if let Step::Replay { .. } = step {
            let woken = notices(self.inner.node, distinct(rows.endpoints));
            sqlx::query("SELECT pg_notify('hookd_work', n) FROM UNNEST($1::text[]) AS n")
                .bind(&woken)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.failed_with(e))?;
        }
        tx.commit().await.map_err(|e| self.failed_with(e))?;
        Ok(done)
    }
}
