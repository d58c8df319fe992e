//! The durable queue: the only module that names sled.
//!
//! Everything else speaks in domain verbs: [`Store::enqueue`], [`Store::commit`], [`Store::lease_due`],
//! [`Store::record_attempt`], [`Store::replay`], [`Store::purge`]. Every state change that touches more than
//! one tree runs in one sled transaction, so the indexes on disk (`dead`, `idem`, `contact`) always agree
//! with the message records; a transaction spans only the message trees its change touches (`tx.rs`).
//! Writes are what a message costs, so the hot path makes few: a small payload lives in its record, a large
//! one is written once into its own tree (`record.rs`), a message's latest attempt lives in its record, and
//! so an enqueue is one write and a delivery at the first attempt one more (the record rewritten; a later
//! attempt also moves the one before it to the `attempt` tree). Two things live in memory only, laid over the records: leases (`leases.rs`) and
//! the due index (`due.rs`), which the store rebuilds from the records when it opens and changes after each
//! committed transaction. Key layouts are in [`keys`]; the durability point is in [`commit`].
//!
//! This file holds the [`Store`] and its trees, and the small types its verbs take and give. The verbs live
//! by concept: `open.rs` (the data dir's marker, format upgrades, the rebuild at open), `enqueue.rs`,
//! `lease.rs` (leasing and releasing), `outcome.rs` (attempt outcomes), `dead.rs` (dead letters, purge and
//! retention pruning), `read.rs` (reads and counts), `commit.rs` (durability), `endpoints.rs` (endpoint and
//! token records); the errors are in `error.rs`.

mod combine;
mod commit;
mod dead;
mod due;
mod endpoints;
mod enqueue;
mod error;
pub mod keys;
mod lease;
mod leases;
mod listing;
mod open;
mod ops;
mod outcome;
mod quarantine;
mod read;
mod record;
mod retire;
mod tally;
mod tx;

use std::collections::BTreeMap;
use std::sync::Arc;

use sled::Tree;

use combine::Combiner;
pub use commit::CommitError;
use commit::GroupCommit;
use due::DueIndex;
pub use endpoints::{EndpointState, TokenRecord};
pub use enqueue::first_answer;
pub use error::StoreError;
use leases::Leases;
pub use listing::{MessagePage, MessageQuery, Nudged, SCAN_BUDGET, Wanted};
pub use open::MARKER_FILE;
pub use ops::AttemptOutcome;
use ops::{AttemptOp, EnqueueOp};
pub use quarantine::CORRUPT_KIND;
pub use retire::Retire;
use tally::Tally;

use crate::model::{MessageId, MessageRecord, Millis};

/// A message as handed to [`Store::enqueue`].
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub endpoint: String,
    pub kind: String,
    pub payload: String,
    pub idempotency_key: Option<String>,
    /// The contact and its cap of undelivered messages, on formats that have contacts.
    pub contact: Option<ContactLimit>,
}

/// At most `max_pending` undelivered messages for `contact` on the message's endpoint.
#[derive(Debug, Clone)]
pub struct ContactLimit {
    pub contact: String,
    pub max_pending: usize,
}

/// The answer to an enqueue (not yet durable: call [`Store::commit`] before acknowledging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: MessageId,
    /// True when the idempotency key was already known: `id` is the first message's, nothing was queued.
    pub duplicate: bool,
}

/// What a lane found when it asked for due work.
#[derive(Debug)]
pub enum Lease {
    /// These messages are now in flight (leased) for the caller.
    Taken(Vec<MessageRecord>),
    /// Nothing due yet; the earliest message is due at this time.
    NextDueAt(Millis),
    /// The endpoint has nothing queued.
    Idle,
}

/// Which dead letters a replay or purge applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Ids(Vec<MessageId>),
    All { endpoint: Option<String> },
}

/// One page of the dead-letter queue.
#[derive(Debug)]
pub struct DeadPage {
    pub items: Vec<MessageRecord>,
    /// The cursor for the next page, when there is one.
    pub next: Option<MessageId>,
}

/// Message counts by endpoint and stage.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub by_endpoint: BTreeMap<String, StageCounts>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageCounts {
    pub queued: u64,
    pub in_flight: u64,
    pub delivered: u64,
    pub dead: u64,
}

/// The queue. Cheap to clone; all clones share one sled database and one group-commit task.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    trees: Trees,
    committer: GroupCommit,
    /// Concurrent enqueues share transactions (`combine.rs`). It has one leader at a time, which also
    /// serialises enqueues: a contact's count and the insert of its message have no other enqueue between them.
    enqueues: Arc<Combiner<EnqueueOp, Vec<Result<Enqueued, StoreError>>>>,
    /// Concurrent attempt outcomes share transactions.
    attempts: Arc<Combiner<AttemptOp, ()>>,
    /// Live counts per endpoint and stage, moved by every committed change.
    tally: Arc<Tally>,
    /// The messages this process has leased (in memory only).
    leases: Arc<Leases>,
    /// Each endpoint's queued messages by due time (in memory only, derived from the records).
    due: Arc<DueIndex>,
}

#[derive(Clone)]
struct Trees {
    msg: Tree,
    /// Payloads by message id, written once at enqueue.
    payload: Tree,
    /// Leases persisted by the first store format; read only to release them.
    lease: Tree,
    attempt: Tree,
    dead: Tree,
    idem: Tree,
    contact: Tree,
    /// Per-endpoint state that outlives a run (verification); outside the message transactions.
    endpoint: Tree,
    /// API access tokens by name, stored hashed.
    token: Tree,
}

/// How many messages a replay, purge or prune changes per transaction.
const CHUNK: usize = 256;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(format!("cannot encode record: {e}")))
}

fn decode<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("cannot decode record: {e}")))
}

#[cfg(test)]
mod tests;
