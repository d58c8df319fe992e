//! Group commit: the durability point of an enqueue.
//!
//! sled 0.34's `flush_async` ends in `sync_file_range`, which does not persist file metadata, and values over
//! ~128 KiB go to blob files that sled never fsyncs (sled issue #1452). So a commit here is `flush_async` *and*
//! `fdatasync` of sled's log file plus any new blob files and their directory. That costs a few milliseconds,
//! so it is shared: every enqueue waiting when a commit starts is served by the next one. Writers call
//! [`GroupCommit::wait`] after their sled write; the answer comes once a sync that began after the write ended.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Duration, Instant};

use super::{CommitError, SledStore, StoreError};

/// How long after the last commit began a commit that only [`GroupCommit::request`]s asked for may wait, so
/// that a stream of attempt outcomes costs a commit every few milliseconds, not one per batch. It bounds how
/// long an outcome written without a waiter stays off the disk (a crash meanwhile means a redelivery).
const REQUEST_INTERVAL: Duration = Duration::from_millis(10);

/// Where a commit's result goes; `None` for a request nobody waits on ([`GroupCommit::request`]).
type Waiter = Option<oneshot::Sender<Result<(), CommitError>>>;

/// A handle to the group-commit task; cheap to clone.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    requests: mpsc::UnboundedSender<Waiter>,
    /// The first commit failure. sled 0.34 keeps an I/O error for good (every later write fails the same
    /// way), so a failed commit is a fact about this open store: nothing can be made durable until the data
    /// dir is opened again (`daemon::run` does so once the disk has space).
    failure: watch::Receiver<Option<CommitError>>,
    /// How many commits have succeeded.
    commits: watch::Receiver<u64>,
}

impl GroupCommit {
    /// Starts the commit task for `db`, whose files live in `dir`. Must be called inside a tokio runtime.
    pub fn start(db: sled::Db, dir: PathBuf) -> GroupCommit {
        Self::start_with(db, SyncedFiles::new(dir))
    }

    fn start_with(db: sled::Db, files: SyncedFiles) -> GroupCommit {
        let (requests, receiver) = mpsc::unbounded_channel();
        let (failed, failure) = watch::channel(None);
        let (committed, commits) = watch::channel(0);
        tokio::spawn(run(db, files, receiver, failed, committed));
        GroupCommit {
            requests,
            failure,
            commits,
        }
    }

    /// The number of commits that have succeeded, changing with each one.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    /// The first commit failure, once one happened.
    pub fn failure(&self) -> Option<CommitError> {
        self.failure.borrow().clone()
    }

    /// Resolves when a commit has failed (at once if one already did).
    pub async fn failed(&self) -> CommitError {
        let mut failure = self.failure.clone();
        loop {
            if let Some(error) = failure.borrow_and_update().clone() {
                return error;
            }
            if failure.changed().await.is_err() {
                // The commit task is gone: nothing can be committed any more.
                return CommitError("the commit task has stopped".into());
            }
        }
    }

    /// Asks for a commit without waiting for it: everything written before this call reaches the disk with
    /// the next commit, which starts as soon as the one under way (if any) has ended. A failure is latched as
    /// any other ([`GroupCommit::failure`]).
    pub fn request(&self) {
        // A stopped commit task has latched its failure, or the store is closing: nothing to ask.
        let _ = self.requests.send(None);
    }

    /// Waits until everything written before this call is on disk.
    pub async fn wait(&self) -> Result<(), CommitError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Some(tx))
            .map_err(|_| CommitError("the commit task has stopped".into()))?;
        rx.await
            .map_err(|_| CommitError("the commit task has stopped".into()))?
    }
}

async fn run(
    db: sled::Db,
    files: SyncedFiles,
    mut receiver: mpsc::UnboundedReceiver<Waiter>,
    failed: watch::Sender<Option<CommitError>>,
    committed: watch::Sender<u64>,
) {
    let files = Arc::new(Mutex::new(files));
    let mut batch = Vec::new();
    let mut last_start = Instant::now();
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        gather(&mut receiver, &mut batch, last_start + REQUEST_INTERVAL).await;
        last_start = Instant::now();
        // Once a commit failed, none after it is trusted: Linux reports a writeback error to one fsync only,
        // so a later fsync that succeeds proves nothing about the pages the failed one lost.
        let latched = failed.borrow().clone();
        let result = match latched {
            Some(error) => Err(error),
            None => commit_once(&db, &files).await,
        };
        if let Err(error) = &result {
            let new = failed.send_if_modified(|first| {
                let new = first.is_none();
                first.get_or_insert_with(|| error.clone());
                new
            });
            // The first failure is the news; every later commit fails with it (logged once).
            if new {
                tracing::error!(%error, "group commit failed; nothing more can be acknowledged until the store is opened again");
            } else {
                tracing::debug!(%error, "group commit refused: an earlier one failed");
            }
        }
        if result.is_ok() {
            committed.send_modify(|count| *count += 1);
        }
        for waiter in batch.drain(..).flatten() {
            let _ = waiter.send(result.clone());
        }
    }
}

