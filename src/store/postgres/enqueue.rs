//! Enqueues: concurrent callers' messages gathered into one statement (a group commit).
//!
//! A batcher task takes every enqueue waiting when it is free and writes them together: one `INSERT ...
//! SELECT FROM UNNEST` that also sends one `NOTIFY` naming the batch's endpoints (so other nodes wake those
//! lanes). Messages with an idempotency key or a per-contact cap need more than one statement: their batch
//! runs in a transaction that first finds known keys and takes an advisory lock per contact, so the cap is
//! exact under concurrent enqueues from several nodes. Either way the answer comes after COMMIT.

use std::collections::HashMap;
use std::sync::Weak;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::row::{self, Rows};
use super::{Inner, PgStore, distinct};
use crate::model::{MessageId, MessageRecord, Millis, Stage};
use crate::store::{Enqueued, NewMessage, StoreError};

/// At most this many messages go into one statement.
const BATCH_MAX: usize = 2_000;
/// A notification's payload stays under PostgreSQL's 8,000-byte limit.
const NOTIFY_MAX: usize = 7_000;

type Answers = Result<Vec<Result<Enqueued, StoreError>>, StoreError>;

/// One caller's messages and where its answer goes.
pub struct Job {
    messages: Vec<NewMessage>,
    now: Millis,
    answer: oneshot::Sender<Answers>,
}

impl PgStore {
    pub async fn enqueue(&self, new: &NewMessage, now: Millis) -> Result<Enqueued, StoreError> {
        crate::store::first_answer(self.enqueue_many(vec![new.clone()], now).await?)
    }

    pub async fn enqueue_many(&self, messages: Vec<NewMessage>, now: Millis) -> Answers {
        let (answer, answered) = oneshot::channel();
        let job = Job {
            messages,
            now,
            answer,
        };
        if self.inner.enqueues.send(job).await.is_err() {
            return Err(StoreError::Unavailable("the store is closing".into()));
        }
        answered
            .await
            .map_err(|_| StoreError::Unavailable("the store is closing".into()))?
    }
}

/// A group commit's jobs: `first` and those already waiting behind it in `jobs`, taken without waiting
/// until they hold `max` items (as `items` counts a job's) or none is left.
pub(super) fn with_waiting<J>(
    first: J,
    jobs: &mut mpsc::Receiver<J>,
    max: usize,
    items: impl Fn(&J) -> usize,
) -> Vec<J> {
    let mut size = items(&first);
    let mut batch = vec![first];
    while size < max {
        match jobs.try_recv() {
            Ok(job) => {
                size += items(&job);
                batch.push(job);
            }
            Err(_) => break,
        }
    }
    batch
}

pub fn spawn_batcher(store: Weak<Inner>, mut jobs: mpsc::Receiver<Job>) {
    tokio::spawn(async move {
        while let Some(first) = jobs.recv().await {
            let batch = with_waiting(first, &mut jobs, BATCH_MAX, |job| job.messages.len());
            let Some(store) = PgStore::upgrade(&store) else {
                return;
            };
            store.write_batch(batch).await;
        }
    });
}

/// What became of one message of a batch while it is being decided.
enum Fate {
    Insert(Box<MessageRecord>),
    Answered(Result<Enqueued, StoreError>),
}

