//! Reading messages (a record, its attempts, the oldest queued), listing them (`GET /v1/messages`), and the
//! operator's two nudges on one message: retry (a queued message due now) and resend (a delivered message
//! queued again). The dead-letter verbs are in `dead.rs`.
//!
//! A listing is one indexed query: ids are UUID v7, so id order is enqueue order and a time window is an id
//! range; `LIMIT` answers a page exactly, with no scan budget. A nudge reads the row, rewrites the record in
//! Rust and writes it back under a stage guard, so a concurrent claim wins cleanly (the nudge then answers
//! what it found).

use std::collections::BTreeMap;

use serde::Deserialize;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder};
use uuid::Uuid;

use super::enqueue::notices;
use super::row::{self, COLUMNS, COLUMNS_NO_PAYLOAD};
use super::{PgStore, sql_millis};
use crate::model::{AttemptRecord, MessageId, MessageRecord, Millis, Stage};
use crate::store::{MessagePage, MessageQuery, Nudged, StoreError, Wanted};

/// How often a nudge reads the message again when its write lost a race (the row changed meanwhile).
const NUDGE_TRIES: usize = 3;

impl PgStore {
    /// The message's record with its payload (`in_flight` while any node has it claimed).
    pub async fn get(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        self.read_record(id, COLUMNS).await
    }