/// Adds what else is asked to `batch`. When nobody in it waits (attempt outcomes only), it also waits for more
/// until `until` (the interval after the last commit began), or until a waiter comes.
async fn gather(
    receiver: &mut mpsc::UnboundedReceiver<Waiter>,
    batch: &mut Vec<Waiter>,
    until: Instant,
) {
    while let Ok(more) = receiver.try_recv() {
        batch.push(more);
    }
    if batch.iter().any(Option::is_some) {
        return;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            more = receiver.recv() => match more {
                Some(waiter) => {
                    let waits = waiter.is_some();
                    batch.push(waiter);
                    if waits {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    while let Ok(more) = receiver.try_recv() {
        batch.push(more);
    }
}

async fn commit_once(db: &sled::Db, files: &Arc<Mutex<SyncedFiles>>) -> Result<(), CommitError> {
    db.flush_async()
        .await
        .map_err(|e| CommitError(format!("flush failed: {e}").into()))?;
    let files = Arc::clone(files);
    tokio::task::spawn_blocking(move || match files.lock() {
        Ok(mut files) => files.sync(),
        Err(_) => Err(std::io::Error::other("a previous fsync panicked")),
    })
    .await
    .map_err(|e| CommitError(format!("fsync task failed: {e}").into()))?
    .map_err(|e| CommitError(format!("fsync failed: {e}").into()))
}

/// sled's files that must be fsynced, and the blob files already synced.
struct SyncedFiles {
    dir: PathBuf,
    log: Option<File>,
    blobs_seen: HashSet<PathBuf>,
    blobs_dir_mtime: Option<SystemTime>,
    dir_synced: bool,
    /// Tests: the next sync fails as a failed fsync would.
    #[cfg(test)]
    fail_next: Arc<std::sync::atomic::AtomicBool>,
}

impl SyncedFiles {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            log: None,
            blobs_seen: HashSet::new(),
            blobs_dir_mtime: None,
            dir_synced: false,
            #[cfg(test)]
            fail_next: Arc::default(),
        }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        #[cfg(test)]
        if self
            .fail_next
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        if self.log.is_none() {
            self.log = Some(File::open(self.dir.join("db"))?);
        }
        if let Some(log) = &self.log {
            log.sync_data()?;
        }
        if !self.dir_synced {
            // The data dir's entries (db, conf, blobs/) exist from sled's open; persist them once.
            sync_dir(&self.dir)?;
            File::open(self.dir.join("conf"))?.sync_all()?;
            self.dir_synced = true;
        }
        self.sync_new_blobs()
    }

    /// New blob files appear as new entries in `blobs/`, which changes its mtime: list it only then.
    fn sync_new_blobs(&mut self) -> std::io::Result<()> {
        let blobs = self.dir.join("blobs");
        let mtime = match std::fs::metadata(&blobs) {
            Ok(meta) => meta.modified().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        // An unchanged mtime proves nothing new only once it is older than the clock's granularity could hide.
        let settled = mtime
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(2));
        if settled && mtime == self.blobs_dir_mtime {
            return Ok(());
        }
        let mut synced_any = false;
        for entry in std::fs::read_dir(&blobs)? {
            let path = entry?.path();
            if self.blobs_seen.contains(&path) {
                continue;
            }
            match File::open(&path) {
                Ok(file) => file.sync_all()?,
                // sled removes blobs it no longer needs; a vanished one needs no sync.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            self.blobs_seen.insert(path);
            synced_any = true;
        }
        self.blobs_seen.retain(|p| p.exists());
        if synced_any {
            sync_dir(&blobs)?;
        }
        self.blobs_dir_mtime = mtime;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl SledStore {
    /// Waits until every write made before the call is durable on disk (group commit).
    pub async fn commit(&self) -> Result<(), StoreError> {
        Ok(self.committer.wait().await?)
    }

    /// The number of group commits that have succeeded since the store opened, changing with each one. An
    /// attempt's outcome asks for one without waiting for it ([`SledStore::record_attempts`]).
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
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[tokio::test]
    async fn after_a_failed_commit_no_later_commit_answers_success() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = sled::open(dir.path()).expect("sled opens");
        let files = SyncedFiles::new(dir.path().to_owned());
        let fail_next = Arc::clone(&files.fail_next);
        let commits = GroupCommit::start_with(db.clone(), files);

        db.insert("a", "1").expect("a write");
        assert!(commits.wait().await.is_ok());

        fail_next.store(true, Ordering::SeqCst);
        db.insert("b", "2").expect("a write");
        assert!(commits.wait().await.is_err(), "the injected fsync failure");
        assert!(commits.failure().is_some());

        // The disk would sync again, but what the failed fsync lost is not known: every later commit fails.
        db.insert("c", "3").expect("a write");
        let later = commits.wait().await;
        assert!(
            later.is_err(),
            "no acknowledgement after a failed fsync: {later:?}"
        );
        assert!(!fail_next.load(Ordering::SeqCst), "the fault was used once");
    }
}
