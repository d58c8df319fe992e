//! [`StoreError`], the store's one error type, and what its variants mean.
//!
//! No variant names the backend: a sled failure is kept whole (its message and its chain of causes) as a
//! boxed error, so nothing outside `store/` sees a sled type and a second backend could give the same
//! variants. Inside the store `?` still turns a `sled::Error` into [`StoreError::Backend`] (the `From` impl
//! below).

use std::path::PathBuf;

use super::MARKER_FILE;
use super::commit::CommitError;

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
    /// The backend could not open (or create) the data dir; `source` is the backend's own error.
    #[error("cannot open the store in {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A read or write of the backend failed; the field is the backend's own error.
    #[error("store I/O failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
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

/// A failed sled call inside the store (`?`): kept whole as the source of [`StoreError::Backend`].
impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> StoreError {
        StoreError::Backend(Box::new(error))
    }
}