    /// The message's record read with `columns` ([`COLUMNS`] or [`COLUMNS_NO_PAYLOAD`]).
    async fn read_record(
        &self,
        id: MessageId,
        columns: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {columns} FROM hookd_messages WHERE id = $1"
        )))
        .bind(row::uuid(id))
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        found.as_ref().map(row::record_of).transpose()
    }

    /// Every attempt ever made for a message, oldest first (none for an unknown message).
    pub async fn attempts(&self, id: MessageId) -> Result<Vec<AttemptRecord>, StoreError> {
        match self.read_record(id, COLUMNS_NO_PAYLOAD).await? {
            Some(record) => self.attempts_of(&record).await,
            None => Ok(Vec::new()),
        }
    }

    /// Every attempt ever made for the message of `record`, oldest first: the rows of `hookd_attempts`, then
    /// the latest, which the record holds. By number, each once: an outcome whose claim had run out may have
    /// moved the latest into the table all the same.
    pub async fn attempts_of(
        &self,
        record: &MessageRecord,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let stored: Vec<String> = sqlx::query_scalar(
            "SELECT record FROM hookd_attempts WHERE message_id = $1 ORDER BY number",
        )
        .bind(row::uuid(record.id))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        let mut by_number = BTreeMap::new();
        for text in &stored {
            let attempt = attempt_of(record.id, text)?;
            by_number.insert(attempt.number, attempt);
        }
        if let Some(last) = &record.last_attempt {
            by_number.insert(last.number, last.clone());
        }
        Ok(by_number.into_values().collect())
    }

    /// The latest attempt made for the message of `record`, if any: the record's own, or (for a record that
    /// holds none but counts attempts) the last row of `hookd_attempts`.
    pub async fn last_attempt(
        &self,
        record: &MessageRecord,
    ) -> Result<Option<AttemptRecord>, StoreError> {
        if record.last_attempt.is_some() || record.total_attempts == 0 {
            return Ok(record.last_attempt.clone());
        }
        let stored: Option<String> = sqlx::query_scalar(
            "SELECT record FROM hookd_attempts WHERE message_id = $1 ORDER BY number DESC LIMIT 1",
        )
        .bind(row::uuid(record.id))
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        stored.map(|text| attempt_of(record.id, &text)).transpose()
    }

    /// When the oldest queued (not claimed) message of `endpoint` was enqueued; `None` when nothing is
    /// queued. The smallest id is the oldest: one step on the `(stage, endpoint, id)` index.
    pub async fn oldest_queued(&self, endpoint: &str) -> Result<Option<Millis>, StoreError> {
        #[derive(Deserialize)]
        struct Created {
            created_at: Millis,
        }
        let found: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT id, record FROM hookd_messages WHERE stage = 'queued' AND endpoint = $1
             ORDER BY id LIMIT 1",
        )
        .bind(endpoint)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        let Some((id, text)) = found else {
            return Ok(None);
        };
        let created: Created = serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("message {id}: {e}")))?;
        Ok(Some(created.created_at))
    }

    /// A page of messages in id order, without their payloads: one query, `limit + 1` rows asked for so that
    /// `next` is given only when another page holds something.
    pub async fn list_messages(&self, query: &MessageQuery) -> Result<MessagePage, StoreError> {
        let limit = query.limit.max(1);
        let lower = match (query.since.map(bound_at), query.after.map(row::uuid)) {
            (Some(since), Some(after)) => Some(since.max(after)),
            (since, after) => since.or(after),
        };
        let upper = query.until.map(bound_at);
        if let (Some(lower), Some(upper)) = (lower, upper)
            && lower >= upper
        {
            return Ok(MessagePage {
                items: Vec::new(),
                next: None,
            });
        }
        let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {COLUMNS_NO_PAYLOAD} FROM hookd_messages WHERE true"
        ));
        if let Some(stage) = wanted_stage(query.wanted) {
            sql.push(" AND stage = ").push_bind(row::stage_name(stage));
        }
        if let Some(endpoints) = &query.endpoints {
            sql.push(" AND endpoint = ANY(")
                .push_bind(endpoints.as_slice())
                .push(")");
        }
        if let Some(kind) = &query.kind {
            sql.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some(lower) = lower {
            sql.push(" AND id > ").push_bind(lower);
        }
        if let Some(upper) = upper {
            sql.push(" AND id < ").push_bind(upper);
        }
        let (items, next) = self.fetch_page(sql, limit).await?;
        Ok(MessagePage { items, next })
    }

    /// One page of a listing whose query `sql` is built up to its `WHERE` clause: at most `limit` records in
    /// id order, and the cursor for the next page (the page's last id) only when another row follows it.
    pub(super) async fn fetch_page(
        &self,
        mut sql: QueryBuilder<Postgres>,
        limit: usize,
    ) -> Result<(Vec<MessageRecord>, Option<MessageId>), StoreError> {
        // One row more than the page holds says whether another page holds something.
        sql.push(" ORDER BY id LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1));
        let rows = sql
            .build()
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.failed_with(e))?;
        let mut items = rows
            .iter()
            .map(row::record_of)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match items.len() > limit {
            true => {
                items.truncate(limit);
                items.last().map(|r| r.id)
            }
            false => None,
        };
        Ok((items, next))
    }

    /// An operator's retry: a queued message (held ones included) becomes due at `now`. No attempt is
    /// counted and its cycle goes on; a message claimed meanwhile is in flight and left alone.
    pub async fn retry_now(&self, id: MessageId, now: Millis) -> Result<Nudged, StoreError> {
        self.nudge(id, Stage::Queued, |record| {
            record.next_attempt_at = now;
        })
        .await
    }

    /// An operator's resend: a delivered message is queued again, due at `now`, with a fresh cycle (its
    /// attempt count and age start again; its history is kept and attempt numbers go on). Its contact, if it
    /// has one, counts it as pending again without checking the cap (as a replay does).
    pub async fn resend(&self, id: MessageId, now: Millis) -> Result<Nudged, StoreError> {
        self.nudge(id, Stage::Delivered, |record| {
            record.next_attempt_at = now;
            record.cycle_attempts = 0;
            record.cycle_started_at = now;
            record.delivered_at = None;
        })
        .await
    }

    /// Queues the message again (applying `change` to its record) if it is in stage `from`; notifies the
    /// other nodes in the same statement. The write is guarded by the stage: if the row left `from` since it
    /// was read (claimed, resent), it is read again.
    async fn nudge(
        &self,
        id: MessageId,
        from: Stage,
        change: impl Fn(&mut MessageRecord),
    ) -> Result<Nudged, StoreError> {
        for _ in 0..NUDGE_TRIES {
            let Some(mut record) = self.read_record(id, COLUMNS_NO_PAYLOAD).await? else {
                return Ok(Nudged::Unknown);
            };
            if record.stage != from {
                return Ok(match record.stage {
                    Stage::InFlight => Nudged::InFlight,
                    stage => Nudged::Stage(stage),
                });
            }
            change(&mut record);
            record.stage = Stage::Queued;
            let woken = notices(self.inner.node, vec![record.endpoint.clone()]);
            let written: Vec<Option<bool>> = sqlx::query_scalar(
                "WITH nudged AS (
                     UPDATE hookd_messages
                     SET stage = 'queued', due_at = $3, delivered_at = $4, record = $5
                     WHERE id = $1 AND stage = $2
                     RETURNING id),
                 woken AS (SELECT pg_notify('hookd_work', n) FROM nudged, UNNEST($6::text[]) AS n)
                 SELECT true FROM nudged
                 UNION ALL SELECT NULL FROM woken",
            )
            .bind(row::uuid(id))
            .bind(row::stage_name(from))
            .bind(sql_millis(record.next_attempt_at))
            .bind(record.delivered_at.map(sql_millis))
            .bind(row::record_json(&record)?)
            .bind(&woken)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.failed_with(e))?;
            if written.iter().any(Option::is_some) {
                self.wrote();
                self.inner
                    .tally
                    .moved(&record.endpoint, Some(from), Some(Stage::Queued), 1);
                return Ok(Nudged::Done {
                    endpoint: record.endpoint,
                });
            }
        }
        // The row changed under every try: someone keeps sending it.
        Ok(Nudged::InFlight)
    }
}

/// The stage a listing's rows must be in; `None`: any.
fn wanted_stage(wanted: Wanted) -> Option<Stage> {
    match wanted {
        Wanted::Any => None,
        Wanted::Queued => Some(Stage::Queued),
        Wanted::InFlight => Some(Stage::InFlight),
        Wanted::Delivered => Some(Stage::Delivered),
        Wanted::Dead => Some(Stage::Dead),
    }
}

/// The smallest id enqueued at `at` or later (a UUID v7 carries its millisecond in its first 48 bits): the
/// bound of a time window. PostgreSQL orders uuids by their bytes, as the ids sort.
fn bound_at(at: Millis) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&at.min((1 << 48) - 1).to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// An attempt's stored JSON text back.
fn attempt_of(id: MessageId, text: &str) -> Result<AttemptRecord, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("an attempt of message {id}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_bound_sorts_between_the_ids_of_its_millisecond_and_the_one_before() {
        let id = row::uuid(MessageId::new());
        let at = row::message_id(id).created_at().unwrap_or_default();
        assert!(bound_at(at) < id);
        assert!(bound_at(at + 1) > id);
        assert!(bound_at(at - 1) < bound_at(at));
    }
}
