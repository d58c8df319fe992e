//! Opening a data dir: the `hookd-data` marker that claims a directory and names its format, the upgrades
//! from older formats, and the pass over every record that rebuilds the in-memory state at open (the due
//! index and the live tally; [`SledStore::recount`] makes the same pass to check them).
//!
//! The marker is checked before sled writes anything into the directory, so a directory holding someone
//! else's files, or a format this build does not know, is refused untouched.

use std::path::Path;
use std::sync::Arc;

use super::combine::{self, Combiner};
use super::commit::GroupCommit;
use super::due::DueIndex;
use super::leases::Leases;
use super::ops::{AttemptOp, EnqueueOp};
use super::record::{self, RecordFacts};
use super::tally::Tally;
use super::{Counts, MARKER_FILE, SledStore, StoreError, Trees};
use crate::model::{MessageId, Millis, Stage};

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
    // Written beside, synced, renamed, and the rename synced: a crash or power loss leaves the old marker or
    // the whole new one, never an empty or half one (which would make the next open refuse the dir).
    let staged = dir.join(format!("{MARKER_FILE}.new"));
    let mut file = std::fs::File::create(&staged).map_err(marker_error)?;
    std::io::Write::write_all(&mut file, MARKER_TEXT.as_bytes()).map_err(marker_error)?;
    file.sync_all().map_err(marker_error)?;
    drop(file);
    std::fs::rename(&staged, &path).map_err(marker_error)?;
    sync_dir(dir).map_err(marker_error)
}

/// Makes a directory's entries (a file created or renamed in it) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl SledStore {
    /// Whether a running process holds the store in `dir` (the lock [`SledStore::open`] would fail on), found
    /// without opening it: a non-blocking try of that lock, released at once. `false` when `dir` holds no
    /// store.
    pub fn is_held(dir: &Path) -> bool {
        use nix::fcntl::{Flock, FlockArg};
        // sled locks its `db` file (flock, exclusive) for as long as the database is open.
        let Ok(file) = std::fs::File::open(dir.join("db")) else {
            return false;
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(_released_on_drop) => false,
            Err((_, errno)) => errno == nix::errno::Errno::EWOULDBLOCK,
        }
    }

    /// Opens (or creates) the store in `dir` and starts its group-commit task; must run inside tokio.
    /// A second process on the same dir gets [`StoreError::Locked`].
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            path: dir.to_owned(),
            // As sled's error, as it always was: its message reads `IO error: ...`.
            source: Box::new(sled::Error::from(e)),
        })?;
        // The data dir's own entry in its parent, should it have just been created.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent).map_err(|e| StoreError::Open {
                path: dir.to_owned(),
                source: Box::new(e),
            })?;
        }
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
                    source: Box::new(source),
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
        let mut store = SledStore {
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

    /// One pass over every message record: the counts by endpoint and stage; each queued record's endpoint,
    /// due time and id go to `queued` (the due index's entries). The store opens with it.
    pub(super) fn scan_records(
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
}
