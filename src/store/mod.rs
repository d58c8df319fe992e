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

mod combine;
mod commit;
mod due;
mod endpoints;
pub mod keys;
mod leases;
mod ops;
mod record;
mod retire;
mod tally;
mod tx;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sled::transaction::TransactionError;
use sled::{Transactional, Tree};

use combine::{BatchResult, Combiner};
pub use commit::CommitError;
use commit::GroupCommit;
use due::{Due, DueIndex};
pub use endpoints::{EndpointState, TokenRecord};
use leases::Leases;
pub use ops::AttemptOutcome;
use ops::{AttemptOp, EnqueueOp, Moved, PlannedEnqueue};
use record::{PayloadAt, RecordFacts};
pub use retire::Retire;
use tally::Tally;
use tx::{Abort, Name, Set, Tx, TxResult, abort};

use crate::model::{AttemptRecord, MessageId, MessageRecord, Millis, Stage};
use crate::retry::Decision;

/// Store failures. A receiver's answer is never one of these: only the disk or the data can fail here.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data dir {0} is in use by another hookd process (sled's lock is held)")]
    Locked(PathBuf),
    #[error(
        "{0} is not a hookd data dir: it holds other files and no `{MARKER_FILE}`; point data_dir at an empty or new directory"
    )]
    Foreign(PathBuf),
    #[error("{path}: {reason}")]
    Marker { path: PathBuf, reason: String },
    #[error("cannot open the store in {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("store I/O failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot make the write durable: {0}")]
    Commit(#[from] CommitError),
    #[error("a store write shared with other requests failed: {0}")]
    Combined(String),
    #[error("a token named `{0}` exists already")]
    TokenExists(String),
    #[error(
        "contact `{contact}` already has {max} undelivered messages on endpoint `{endpoint}` (max_pending_per_contact)"
    )]
    ContactFull {
        endpoint: String,
        contact: String,
        max: usize,
    },
}

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

/// One enqueue operation's answer: each of its messages' own answer, or the failure of the whole operation.
type OpAnswer = Result<Vec<Result<Enqueued, StoreError>>, StoreError>;

/// The answer to an enqueue (not yet durable: call [`Store::commit`] before acknowledging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: MessageId,
    /// True when the idempotency key was already known: `id` is the first message's, nothing was queued.
    pub duplicate: bool,
}

/// What [`Store::swap_standalone`] did with a run of outcomes.
struct Swaps<O> {
    /// Swapped in, with what each moved.
    swapped: Vec<(O, Moved)>,
    /// Not written: they need a transaction, their record changed, or a write failed before them.
    rest: Vec<O>,
    /// The write that failed, if one did.
    failed: Result<(), StoreError>,
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

impl Tx<'_> {
    /// The record, with its payload when the record holds it, and where that payload is.
    fn get_record(&self, id: MessageId) -> TxResult<Option<(MessageRecord, PayloadAt)>> {
        match self.msg()?.get(id.as_bytes())? {
            None => Ok(None),
            Some(bytes) => record::decode(&bytes).map(Some).map_err(abort),
        }
    }

    /// Writes the record, whose payload is `at` (as read, or [`PayloadAt::Record`] for a new message). A
    /// payload the record carries that is too large to stay in it (a new message's, or a first-format
    /// record's) moves to the `payload` tree.
    fn put_record(&self, record: &MessageRecord, at: PayloadAt) -> TxResult<()> {
        let at = match at {
            PayloadAt::Record if PayloadAt::for_len(record.payload.len()) == PayloadAt::Tree => {
                self.payload()?
                    .insert(record.id.as_bytes(), record.payload.as_bytes())?;
                PayloadAt::Tree
            }
            at => at,
        };
        let bytes = record::encode(record, at).map_err(abort)?;
        self.msg()?.insert(record.id.as_bytes(), bytes)?;
        Ok(())
    }

    /// Writes the record as queued, due at `due_at` (and its contact entry, when it has a contact). The
    /// caller puts it in the due index once the transaction has committed.
    fn queue(&self, record: &mut MessageRecord, at: PayloadAt, due_at: Millis) -> TxResult<()> {
        if let Some(contact) = &record.contact {
            self.contact()?
                .insert(keys::contact(&record.endpoint, contact, record.id), &[])?;
        }
        record.stage = Stage::Queued;
        record.next_attempt_at = due_at;
        self.put_record(record, at)
    }
}

/// How many messages a replay, purge or prune changes per transaction.
const CHUNK: usize = 256;

/// The file that marks a directory as a hookd data dir, and the on-disk format it holds.
pub const MARKER_FILE: &str = "hookd-data";
/// Format 5: a message's latest attempt in its record, earlier ones in the `attempt` tree; small payloads in
/// their records, large ones in their own tree; no index of delivery times; neither leases nor the due index
/// on disk.
const MARKER_TEXT: &str = "hookd data dir, format 5\n";
/// Format 4 kept every attempt in the `attempt` tree; its records are read as they are (a record without a
/// latest attempt has all of its attempts in the tree).
const MARKER_TEXT_V4: &str = "hookd data dir, format 4\n";
/// Format 3 kept every payload in the `payload` tree and delivery times in a `done` tree; its records are read
/// as they are, and the first open as format 5 drops the `done` tree.
const MARKER_TEXT_V3: &str = "hookd data dir, format 3\n";
/// Format 2 also kept the due index in a `due` tree; the first open as format 5 drops that tree too.
const MARKER_TEXT_V2: &str = "hookd data dir, format 2\n";
/// Format 1 (inline payloads in the JSON, persisted leases) is read and moved to format 5 as records are
/// rewritten.
const MARKER_TEXT_V1: &str = "hookd data dir, format 1\n";