impl PgStore {
    async fn write_batch(&self, batch: Vec<Job>) {
        let mut fates: Vec<Vec<Fate>> = batch
            .iter()
            .map(|job| {
                job.messages
                    .iter()
                    .map(|new| Fate::Insert(Box::new(new_record(new, job.now))))
                    .collect()
            })
            .collect();
        let limits: Vec<Vec<Option<usize>>> = batch
            .iter()
            .map(|job| {
                job.messages
                    .iter()
                    .map(|m| m.contact.as_ref().map(|c| c.max_pending))
                    .collect()
            })
            .collect();
        let simple = batch.iter().all(|job| {
            job.messages
                .iter()
                .all(|m| m.idempotency_key.is_none() && m.contact.is_none())
        });
        let written = if simple {
            self.insert_simple(&mut fates).await
        } else {
            self.insert_checked(&mut fates, &limits).await
        };
        match written {
            Ok(()) => {
                self.wrote();
                for (job, fates) in batch.into_iter().zip(fates) {
                    let answers = fates
                        .into_iter()
                        .map(|fate| match fate {
                            Fate::Answered(answer) => answer,
                            Fate::Insert(record) => Ok(Enqueued {
                                id: record.id,
                                duplicate: false,
                            }),
                        })
                        .collect();
                    let _ = job.answer.send(Ok(answers));
                }
            }
            Err(error) => {
                let error = match error {
                    StoreError::Unavailable(reason) => StoreError::Unavailable(reason),
                    other => StoreError::Combined(other.to_string()),
                };
                for job in batch {
                    let _ = job.answer.send(Err(clone_error(&error)));
                }
            }
        }
    }

    /// Messages without idempotency keys or contacts: one statement.
    async fn insert_simple(&self, fates: &mut [Vec<Fate>]) -> Result<(), StoreError> {
        let rows = rows_to_insert(fates)?;
        let inserted = self.insert(&rows, self.pool()).await?;
        self.count_inserted(&rows, &inserted);
        Ok(())
    }

