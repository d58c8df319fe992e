//! [`StoreError`], the store's one error type, and what its variants mean.
//!
//! No variant names a backend: a backend's failure is kept whole (its message and its chain of causes) as a
//! boxed error, so nothing outside a backend sees its types and every backend gives the same variants.
//! Inside the sled backend `?` still turns a `sled::Error` into [`StoreError::Backend`] (its `From` impl is
//! in `store/sled/`).

use std::path::PathBuf;
use std::sync::Arc;

use super::MARKER_FILE;

/// Why a commit failed (the store is then not trusted for new acknowledgements).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CommitError(pub(crate) Arc<str>);

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
    /// The store's server cannot be reached now (PostgreSQL down or restarting, or no free connection in
    /// time); a later call may succeed.
    #[error("the database cannot be reached: {0}")]
    Unavailable(String),
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
