//! Enqueues: concurrent callers' messages gathered into one statement (a group commit).
//!
//! A batcher task takes every enqueue waiting when it is free and writes them together: one `INSERT ...
//! SELECT FROM UNNEST` that also sends one `NOTIFY` naming the batch's endpoints (so other nodes wake those
//! lanes). Messages with an idempotency key or a per-contact cap need more than one statement: their batch
//! runs in a transaction that first finds known keys and takes an advisory lock per contact, so the cap is
//! exact under concurrent enqueues from several nodes. Either way the answer comes after COMMIT.

mod insert_and_notify;
mod keys_and_contact_caps;

use std::collections::HashMap;
use std::sync::Weak;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use insert_and_notify::notices;

use super::row::Rows;
use super::{Inner, PgStore};
use crate::model::{MessageId, MessageRecord, Millis, Stage};
use crate::store::{Enqueued, NewMessage, StoreError};

/// At most this many messages go into one statement.
const BATCH_MAX: usize = 2_000;

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

/// A store error for each of several waiters (the error type is not `Clone`).
pub fn clone_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(reason) => StoreError::Unavailable(reason.clone()),
        other => StoreError::Combined(other.to_string()),
    }
}