    /// Messages with idempotency keys or contact caps: a transaction that decides each, then inserts.
    async fn insert_checked(
        &self,
        fates: &mut [Vec<Fate>],
        limits: &[Vec<Option<usize>>],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(|e| self.failed_with(e))?;
        // Keys known already, and keys repeated inside the batch.
        let mut known: HashMap<(String, String), Uuid> = HashMap::new();
        let keyed: Vec<(String, String)> = fates
            .iter()
            .flatten()
            .filter_map(|fate| match fate {
                Fate::Insert(r) => r.idempotency_key.clone().map(|k| (r.endpoint.clone(), k)),
                Fate::Answered(_) => None,
            })
            .collect();
        if !keyed.is_empty() {
            known.extend(self.known_keys(&keyed, &mut tx).await?);
        }
        // Contacts: an advisory lock each (in one order), then their pending counts.
        let contacts: Vec<(String, String)> =
            distinct_pairs(fates.iter().flatten().filter_map(|fate| match fate {
                Fate::Insert(r) => r.contact.clone().map(|c| (r.endpoint.clone(), c)),
                Fate::Answered(_) => None,
            }));
        let mut pending: HashMap<(String, String), usize> = HashMap::new();
        if !contacts.is_empty() {
            let (endpoints, names): (Vec<String>, Vec<String>) = contacts.iter().cloned().unzip();
            sqlx::query(
                "SELECT pg_advisory_xact_lock(k) FROM (
                     SELECT DISTINCT hashtextextended(e || chr(31) || c, 7) AS k
                     FROM UNNEST($1::text[], $2::text[]) AS u(e, c) ORDER BY k) AS keys",
            )
            .bind(&endpoints)
            .bind(&names)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.failed_with(e))?;
            let counted: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT m.endpoint, m.contact, count(*) FROM hookd_messages m
                 JOIN UNNEST($1::text[], $2::text[]) AS u(e, c) ON m.endpoint = u.e AND m.contact = u.c
                 WHERE m.stage IN ('queued', 'in_flight') GROUP BY 1, 2",
            )
            .bind(&endpoints)
            .bind(&names)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.failed_with(e))?;
            pending.extend(counted.into_iter().map(|(e, c, n)| ((e, c), n as usize)));
        }
        // Decide each message in order.
        for (fates, limits) in fates.iter_mut().zip(limits) {
            for (fate, limit) in fates.iter_mut().zip(limits) {
                let Fate::Insert(record) = fate else { continue };
                if let Some(key) = &record.idempotency_key {
                    let known_key = (record.endpoint.clone(), key.clone());
                    if let Some(first) = known.get(&known_key) {
                        *fate = Fate::Answered(Ok(Enqueued {
                            id: row::message_id(*first),
                            duplicate: true,
                        }));
                        continue;
                    }
                    known.insert(known_key, row::uuid(record.id));
                }
                if let (Some(contact), Some(max)) = (&record.contact, limit) {
                    let place = pending
                        .entry((record.endpoint.clone(), contact.clone()))
                        .or_default();
                    if *place >= *max {
                        *fate = Fate::Answered(Err(StoreError::ContactFull {
                            endpoint: record.endpoint.clone(),
                            contact: contact.clone(),
                            max: *max,
                        }));
                        continue;
                    }
                    *place += 1;
                }
            }
        }
        let rows = rows_to_insert(fates)?;
        let inserted = self.insert(&rows, &mut *tx).await?;
        if inserted.len() < rows.len() {
            // Another node inserted one of these keys since we looked: those messages are its duplicates.
            let lost = self.settle_raced_keys(fates, &inserted, &mut tx).await?;
            if lost > 0 {
                tracing::debug!(lost, "idempotency keys raced with another node");
            }
        }
        tx.commit().await.map_err(|e| self.failed_with(e))?;
        self.count_inserted(&rows, &inserted);
        Ok(())
    }

    /// Inserts the rows (skipping any whose idempotency key exists), notifies their endpoints; answers the
    /// ids inserted.
    async fn insert<'e>(
        &self,
        rows: &Rows,
        executor: impl sqlx::PgExecutor<'e>,
    ) -> Result<Vec<Uuid>, StoreError> {
        if rows.len() == 0 {
            return Ok(Vec::new());
        }
        let notices = notices(self.inner.node, distinct(rows.endpoints.iter().cloned()));
        let ids: Vec<Option<Uuid>> = sqlx::query_scalar(
            "WITH inserted AS (
                 INSERT INTO hookd_messages
                     (id, endpoint, kind, stage, due_at, contact, idempotency_key, record, payload)
                 SELECT id, endpoint, kind, 'queued', due_at, contact, key, record, payload
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
                             $7::text[], $8::text[]) AS u(id, endpoint, kind, due_at, contact, key, record, payload)
                 ON CONFLICT (endpoint, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                 RETURNING id),
             woken AS (SELECT pg_notify('hookd_work', notice) FROM UNNEST($9::text[]) AS notice)
             SELECT id FROM inserted
             UNION ALL SELECT NULL FROM woken",
        )
        .bind(&rows.ids)
        .bind(&rows.endpoints)
        .bind(&rows.kinds)
        .bind(&rows.due_ats)
        .bind(&rows.contacts)
        .bind(&rows.keys)
        .bind(&rows.records)
        .bind(&rows.payloads)
        .bind(&notices)
        .fetch_all(executor)
        .await
        .map_err(|e| self.failed_with(e))?;
        Ok(ids.into_iter().flatten().collect())
    }

    async fn known_keys(
        &self,
        keyed: &[(String, String)],
        tx: &mut sqlx::PgConnection,
    ) -> Result<Vec<((String, String), Uuid)>, StoreError> {
        let (endpoints, keys): (Vec<String>, Vec<String>) = keyed.iter().cloned().unzip();
        let rows: Vec<(String, String, Uuid)> = sqlx::query_as(
            "SELECT m.endpoint, m.idempotency_key, m.id FROM hookd_messages m
             JOIN UNNEST($1::text[], $2::text[]) AS u(e, k)
               ON m.endpoint = u.e AND m.idempotency_key = u.k",
        )
        .bind(&endpoints)
        .bind(&keys)
        .fetch_all(tx)
        .await
        .map_err(|e| self.failed_with(e))?;
        Ok(rows.into_iter().map(|(e, k, id)| ((e, k), id)).collect())
    }

    /// Answers the messages whose insert was skipped (their key was inserted by another node meanwhile) as
    /// duplicates of the stored message. Returns how many.
    async fn settle_raced_keys(
        &self,
        fates: &mut [Vec<Fate>],
        inserted: &[Uuid],
        tx: &mut sqlx::PgConnection,
    ) -> Result<usize, StoreError> {
        let inserted: std::collections::HashSet<Uuid> = inserted.iter().copied().collect();
        let raced: Vec<(String, String)> = fates
            .iter()
            .flatten()
            .filter_map(|fate| match fate {
                Fate::Insert(r) if !inserted.contains(&row::uuid(r.id)) => {
                    r.idempotency_key.clone().map(|k| (r.endpoint.clone(), k))
                }
                _ => None,
            })
            .collect();
        let stored: HashMap<(String, String), Uuid> =
            self.known_keys(&raced, tx).await?.into_iter().collect();
        let mut settled = 0;
        for fate in fates.iter_mut().flatten() {
            let Fate::Insert(record) = fate else { continue };
            if inserted.contains(&row::uuid(record.id)) {
                continue;
            }
            let key = (
                record.endpoint.clone(),
                record.idempotency_key.clone().unwrap_or_default(),
            );
            let Some(first) = stored.get(&key) else {
                return Err(StoreError::Corrupt(format!(
                    "message {} was neither inserted nor found by its idempotency key",
                    record.id
                )));
            };
            *fate = Fate::Answered(Ok(Enqueued {
                id: row::message_id(*first),
                duplicate: true,
            }));
            settled += 1;
        }
        Ok(settled)
    }

    fn count_inserted(&self, rows: &Rows, inserted: &[Uuid]) {
        let inserted: std::collections::HashSet<&Uuid> = inserted.iter().collect();
        let mut per_endpoint: HashMap<&str, u64> = HashMap::new();
        for (id, endpoint) in rows.ids.iter().zip(&rows.endpoints) {
            if inserted.contains(id) {
                *per_endpoint.entry(endpoint).or_default() += 1;
            }
        }
        for (endpoint, n) in per_endpoint {
            self.inner
                .tally
                .moved(endpoint, None, Some(Stage::Queued), n);
        }
    }
}

