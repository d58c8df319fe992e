//! The sled backend: the only module that names sled.
//!
//! [`SledStore`] implements the store's verbs ([`Store`](super::Store) delegates to it) on one local sled
//! database in the data dir. Every state change that touches more than one tree runs in one sled
//! transaction, so the indexes on disk (`dead`, `idem`, `contact`) always agree with the message records; a
//! transaction spans only the message trees its change touches (`tx.rs`). Writes are what a message costs,
//! so the hot path makes few: a small payload lives in its record, a large one is written once into its own
//! tree (`record.rs`), a message's latest attempt lives in its record, and so an enqueue is one write and a
//! delivery at the first attempt one more (the record rewritten; a later attempt also moves the one before it
//! to the `attempt` tree). Two things live in memory only, laid over the records: leases (`leases.rs`) and
//! the due index (`due/mod.rs`), which the store rebuilds from the records when it opens and changes after each
//! committed transaction. Key layouts are in [`keys`]; the durability point is in [`commit`].
//!
//! The verbs here are synchronous (each a few sled calls, fast enough to make from async code) except those
//! that wait for a group commit or a combiner's leader. This file holds the [`SledStore`] and its trees. The
//! verbs live by concept: `open.rs` (the data dir's marker, format upgrades, the rebuild at open),
//! `enqueue.rs`, `lease.rs` (leasing and releasing), `outcome.rs` (attempt outcomes), `dead.rs` (dead
//! letters, purge and retention pruning), `read.rs` (reads and counts), `retire.rs` (a deleted endpoint's
//! messages), `commit.rs` (durability), `endpoints.rs` (endpoint and token records). The domain types and
//! [`StoreError`] are the store's, not sled's (`store/types.rs`, `store/error.rs`).

mod combine;
mod commit;
mod dead;
mod due;
mod endpoints;
mod enqueue;
mod keys;
mod large_batch;
mod lease;
mod leases;
pub(crate) mod listing;
mod open;
mod ops;
mod outcome;
mod quarantine;
mod read;
mod record;
mod retire;
mod tally;
mod tx;

use std::sync::Arc;

use sled::Tree;

use super::{
    AttemptOutcome, CORRUPT_KIND, CommitError, ContactLimit, Counts, DeadPage, EndpointState,
    Enqueued, Lease, MARKER_FILE, NewMessage, Remaining, Retire, Selection, StageCounts,
    StoreError, TokenRecord, first_answer,
};
use combine::Combiner;
use commit::GroupCommit;
use due::DueIndex;
use leases::Leases;
use ops::{AttemptOp, EnqueueOp};
use tally::Tally;

/// The sled backend of the store. Cheap to clone; all clones share one sled database and one group-commit
/// task.
#[derive(Clone)]
pub struct SledStore {
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

/// A failed sled call inside the store (`?`): kept whole as the source of [`StoreError::Backend`].
impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> StoreError {
        StoreError::Backend(Box::new(error))
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
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
