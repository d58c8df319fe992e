//! The durable queue, as one type over its backends.
//!
//! Everything outside `store/` speaks to [`Store`] in domain verbs: [`Store::enqueue`], [`Store::commit`],
//! [`Store::lease_due`], [`Store::record_attempts`], [`Store::replay`], [`Store::purge`]... A `Store` is a
//! cheap-to-clone handle on one backend ([`Backend`]); each verb delegates to it with a `match`, so a backend
//! implements the same verbs with the same meaning, and `tests/store_conformance.rs` pins that meaning for
//! every backend. There are two: sled on the local data dir (`store/sled/`, the only module that names sled),
//! and PostgreSQL shared by several nodes (`store/postgres/`, the only one that names sqlx). Nothing backend-specific crosses this
//! boundary: the domain types are in `types.rs` and the one error type, [`StoreError`], in `error.rs`, and
//! neither names a backend's types.
//!
//! Which verbs are `async`. A verb that reads or writes records is `async`, whether or not today's backend
//! waits for anything: a networked backend does I/O for it. (The sled backend answers most of them with a
//! few synchronous sled calls, fast enough to make from async code, as they always were; a verb that reads
//! without bound, [`Store::prune_delivered`], runs on a blocking thread.) A verb stays synchronous only when
//! it answers from state the backend keeps in memory, current with every change it makes and sees, so that a
//! caller may ask it in a hot loop or while holding a lock: the live counts ([`Store::counts`],
//! [`Store::pending`], [`Store::pending_of`], [`Store::most_pending`]: sled's tally, a PostgreSQL backend's
//! tally kept by LISTEN/NOTIFY), which endpoints have work ([`Store::has_queued`],
//! [`Store::queued_endpoints`]), this process's own leases ([`Store::is_leased`]) and the commit state
//! ([`Store::commits`], [`Store::failure`]). Opening is the backend's own: [`Store::open`] opens the sled
//! backend in a data dir.
//!
//! A future is as large as its largest arm, and a PostgreSQL verb that runs a transaction through sqlx is a
//! future of about 14 KB. Where such an arm would make the verb's future that large (an endpoint's state
//! update, replay, purge, pruning, retiring a deleted endpoint's messages), the arm is boxed, so that a sled
//! caller's futures stay small: an attempt task that can disable its endpoint (a 410) was 14 KB, copied at
//! every spawn. Boxing costs a PostgreSQL call one allocation beside its round trip.
//!
//! The verbs live by concept: `queue.rs` (enqueue, durability, leases, attempt outcomes, a deleted endpoint's
//! messages) and `records.rs` (reads, counts, dead letters, endpoint and token records).

mod error;
mod postgres;
mod queue;
mod records;
mod sled;
mod types;

use std::path::Path;

pub use error::{CommitError, StoreError};
pub use postgres::{Change, PgOptions};
pub use sled::listing::{MessagePage, MessageQuery, Nudged, SCAN_BUDGET, Wanted};
pub use types::{
    AttemptOutcome, CORRUPT_KIND, ContactLimit, Counts, DeadPage, EndpointState, Enqueued, Lease,
    MARKER_FILE, NewMessage, Remaining, Retire, Selection, StageCounts, TokenRecord, first_answer,
};

/// The queue. Cheap to clone; all clones share one backend (for sled: one database and one group-commit task).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

/// The backend a [`Store`] delegates to. A second backend is a second variant, and a second arm in each verb.
#[derive(Clone, Debug)]
enum Backend {
    /// sled in the local data dir (`store/sled/`).
    Sled(sled::SledStore),
    /// A PostgreSQL database shared by several nodes (`store/postgres/`).
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens (or creates) the sled store in the data dir `dir` and starts its group-commit task; must run
    /// inside tokio. A second process on the same dir gets [`StoreError::Locked`].
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let sled = sled::SledStore::open(dir, cache_bytes)?;
        Ok(Store {
            backend: Backend::Sled(sled),
        })
    }

    /// Connects to the PostgreSQL database at `url` as one node of a cluster (applying pending migrations
    /// when `options.migrate`) and starts the node's heartbeat and listener; must run inside tokio.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Store, StoreError> {
        let pg = postgres::PgStore::connect(url, options).await?;
        Ok(Store {
            backend: Backend::Postgres(pg),
        })
    }

    /// Applies the PostgreSQL schema's pending migrations to the database at `url` (under an advisory lock,
    /// so nodes starting at once are safe). Returns how many were applied.
    pub async fn migrate(url: &str) -> Result<usize, StoreError> {
        postgres::migrate_url(url).await
    }

    /// The changes other nodes make (messages due, endpoints and tokens changed), for a backend shared by
    /// several nodes; `None` for a backend only this process writes.
    pub fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        match &self.backend {
            Backend::Sled(_) => None,
            Backend::Postgres(pg) => Some(pg.changes()),
        }
    }

    /// Which backend this is, for logs and `/v1/health`: `sled` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sled(_) => "sled",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Whether a running process holds the sled store in the data dir `dir` (the lock [`Store::open`] would
    /// fail on), found without opening it. `false` when `dir` holds no store.
    pub fn is_held(dir: &Path) -> bool {
        sled::SledStore::is_held(dir)
    }
}