fn new_record(new: &NewMessage, now: Millis) -> MessageRecord {
    let mut record = MessageRecord::new_queued(
        MessageId::new(),
        &new.endpoint,
        &new.kind,
        &new.payload,
        now,
    );
    record.idempotency_key = new.idempotency_key.clone();
    record.contact = new.contact.as_ref().map(|c| c.contact.clone());
    record
}

fn rows_to_insert(fates: &[Vec<Fate>]) -> Result<Rows, StoreError> {
    let mut rows = Rows::default();
    for fate in fates.iter().flatten() {
        if let Fate::Insert(record) = fate {
            rows.push(record)?;
        }
    }
    Ok(rows)
}

fn distinct_pairs(pairs: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let set: std::collections::BTreeSet<(String, String)> = pairs.collect();
    set.into_iter().collect()
}

/// The `hookd_work` notifications for these endpoints: `node-id endpoint,endpoint,...`, each under the
/// payload limit.
pub fn notices(node: Uuid, endpoints: Vec<String>) -> Vec<String> {
    let mut notices = Vec::new();
    let mut current = format!("{node} ");
    let start = current.len();
    for endpoint in endpoints {
        if current.len() + endpoint.len() + 1 > NOTIFY_MAX && current.len() > start {
            notices.push(std::mem::replace(&mut current, format!("{node} ")));
        }
        if current.len() > start {
            current.push(',');
        }
        current.push_str(&endpoint);
    }
    if current.len() > start {
        notices.push(current);
    }
    notices
}

/// A store error for each of several waiters (the error type is not `Clone`).
pub fn clone_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(reason) => StoreError::Unavailable(reason.clone()),
        other => StoreError::Combined(other.to_string()),
    }
}