/// Refuses a directory that holds someone else's files, or a format this build does not know, before sled
/// writes anything into it.
fn check_marker(dir: &Path) -> Result<(), StoreError> {
    let unreadable = |e: std::io::Error| StoreError::Marker {
        path: dir.to_owned(),
        reason: format!("cannot read the data dir: {e}"),
    };
    match std::fs::read_to_string(dir.join(MARKER_FILE)) {
        Ok(text)
            if [
                MARKER_TEXT,
                MARKER_TEXT_V4,
                MARKER_TEXT_V3,
                MARKER_TEXT_V2,
                MARKER_TEXT_V1,
            ]
            .contains(&text.as_str()) =>
        {
            return Ok(());
        }
        Ok(text) => {
            return Err(StoreError::Marker {
                path: dir.join(MARKER_FILE),
                reason: format!(
                    "holds `{}`, not a format this hookd reads (`{}`)",
                    text.trim(),
                    MARKER_TEXT.trim()
                ),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(unreadable(e)),
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        names.push(entry.map_err(unreadable)?.file_name());
    }
    let own = |name: &std::ffi::OsStr| {
        // sled's files, and the socket hookd puts there by default.
        matches!(
            name.to_str(),
            Some("conf" | "db" | "blobs" | "snap" | "hookd.sock")
        ) || name.to_string_lossy().starts_with("snap.")
    };
    // A data dir from before the marker existed has sled's `conf` and `db`.
    let sled_dir = names.iter().any(|n| n == "conf") && names.iter().any(|n| n == "db");
    if names.iter().all(|n| own(n)) && (names.is_empty() || sled_dir) {
        return Ok(());
    }
    Err(StoreError::Foreign(dir.to_owned()))
}

/// Marks the dir as this format (an older format's dir becomes format 5: an older hookd must not read it now,
/// for it would find records it cannot decode or whose latest attempt it would not see, and no due index or
/// `done` tree).
fn write_marker(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(MARKER_FILE);
    if std::fs::read_to_string(&path).is_ok_and(|text| text == MARKER_TEXT) {
        return Ok(());
    }
    let marker_error = |e: std::io::Error| StoreError::Marker {
        path: path.clone(),
        reason: format!("cannot write: {e}"),
    };
    // Written beside and renamed, so a crash leaves the old marker or the new one, never half of one.
    let staged = dir.join(format!("{MARKER_FILE}.new"));
    std::fs::write(&staged, MARKER_TEXT).map_err(marker_error)?;
    std::fs::rename(&staged, &path).map_err(marker_error)
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` and starts its group-commit task; must run inside tokio.
    /// A second process on the same dir gets [`StoreError::Locked`].
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            path: dir.to_owned(),
            source: e.into(),
        })?;
        check_marker(dir)?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|source| match &source {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked(dir.to_owned())
                }
                _ => StoreError::Open {
                    path: dir.to_owned(),
                    source,
                },
            })?;
        write_marker(dir)?;
        let tree = |name: &str| db.open_tree(name);
        let trees = Trees {
            msg: tree("msg")?,
            payload: tree("payload")?,
            lease: tree("lease")?,
            attempt: tree("attempt")?,
            dead: tree("dead")?,
            idem: tree("idem")?,
            contact: tree("contact")?,
            endpoint: tree("endpoint")?,
            token: tree("token")?,
        };
        let committer = GroupCommit::start(db.clone(), dir.to_owned());
        let mut store = Store {
            db,
            trees,
            committer,
            enqueues: Arc::new(Combiner::new(
                |op: &EnqueueOp| op.messages.len(),
                combine::MAX_BATCH_MESSAGES,
            )),
            attempts: Arc::new(Combiner::new(
                |op: &AttemptOp| op.outcomes.len(),
                combine::MAX_BATCH_MESSAGES,
            )),
            tally: Arc::new(Tally::default()),
            leases: Arc::new(Leases::default()),
            due: Arc::new(DueIndex::default()),
        };
        let due = Arc::clone(&store.due);
        let counts = store.scan_records(|endpoint, due_at, id| due.insert(endpoint, due_at, id))?;
        store.tally = Arc::new(Tally::new(counts));
        // A format-2 dir's due index on disk: rebuilt above from the records, and never read again.
        store.db.drop_tree("due")?;
        // A format-3 dir's index of delivery times: pruning reads the records instead.
        store.db.drop_tree("done")?;
        Ok(store)
    }

    /// Runs `f` in one sled transaction over the message trees in `set` (and `msg`, which every message
    /// transaction reads). When `f` asks for a tree outside the set, the run is aborted (nothing written) and
    /// `f` runs again with that tree added.
    fn transaction<T>(
        &self,
        set: Set,
        f: impl Fn(&Tx<'_>) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let t = &self.trees;
        let tree = |name: Name| match name {
            Name::Msg => &t.msg,
            Name::Payload => &t.payload,
            Name::Lease => &t.lease,
            Name::Attempt => &t.attempt,
            Name::Dead => &t.dead,
            Name::Idem => &t.idem,
            Name::Contact => &t.contact,
        };
        let mut set = set.with(Name::Msg);
        loop {
            let mut trees = [&t.msg; Name::ALL.len()];
            let mut len = 0;
            for name in Name::ALL.into_iter().filter(|name| set.has(*name)) {
                trees[len] = tree(name);
                len += 1;
            }
            let result = trees[..len].transaction(|view| f(&Tx::new(set, view)));
            match result {
                Ok(value) => return Ok(value),
                Err(TransactionError::Abort(Abort::Store(e))) => return Err(e),
                // Never a tree already in the set, so this ends after at most seven more runs.
                Err(TransactionError::Abort(Abort::Missing(name))) => set = set.with(name),
                Err(TransactionError::Storage(e)) => return Err(StoreError::Sled(e)),
            }
        }
    }

    /// Records a new message as queued and due now, unless its idempotency key is known on that endpoint.
    /// The write is not yet durable: acknowledge only after [`Store::commit`].
    pub fn enqueue(&self, new: &NewMessage, now: Millis) -> Result<Enqueued, StoreError> {
        first_answer(self.enqueue_many(vec![new.clone()], now)?)
    }

    /// Enqueues several messages, each as [`Store::enqueue`] would, all or none of them, batched with other
    /// callers' enqueues (`combine.rs`). Answers each message in order: a message over its contact's cap gets
    /// [`StoreError::ContactFull`] and the others are queued; the outer error is a failure of the whole write.
    pub fn enqueue_many(
        &self,
        messages: Vec<NewMessage>,
        now: Millis,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        self.enqueues
            .run(EnqueueOp { messages, now }, |ops| self.apply_enqueues(ops))
    }

    /// [`Store::enqueue_many`] for async callers: the caller awaits its answer while a leader writes
    /// (`combine.rs`), so the enqueues of concurrent requests share transactions.
    pub async fn enqueue_many_async(
        &self,
        messages: Vec<NewMessage>,
        now: Millis,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        let store = self.clone();
        self.enqueues
            .run_async(EnqueueOp { messages, now }, move |ops| {
                store.apply_enqueues(ops)
            })
            .await
    }

    /// A batch of enqueue operations (run by the combiner's leader). Each operation is written whole or not
    /// at all. An operation of one message whose record is all it writes (no idempotency key, no contact, a
    /// small payload: [`PlannedEnqueue::record_alone`]) is compare-and-swapped in from nothing: a fresh key
    /// needs no transaction. That matters beyond the writes saved: a sled 0.34 transaction holds sled's
    /// global lock exclusively while it applies, so every lease and outcome elsewhere waits for it
    /// (docs/PERFORMANCE.md, change 17). The other operations share one transaction.
    fn apply_enqueues(&self, ops: &[EnqueueOp]) -> BatchResult<Vec<Result<Enqueued, StoreError>>> {
        let planned: Vec<Vec<PlannedEnqueue<'_>>> = ops
            .iter()
            .map(|op| {
                op.messages
                    .iter()
                    .map(|new| PlannedEnqueue::of(new, op.now))
                    .collect()
            })
            .collect();
        let mut answers: Vec<Option<OpAnswer>> = planned.iter().map(|_| None).collect();
        let mut transacted = Vec::new();
        for (i, plans) in planned.iter().enumerate() {
            let alone = match plans.as_slice() {
                [plan] => plan.record_alone().transpose().map(|record| (plan, record)),
                _ => None,
            };
            let Some((plan, record)) = alone else {
                transacted.push(i);
                continue;
            };
            let enqueued = plan.enqueued();
            answers[i] = Some(
                record
                    .and_then(|bytes| self.insert_new(enqueued.id, bytes))
                    .map(|()| vec![Ok(enqueued)]),
            );
        }
        if !transacted.is_empty() {
            match self.transact_enqueues(ops, &planned, &transacted) {
                Ok(results) => {
                    for (&i, result) in transacted.iter().zip(results) {
                        answers[i] = Some(Ok(result));
                    }
                }
                Err(error) if transacted.len() == ops.len() => return Err(error),
                Err(error) => {
                    let shared = error.to_string();
                    for &i in &transacted {
                        answers[i] = Some(Err(StoreError::Combined(shared.clone())));
                    }
                }
            }
        }
        let answers: Vec<_> = answers
            .into_iter()
            .map(|answer| {
                answer.unwrap_or_else(|| {
                    Err(StoreError::Corrupt(
                        "an enqueue was neither written nor refused".into(),
                    ))
                })
            })
            .collect();
        for ((op, plans), answer) in ops.iter().zip(&planned).zip(&answers) {
            let Ok(results) = answer else { continue };
            for (plan, result) in plans.iter().zip(results) {
                if let Ok(Enqueued {
                    id,
                    duplicate: false,
                }) = result
                {
                    self.due.insert(plan.endpoint(), op.now, *id);
                    self.tally.moved(plan.endpoint(), None, Some(Stage::Queued));
                }
            }
        }
        Ok(answers)
    }

    /// Inserts a new message's record under its fresh key. The swap from nothing fails only if the key is
    /// taken, which would be a bug.
    fn insert_new(&self, id: MessageId, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.trees
            .msg
            .compare_and_swap(id.as_bytes(), None as Option<&[u8]>, Some(bytes))?
            .map_err(|_| StoreError::Corrupt(format!("a new message id {id} is already taken")))
    }

    /// The enqueue operations at `which` in one transaction; answers each one's messages, in order.
    fn transact_enqueues(
        &self,
        ops: &[EnqueueOp],
        planned: &[Vec<PlannedEnqueue<'_>>],
        which: &[usize],
    ) -> Result<Vec<Vec<Result<Enqueued, StoreError>>>, StoreError> {
        let mut trees = Set::of(&[Name::Msg]);
        // Each capped contact's pending messages, counted once; the transaction adds the batch's own.
        let mut pending_before: HashMap<&[u8], usize> = HashMap::new();
        for plan in which.iter().flat_map(|&i| &planned[i]) {
            if PayloadAt::for_len(plan.payload_len()) == PayloadAt::Tree {
                trees = trees.with(Name::Payload);
            }
            if plan.idem_key.is_some() {
                trees = trees.with(Name::Idem);
            }
            if let Some((prefix, limit)) = &plan.contact {
                trees = trees.with(Name::Contact);
                if !pending_before.contains_key(prefix.as_slice()) {
                    let counted = self
                        .trees
                        .contact
                        .scan_prefix(prefix)
                        .keys()
                        .take(limit.max_pending)
                        .count();
                    pending_before.insert(prefix.as_slice(), counted);
                }
            }
        }
        self.transaction(trees, |tx| {
            let mut added: HashMap<&[u8], usize> = HashMap::new();
            let mut answers = Vec::with_capacity(which.len());
            for &i in which {
                let mut results = Vec::with_capacity(planned[i].len());
                for plan in &planned[i] {
                    results.push(plan.apply(tx, ops[i].now, &pending_before, &mut added)?);
                }
                answers.push(results);
            }
            Ok(answers)
        })
    }

    /// Waits until every write made before the call is durable on disk (group commit).
    pub async fn commit(&self) -> Result<(), StoreError> {
        Ok(self.committer.wait().await?)
    }

    /// The number of group commits that have succeeded since the store opened, changing with each one. An
    /// attempt's outcome asks for one without waiting for it ([`Store::record_attempts`]).
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committer.commits()
    }

    /// Why the store can no longer make writes durable (a failed commit), if it cannot.
    pub fn failure(&self) -> Option<String> {
        self.committer.failure().map(|e| e.to_string())
    }

    /// Resolves when a commit fails: from then on this process can acknowledge nothing.
    pub async fn failed(&self) -> String {
        self.committer.failed().await.to_string()
    }

    /// The message's record as stored (with its payload only when the record holds it).
    fn stored_record(
        &self,
        id: MessageId,
    ) -> Result<Option<(MessageRecord, PayloadAt)>, StoreError> {
        self.trees
            .msg
            .get(id.as_bytes())?
            .map(|bytes| record::decode(&bytes))
            .transpose()
    }

    /// The message's record with its payload, `in_flight` while this process has it leased.
    pub fn get(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        let Some((record, at)) = self.stored_record(id)? else {
            return Ok(None);
        };
        let mut record = self.with_payload(record, at)?;
        if record.stage == Stage::Queued && self.leases.holds(id) {
            record.stage = Stage::InFlight;
        }
        Ok(Some(record))
    }

    /// A decoded record with its payload, read from the `payload` tree when it is kept there.
    fn with_payload(
        &self,
        mut record: MessageRecord,
        at: PayloadAt,
    ) -> Result<MessageRecord, StoreError> {
        let id = record.id;
        if at == PayloadAt::Tree {
            let payload = self.trees.payload.get(id.as_bytes())?.ok_or_else(|| {
                StoreError::Corrupt(format!("message {id} has a record but no payload"))
            })?;
            record.payload = String::from_utf8(payload.to_vec()).map_err(|_| {
                StoreError::Corrupt(format!("message {id} has a payload that is not UTF-8"))
            })?;
        }
        Ok(record)
    }

    /// Every attempt ever made for a message, oldest first (none for an unknown message).
    pub fn attempts(&self, id: MessageId) -> Result<Vec<AttemptRecord>, StoreError> {
        match self.stored_record(id)? {
            Some((record, _)) => self.attempts_of(&record),
            None => Ok(Vec::new()),
        }
    }

    /// Every attempt ever made for the message of `record` (as [`Store::get`] read it), oldest first: those
    /// in the `attempt` tree, then the latest, which the record holds.
    pub fn attempts_of(&self, record: &MessageRecord) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut attempts = self
            .trees
            .attempt
            .scan_prefix(record.id.as_bytes())
            .values()
            .map(|v| decode(&v?))
            .collect::<Result<Vec<AttemptRecord>, StoreError>>()?;
        attempts.extend(record.last_attempt.clone());
        Ok(attempts)
    }

    /// The latest attempt made for the message of `record` (as [`Store::get`] read it), if any.
    pub fn last_attempt(
        &self,
        record: &MessageRecord,
    ) -> Result<Option<AttemptRecord>, StoreError> {
        if let Some(last) = &record.last_attempt {
            return Ok(Some(last.clone()));
        }
        // A record written by store format 4 or older: its attempts are all in the tree.
        match self
            .trees
            .attempt
            .scan_prefix(record.id.as_bytes())
            .values()
            .next_back()
        {
            Some(bytes) => decode(&bytes?).map(Some),
            None => Ok(None),
        }
    }

    /// Leases up to `max` messages of `endpoint` that are due at `now`, marking them in flight until
    /// `lease_until` (`max` 0 leases nothing). Only the endpoint's own lane calls this, so it never races
    /// with itself. A lease writes nothing to disk (`leases.rs`): the messages it takes stay in the due index,
    /// and the scan steps over those already leased.
    pub fn lease_due(
        &self,
        endpoint: &str,
        now: Millis,
        max: usize,
        lease_until: Millis,
    ) -> Result<Lease, StoreError> {
        let mut taken = Vec::new();
        loop {
            let wanted = max - taken.len();
            let due = match self
                .due
                .due(endpoint, now, wanted, |id| self.leases.holds(id))
            {
                Due::Now(due) => due,
                Due::Later(due_at) if taken.is_empty() => return Ok(Lease::NextDueAt(due_at)),
                Due::Later(_) | Due::Nothing => break,
            };
            let mut dropped = false;
            for (due_at, id) in due {
                let read = match self.trees.msg.get(id.as_bytes())? {
                    Some(stored) => {
                        let (record, at) = record::decode(&stored)?;
                        Some((self.with_payload(record, at)?, (stored, at)))
                    }
                    None => None,
                };
                let Some((mut record, read)) = read.filter(|(r, _)| r.stage == Stage::Queued)
                else {
                    // Only a bug could leave such an entry; the lane must not stall on it.
                    tracing::error!(
                        message_id = %id,
                        endpoint,
                        "the due index named a message that is not queued; entry dropped"
                    );
                    self.due.remove(endpoint, due_at, id);
                    dropped = true;
                    continue;
                };
                if !self.leases.take(id, lease_until, Some(read)) {
                    continue;
                }
                record.stage = Stage::InFlight;
                self.tally
                    .moved(endpoint, Some(Stage::Queued), Some(Stage::InFlight));
                taken.push(record);
            }
            // A dropped entry took a place that a due message may fill: look again.
            if !dropped || taken.len() >= max {
                break;
            }
        }
        Ok(if taken.is_empty() {
            Lease::Idle
        } else {
            Lease::Taken(taken)
        })
    }

    /// Records an attempt on a leased message and applies the decision: delivered, queued again at the retry
    /// time, or dead. The attempt's `number` must be the record's `total_attempts + 1`.
    pub fn record_attempt(
        &self,
        id: MessageId,
        attempt: &AttemptRecord,
        decision: &Decision,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.record_attempts(vec![AttemptOutcome {
            id,
            attempt: attempt.clone(),
            decision: decision.clone(),
            now,
            leased: None,
        }])
    }

    /// Records the outcomes of one request's attempts (one per message) together, as
    /// [`Store::record_attempt`] would each, batched with other callers' outcomes (`combine.rs`).
    ///
    /// An outcome is not durable when this returns, and nobody waits for it to be: a crash before the next
    /// commit means the message is attempted again (at least once). The store asks for a commit without
    /// waiting ([`GroupCommit::request`]), which begins at most 10 ms after the one before it.
    pub fn record_attempts(&self, outcomes: Vec<AttemptOutcome>) -> Result<(), StoreError> {
        let op = AttemptOp { outcomes };
        self.attempts.run(op, |ops| self.apply_attempts(ops))
    }

    /// [`Store::record_attempts`] for async callers. An outcome that changes only its record (most of them: a
    /// first attempt delivered or retried) is compare-and-swapped right here, by the caller: one sled write
    /// that takes no lock another writer waits for. Handing it to a leader thread instead cost a thread wake-up
    /// and a reply per batch (docs/PERFORMANCE.md, change 15). The other outcomes, and any whose record changed
    /// since it was read, go to the combiner, where the outcomes of concurrent attempts share transactions
    /// (`combine.rs`). Should a swap fail, the outcomes swapped before it are kept and the error is returned;
    /// the messages not recorded stay leased until the next start, as after any failed write.
    pub async fn record_attempts_async(
        &self,
        outcomes: Vec<AttemptOutcome>,
    ) -> Result<(), StoreError> {
        let Swaps {
            swapped,
            rest,
            failed,
        } = self.swap_standalone(outcomes.into_iter().map(|mut outcome| {
            let leased = outcome.leased.take();
            (outcome, leased)
        }));
        if !swapped.is_empty() {
            // On disk within a commit, though nobody waits for it (`Store::record_attempts`).
            self.committer.request();
            self.settle(
                swapped
                    .iter()
                    .map(|(outcome, moved)| (outcome, Some(moved))),
            );
        }
        failed?;
        if rest.is_empty() {
            return Ok(());
        }
        let op = AttemptOp { outcomes: rest };
        let store = self.clone();
        self.attempts
            .run_async(op, move |ops| store.apply_attempts(ops))
            .await
    }

    /// A batch of attempt outcomes (run by the combiner's leader): those that change only their record are
    /// compare-and-swapped one by one, the others share one transaction. What was written is mirrored in the
    /// due index, the leases and the tally even when a later write fails (the batch's callers then get the
    /// error, and their messages that were not written stay leased until the next start).
    fn apply_attempts(&self, ops: &[AttemptOp]) -> BatchResult<()> {
        let mut applied = Vec::new();
        let written = self.write_outcomes(ops, &mut applied);
        // On disk within a commit, though nobody waits for it (`Store::record_attempts`).
        self.committer.request();
        self.settle(
            applied
                .iter()
                .map(|(outcome, moved)| (*outcome, moved.as_ref())),
        );
        written?;
        Ok(ops.iter().map(|_| Ok(())).collect())
    }

    /// Mirrors written outcomes in the due index, the leases and the tally (`None`: no such message).
    fn settle<'a>(
        &self,
        applied: impl IntoIterator<Item = (&'a AttemptOutcome, Option<&'a Moved>)>,
    ) {
        for (outcome, moved) in applied {
            // The index changes before the lease ends, so the lane never sees the old entry unleased.
            if let Some(moved) = moved {
                self.mirror(outcome.id, moved);
            }
            let leased = self.leases.end(outcome.id);
            if let Some(moved) = moved {
                let from = if leased { Stage::InFlight } else { moved.was };
                self.tally
                    .moved(&moved.endpoint, Some(from), Some(moved.is));
            }
        }
    }

    /// Writes the outcomes of `ops`, adding each one written to `applied` with what it moved (`None`: no such
    /// message).
    fn write_outcomes<'a>(
        &self,
        ops: &'a [AttemptOp],
        applied: &mut Vec<(&'a AttemptOutcome, Option<Moved>)>,
    ) -> Result<(), StoreError> {
        let Swaps {
            swapped,
            rest,
            failed,
        } = self.swap_standalone(
            ops.iter()
                .flat_map(|op| &op.outcomes)
                .map(|outcome| (outcome, None)),
        );
        applied.extend(
            swapped
                .into_iter()
                .map(|(outcome, moved)| (outcome, Some(moved))),
        );
        failed?;
        if rest.is_empty() {
            return Ok(());
        }
        // Only a message attempted before has an attempt to move to the `attempt` tree, and only one with a
        // contact needs the `contact` tree; the transaction adds a tree it lacks when asked for it.
        let mut trees = Set::of(&[Name::Msg]);
        for outcome in &rest {
            if outcome.attempt.number > 1 {
                trees = trees.with(Name::Attempt);
            }
            if matches!(outcome.decision, Decision::Dead { .. }) {
                trees = trees.with(Name::Dead);
            }
        }
        let moved: Vec<Option<Moved>> = self.transaction(trees, |tx| {
            rest.iter().map(|outcome| outcome.apply(tx)).collect()
        })?;
        applied.extend(rest.into_iter().zip(moved));
        Ok(())
    }

    /// Swaps in each outcome that changes only its record ([`Store::swap_outcome`]). Answers those swapped,
    /// with what they moved, and the rest: those that need a transaction or whose record changed since it was
    /// read, and, should a write fail, the outcome it failed on and every one after it, with the failure.
    fn swap_standalone<O: std::borrow::Borrow<AttemptOutcome>>(
        &self,
        outcomes: impl IntoIterator<Item = (O, Option<MessageRecord>)>,
    ) -> Swaps<O> {
        let (mut swapped, mut rest, mut failed) = (Vec::new(), Vec::new(), Ok(()));
        for (outcome, leased) in outcomes {
            if failed.is_err() || !outcome.borrow().may_stand_alone() {
                rest.push(outcome);
                continue;
            }
            match self.swap_outcome(outcome.borrow(), leased) {
                Ok(Some(moved)) => swapped.push((outcome, moved)),
                Ok(None) => rest.push(outcome),
                Err(error) => {
                    failed = Err(error);
                    rest.push(outcome);
                }
            }
        }
        Swaps {
            swapped,
            rest,
            failed,
        }
    }

    /// Records `outcome` by a compare-and-swap of its record when that is all it changes
    /// ([`AttemptOutcome::record_alone`]); a single key needs no transaction to change atomically. `None`
    /// when it needs one, or when the record changed between the read and the swap (the transaction reads
    /// it again).
    ///
    /// `leased` is the record as its lease gave it ([`AttemptOutcome::leased`]). With the bytes the lease read
    /// (`leases.rs`) it stands for the stored record, which then is neither read nor decoded again; the swap
    /// is made against those bytes, so it fails if the record changed since.
    fn swap_outcome(
        &self,
        outcome: &AttemptOutcome,
        leased: Option<MessageRecord>,
    ) -> Result<Option<Moved>, StoreError> {
        let key = outcome.id.as_bytes();
        let (stored, record, at) = match (leased, self.leases.read(outcome.id)) {
            // The lease decoded these bytes and changed nothing in the record but its stage (a payload kept
            // apart was added to it, so only an inline one qualifies).
            (Some(mut record), Some((stored, PayloadAt::Record)))
                if record.id == outcome.id && record.stage == Stage::InFlight =>
            {
                record.stage = Stage::Queued;
                debug_assert_eq!(
                    record::decode(&stored).ok(),
                    Some((record.clone(), PayloadAt::Record)),
                    "the leased record stands for the stored one"
                );
                (stored, record, PayloadAt::Record)
            }
            _ => {
                let Some(stored) = self.trees.msg.get(key)? else {
                    return Ok(None);
                };
                let (record, at) = record::decode(&stored)?;
                (stored, record, at)
            }
        };
        let Some((record, moved)) = outcome.record_alone(record, at) else {
            return Ok(None);
        };
        let new = record::encode(&record, at)?;
        Ok(self
            .trees
            .msg
            .compare_and_swap(key, Some(&stored), Some(new))?
            .ok()
            .map(|()| moved))
    }

    /// Mirrors a committed change of a message's record in the due index.
    fn mirror(&self, id: MessageId, moved: &Moved) {
        if moved.was == Stage::Queued {
            self.due.remove(&moved.endpoint, moved.was_due_at, id);
        }
        if moved.is == Stage::Queued {
            self.due.insert(&moved.endpoint, moved.due_at, id);
        }
    }

    /// Puts a leased message back to due at `now` without counting an attempt (shutdown, restart).
    pub fn release(&self, id: MessageId, now: Millis) -> Result<(), StoreError> {
        let queue_again = |tx: &Tx<'_>, (mut record, at): (MessageRecord, PayloadAt)| {
            let (was, was_due_at) = (record.stage, record.next_attempt_at);
            tx.queue(&mut record, at, now)?;
            Ok(Moved {
                endpoint: record.endpoint,
                was,
                was_due_at,
                is: Stage::Queued,
                due_at: now,
            })
        };
        let released = if self.leases.holds(id) {
            let trees = Set::of(&[Name::Msg]);
            let released = self.transaction(trees, |tx| match tx.get_record(id)? {
                Some(stored) if stored.0.stage == Stage::Queued => {
                    queue_again(tx, stored).map(Some)
                }
                _ => Ok(None),
            })?;
            if let Some(moved) = &released {
                self.mirror(id, moved);
            }
            self.leases.end(id);
            released
        } else {
            // A lease a first-format store persisted.
            let trees = Set::of(&[Name::Msg, Name::Lease]);
            let released = self.transaction(trees, |tx| {
                if tx.lease()?.remove(id.as_bytes())?.is_none() {
                    return Ok(None);
                }
                match tx.get_record(id)? {
                    Some(stored) if stored.0.stage == Stage::InFlight => {
                        queue_again(tx, stored).map(Some)
                    }
                    _ => Ok(None),
                }
            })?;
            if let Some(moved) = &released {
                self.mirror(id, moved);
            }
            released
        };
        if let Some(moved) = released {
            self.tally
                .moved(&moved.endpoint, Some(Stage::InFlight), Some(Stage::Queued));
        }
        Ok(())
    }

    /// Every message leased now, and every lease a first-format store left on disk, goes back to due at `now`.
    /// The daemon calls it at start (a previous run's leases: only first-format ones are on disk) and after
    /// its lanes stopped (attempts aborted at the end of the grace period). Returns how many.
    pub fn release_all_leases(&self, now: Millis) -> Result<usize, StoreError> {
        let mut ids = self.leases.ids();
        for key in self.trees.lease.iter().keys() {
            let key = key?;
            ids.push(
                MessageId::from_slice(&key)
                    .ok_or_else(|| StoreError::Corrupt("malformed lease key".into()))?,
            );
        }
        for id in &ids {
            self.release(*id, now)?;
        }
        Ok(ids.len())
    }

    /// A page of dead letters in enqueue order (ids are time-ordered), optionally of one endpoint, starting after `after`.
    pub fn list_dead(
        &self,
        endpoint: Option<&str>,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<DeadPage, StoreError> {
        let start = after.map(|id| id.as_bytes().to_vec()).unwrap_or_default();
        let mut items = Vec::new();
        let mut next = None;
        for key in self.trees.dead.range(start..).keys() {
            let key = key?;
            let id = MessageId::from_slice(&key)
                .ok_or_else(|| StoreError::Corrupt("malformed dead key".into()))?;
            if Some(id) == after {
                continue;
            }
            let Some(record) = self.get(id)? else {
                continue;
            };
            if endpoint.is_some_and(|e| e != record.endpoint) {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|r: &MessageRecord| r.id);
                break;
            }
            items.push(record);
        }
        Ok(DeadPage { items, next })
    }

    fn select_dead(&self, selection: &Selection) -> Result<Vec<MessageId>, StoreError> {
        match selection {
            Selection::Ids(ids) => Ok(ids.clone()),
            Selection::All { endpoint } => {
                let mut ids = Vec::new();
                let mut after = None;
                loop {
                    let page = self.list_dead(endpoint.as_deref(), after, 1_000)?;
                    ids.extend(page.items.iter().map(|r| r.id));
                    match page.next {
                        Some(next) => after = Some(next),
                        None => return Ok(ids),
                    }
                }
            }
        }
    }

    /// Moves dead letters back to the queue, due now, with a fresh attempt count and age (history kept).
    /// Returns the replayed messages' endpoints (so their lanes can be woken); ids not dead are skipped.
    /// Up to [`CHUNK`] messages share a transaction.
    pub fn replay(&self, selection: &Selection, now: Millis) -> Result<Vec<String>, StoreError> {
        let mut endpoints = Vec::new();
        for chunk in self.select_dead(selection)?.chunks(CHUNK) {
            let trees = Set::of(&[Name::Msg, Name::Dead]);
            let replayed = self.transaction(trees, |tx| {
                let mut replayed = Vec::with_capacity(chunk.len());
                for id in chunk {
                    if tx.dead()?.remove(id.as_bytes())?.is_none() {
                        continue;
                    }
                    let Some((mut record, at)) = tx.get_record(*id)? else {
                        continue;
                    };
                    record.cycle_attempts = 0;
                    record.cycle_started_at = now;
                    record.dead_reason = None;
                    record.dead_at = None;
                    tx.queue(&mut record, at, now)?;
                    replayed.push((record.endpoint, record.id));
                }
                Ok(replayed)
            })?;
            for (endpoint, id) in replayed {
                self.due.insert(&endpoint, now, id);
                self.tally
                    .moved(&endpoint, Some(Stage::Dead), Some(Stage::Queued));
                endpoints.push(endpoint);
            }
        }
        Ok(endpoints)
    }

    /// Deletes dead letters for good: record, payload, attempts and idempotency key. Returns how many.
    pub fn purge(&self, selection: &Selection) -> Result<usize, StoreError> {
        let mut purged = 0;
        for chunk in self.select_dead(selection)?.chunks(CHUNK) {
            purged += self.delete_if(chunk, Stage::Dead)?;
        }
        Ok(purged)
    }

    /// Deletes those of `ids` that are in `stage`, and everything about them, in one transaction. Returns how
    /// many.
    fn delete_if(&self, ids: &[MessageId], stage: Stage) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut attempt_keys = Vec::with_capacity(ids.len());
        for id in ids {
            attempt_keys.push(
                self.trees
                    .attempt
                    .scan_prefix(id.as_bytes())
                    .keys()
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        let trees = Set::of(&[
            Name::Msg,
            Name::Payload,
            Name::Dead,
            Name::Idem,
            Name::Attempt,
        ]);
        let deleted = self.transaction(trees, |tx| {
            let mut deleted = Vec::new();
            for (id, attempt_keys) in ids.iter().zip(&attempt_keys) {
                let Some((record, at)) = tx.get_record(*id)? else {
                    continue;
                };
                if record.stage != stage {
                    continue;
                }
                tx.msg()?.remove(id.as_bytes())?;
                if at == PayloadAt::Tree {
                    tx.payload()?.remove(id.as_bytes())?;
                }
                tx.dead()?.remove(id.as_bytes())?;
                if let Some(key) = &record.idempotency_key {
                    tx.idem()?
                        .remove(keys::idempotency(&record.endpoint, key))?;
                }
                let attempts = tx.attempt()?;
                for key in attempt_keys {
                    attempts.remove(key)?;
                }
                deleted.push(record.endpoint);
            }
            Ok(deleted)
        })?;
        for endpoint in &deleted {
            self.tally.moved(endpoint, Some(stage), None);
        }
        Ok(deleted.len())
    }

    /// Removes delivered messages delivered before `before` (the retention window). Returns how many.
    ///
    /// There is no index of delivery times on disk: it would cost every delivery a write. Instead the pass
    /// reads the records in id order, which is enqueue order, and stops at the first one enqueued at or after
    /// `before`: a message is delivered after it is enqueued, so none from there on can be due for pruning.
    /// (Should the clock have stepped back, a message enqueued before the cutoff may sit beyond that point; it
    /// is pruned by a later pass, never early.) What the pass reads besides the messages it prunes are the
    /// older messages still queued or dead, and those delivered late.
    pub fn prune_delivered(&self, before: Millis) -> Result<usize, StoreError> {
        #[derive(serde::Deserialize)]
        struct PruneFacts {
            stage: Stage,
            created_at: Millis,
            delivered_at: Option<Millis>,
        }
        let mut pruned = 0;
        let mut chunk = Vec::with_capacity(CHUNK);
        for entry in self.trees.msg.iter() {
            let (key, bytes) = entry?;
            let facts: PruneFacts = record::decode_as(&bytes)?;
            if facts.created_at >= before {
                break;
            }
            if facts.stage == Stage::Delivered && facts.delivered_at.is_some_and(|at| at < before) {
                chunk.push(
                    MessageId::from_slice(&key)
                        .ok_or_else(|| StoreError::Corrupt("malformed message key".into()))?,
                );
            }
            if chunk.len() == CHUNK {
                pruned += self.delete_if(&chunk, Stage::Delivered)?;
                chunk.clear();
            }
        }
        pruned += self.delete_if(&chunk, Stage::Delivered)?;
        Ok(pruned)
    }

    /// Counts per endpoint and stage (the live tally; cheap).
    pub fn counts(&self) -> Result<Counts, StoreError> {
        Ok(self.tally.snapshot())
    }

    /// Messages waiting to be delivered (queued, held or in flight), over every endpoint; cheap.
    pub fn pending(&self) -> u64 {
        self.tally.pending()
    }

    /// Counts per endpoint and stage, read from every message record and the leases (slow: reads every
    /// record). Also checks that the due index holds exactly the queued records. Tests check the live tally
    /// against it.
    pub fn recount(&self) -> Result<Counts, StoreError> {
        let mut on_disk = Vec::new();
        let counts = self.scan_records(|endpoint, due_at, id| {
            on_disk.push((endpoint.to_owned(), due_at, id));
        })?;
        let mut in_memory = self.due.entries();
        on_disk.sort_unstable();
        in_memory.sort_unstable();
        if on_disk != in_memory {
            let missing = on_disk
                .iter()
                .filter(|e| in_memory.binary_search(e).is_err());
            let stale = in_memory
                .iter()
                .filter(|e| on_disk.binary_search(e).is_err());
            return Err(StoreError::Corrupt(format!(
                "the due index disagrees with the records: {} queued records not in it, {} entries not queued",
                missing.count(),
                stale.count()
            )));
        }
        Ok(counts)
    }

    /// One pass over every message record: the counts by endpoint and stage; each queued record's endpoint,
    /// due time and id go to `queued` (the due index's entries). The store opens with it.
    fn scan_records(
        &self,
        mut queued: impl FnMut(&str, Millis, MessageId),
    ) -> Result<Counts, StoreError> {
        let mut counts = Counts::default();
        for entry in self.trees.msg.iter() {
            let (key, bytes) = entry?;
            let id = MessageId::from_slice(&key)
                .ok_or_else(|| StoreError::Corrupt("malformed message key".into()))?;
            let facts: RecordFacts<'_> = record::decode_as(&bytes)?;
            let endpoint: &str = &facts.endpoint;
            let of_endpoint = counts.by_endpoint.entry(endpoint.to_owned()).or_default();
            match facts.stage {
                Stage::Queued if self.leases.holds(id) => of_endpoint.in_flight += 1,
                Stage::Queued => of_endpoint.queued += 1,
                // A first-format store's persisted lease.
                Stage::InFlight => of_endpoint.in_flight += 1,
                Stage::Delivered => of_endpoint.delivered += 1,
                Stage::Dead => of_endpoint.dead += 1,
            }
            if facts.stage == Stage::Queued {
                queued(endpoint, facts.next_attempt_at, id);
            }
        }
        Ok(counts)
    }

    /// Bytes sled reports on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

/// The one answer of a one-message enqueue.
pub fn first_answer(
    mut answers: Vec<Result<Enqueued, StoreError>>,
) -> Result<Enqueued, StoreError> {
    answers
        .pop()
        .unwrap_or_else(|| Err(StoreError::Corrupt("an enqueue gave no answer".into())))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(format!("cannot encode record: {e}")))
}

fn decode<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("cannot decode record: {e}")))
}

// Operability reads (`hookd status`), kept apart from the verbs above.
impl Store {
    /// When the oldest queued message of `endpoint` was enqueued; `None` when nothing is queued. Walks the
    /// endpoint's slice of the due index in memory (ids are time-ordered, so the smallest is the oldest) and
    /// then reads one record.
    pub fn oldest_queued(&self, endpoint: &str) -> Result<Option<Millis>, StoreError> {
        match self.due.oldest(endpoint, |id| self.leases.holds(id)) {
            None => Ok(None),
            Some(id) => Ok(self.stored_record(id)?.map(|(record, _)| record.created_at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttemptResult;

    fn contact_entries(store: &Store) -> usize {
        store.trees.contact.len()
    }

    fn try_once(store: &Store, id: MessageId, decision: Decision, now: Millis) {
        let number = store.get(id).unwrap().unwrap().total_attempts + 1;
        let attempt = AttemptRecord {
            number,
            started_at: now,
            duration_ms: 1,
            status: Some(503),
            error: None,
            reason: "HTTP 503".into(),
            result: AttemptResult::Retry,
            body_excerpt: String::new(),
            receipt: None,
        };
        store.record_attempt(id, &attempt, &decision, now).unwrap();
    }

    /// A message for endpoint `e` without idempotency key or contact.
    fn plain_message() -> NewMessage {
        NewMessage {
            endpoint: "e".into(),
            kind: "t".into(),
            payload: "{}".into(),
            idempotency_key: None,
            contact: None,
        }
    }

    fn lease_one(store: &Store, now: Millis) -> MessageId {
        match store.lease_due("e", now, 1, now + 1_000).unwrap() {
            Lease::Taken(records) if records.len() == 1 => records[0].id,
            other => panic!("expected one leased message, got {other:?}"),
        }
    }

    /// An index entry whose record is not queued (only a bug could leave one) is dropped by the lease that
    /// finds it, and the lease goes on to the next due message instead of stalling the lane.
    #[tokio::test]
    async fn a_lease_drops_a_due_entry_whose_record_is_not_queued_and_takes_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let new = plain_message();
        let delivered = store.enqueue(&new, 1_000).unwrap().id;
        assert_eq!(lease_one(&store, 1_000), delivered);
        try_once(&store, delivered, Decision::Delivered, 1_100);
        let queued = store.enqueue(&new, 1_200).unwrap().id;
        // The bug: the delivered message back in the index, due before the queued one.
        store.due.insert("e", 1_000, delivered);

        assert_eq!(lease_one(&store, 2_000), queued);
        assert_eq!(store.due.entries(), [("e".to_owned(), 1_200, queued)]);
        assert_eq!(
            store.get(delivered).unwrap().unwrap().stage,
            Stage::Delivered
        );
    }

    /// A message with a contact needs the `contact` tree in transactions that do not name it up front
    /// (attempts, releases, replays): every path still keeps the contact index and the record in step.
    #[tokio::test]
    async fn a_contact_message_keeps_its_contact_entry_through_every_verb() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let new = NewMessage {
            idempotency_key: Some("k".into()),
            contact: Some(ContactLimit {
                contact: "c".into(),
                max_pending: 5,
            }),
            ..plain_message()
        };
        let id = store.enqueue(&new, 1_000).unwrap().id;
        assert_eq!(contact_entries(&store), 1);

        assert_eq!(lease_one(&store, 1_000), id);
        try_once(&store, id, Decision::RetryAt(2_000), 1_000);
        assert_eq!(store.get(id).unwrap().unwrap().stage, Stage::Queued);
        assert_eq!(contact_entries(&store), 1);

        assert_eq!(lease_one(&store, 2_000), id);
        store.release(id, 2_000).unwrap();
        assert_eq!(store.get(id).unwrap().unwrap().stage, Stage::Queued);
        assert_eq!(contact_entries(&store), 1);

        assert_eq!(lease_one(&store, 2_000), id);
        let dead = Decision::Dead {
            reason: "gone".into(),
        };
        try_once(&store, id, dead, 3_000);
        assert_eq!(store.get(id).unwrap().unwrap().stage, Stage::Dead);
        assert_eq!(contact_entries(&store), 0);

        assert_eq!(
            store.replay(&Selection::Ids(vec![id]), 4_000).unwrap(),
            ["e"]
        );
        assert_eq!(contact_entries(&store), 1);

        assert_eq!(lease_one(&store, 4_000), id);
        try_once(&store, id, Decision::Delivered, 5_000);
        let record = store.get(id).unwrap().unwrap();
        assert_eq!(record.stage, Stage::Delivered);
        assert_eq!(record.total_attempts, 3);
        assert_eq!(contact_entries(&store), 0);
        assert_eq!(store.attempts(id).unwrap().len(), 3);
        assert_eq!(store.counts().unwrap(), store.recount().unwrap());

        // A duplicate is answered from the idempotency tree without touching anything else.
        let again = store.enqueue(&new, 6_000).unwrap();
        assert!(again.duplicate);
        assert_eq!(again.id, id);
    }
}
