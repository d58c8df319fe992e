//! The PostgreSQL backend: several hookd nodes share one database, so no accepted message dies with one disk.
//!
//! Every write is one statement (or one short transaction) committed before its verb answers; no transaction
//! is ever held open across an HTTP request. What a node keeps in memory, and why:
//! - its own claims (`claims.rs`): the claim id of each message it leased, so that an outcome is written only
//!   while that claim still holds (a node that lost its lease cannot overwrite a newer claim);
//! - its read-ahead (`lease.rs`): due messages one claim statement took beyond what the lane asked for, so
//!   that a busy lane claims once per few dozen messages rather than once per few;
//! - the endpoint lanes it owns (`owners.rs`): an endpoint's lane runs on one node at a time, through a lease
//!   on the endpoint in `hookd_owners`, so its concurrency, rate limit and circuit breaker hold for the cluster;
//! - the live counts (`tally.rs`), the endpoint and token records (`records.rs`): the synchronous reads the
//!   store boundary promises, kept current by this node's own writes and by the other nodes' notifications
//!   (`listen.rs`) and a periodic reread.
//!
//! A background task (`heartbeat.rs`) renews the node's claims and lane leases, marks the node alive, and
//! folds the tally's change rows together.

mod claims;
mod dead;
mod enqueue;
mod heartbeat;
mod lease;
mod listen;
mod messages;
mod outcomes;
mod owners;
mod records;
mod row;
mod schema;
mod tally;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{EndpointState, StoreError, TokenRecord};
use crate::model::Millis;

/// Applies pending migrations to the database at `url` (`hookd migrate`).
pub async fn migrate_url(url: &str) -> Result<usize, StoreError> {
    let options = PgOptions {
        max_connections: 1,
        ..PgOptions::default()
    };
    let pool = pool(url, &options).await?;
    let applied = schema::migrate(&pool).await;
    pool.close().await;
    applied
}

/// How a node joins the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// At most this many connections in the node's pool (one more is the listener's).
    pub max_connections: u32,
    /// How long a claim or a lane lease lasts without its owner's heartbeat.
    pub lease_ttl: Duration,
    /// How often the heartbeat renews them.
    pub heartbeat: Duration,
    /// How long a verb waits for a connection before answering [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// Applies pending migrations at connect (under the migration lock).
    pub migrate: bool,
    /// How the node names itself in `hookd_nodes` (host and pid by default).
    pub label: String,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
            lease_ttl: Duration::from_secs(15),
            heartbeat: Duration::from_secs(3),
            acquire_timeout: Duration::from_secs(2),
            migrate: true,
            label: format!("pid {}", std::process::id()),
        }
    }
}

/// A change another node made, for this node's dispatcher to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Messages of these endpoints became due (another node enqueued, replayed or released them).
    Work(Vec<String>),
    /// The endpoint's record changed (created, changed or deleted).
    Endpoint(String),
    /// The token list changed.
    Tokens,
}

/// The PostgreSQL store of one node. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// This node's id: the owner of its claims and lane leases.
    node: Uuid,
    options: PgOptions,
    claims: claims::Claims,
    /// Messages claimed ahead of their lane's asking (`lease.rs`), by endpoint.
    ahead: lease::ReadAhead,
    owners: owners::Owners,
    tally: tally::Tally,
    endpoints: RwLock<BTreeMap<String, EndpointState>>,
    /// The `version` of each endpoint record in `endpoints`: a write or reread lands only if it is not older
    /// than what is there (two nodes' changes can reach the copy out of order).
    endpoint_versions: Mutex<std::collections::HashMap<String, i64>>,
    tokens: RwLock<BTreeMap<String, TokenRecord>>,
    enqueues: mpsc::Sender<enqueue::Job>,
    outcomes: mpsc::Sender<outcomes::OutcomeJob>,
    commits: watch::Sender<u64>,
    changes: broadcast::Sender<Change>,
    /// The last connection failure, while the database cannot be reached.
    unreachable: Mutex<Option<String>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl PgStore {
    /// Connects to the database at `url`, applies pending migrations (when `options.migrate`), registers the
    /// node and loads what it keeps in memory; starts the node's background tasks. Must run inside tokio.
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        let pool = pool(url, &options).await?;
        if options.migrate {
            schema::migrate(&pool).await?;
        }
        let node = Uuid::now_v7();
        let (enqueues, jobs) = mpsc::channel(1024);
        let (outcomes, outcome_jobs) = mpsc::channel(1024);
        let (changes, _) = broadcast::channel(4096);
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                node,
                options,
                claims: claims::Claims::default(),
                ahead: lease::ReadAhead::default(),
                owners: owners::Owners::default(),
                tally: tally::Tally::default(),
                endpoints: RwLock::new(BTreeMap::new()),
                endpoint_versions: Mutex::new(std::collections::HashMap::new()),
                tokens: RwLock::new(BTreeMap::new()),
                enqueues,
                outcomes,
                commits: watch::channel(0).0,
                changes,
                unreachable: Mutex::new(None),
                stop: CancellationToken::new(),
            }),
        };
        store.check_schema().await?;
        store.join().await?;
        store.reload_endpoints().await?;
        store.reload_tokens().await?;
        store.reload_tally().await?;
        enqueue::spawn_batcher(store.downgrade(), jobs);
        outcomes::spawn_outcome_writer(store.downgrade(), outcome_jobs);
        heartbeat::spawn(store.downgrade());
        listen::spawn(store.downgrade(), url.to_owned()).await?;
        Ok(store)
    }

    /// Changes other nodes made, as they are notified.
    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// Every write is committed before its verb answers: there is nothing left to wait for, unless the
    /// database is unreachable.
    pub async fn commit(&self) -> Result<(), StoreError> {
        Ok(())
    }

    pub fn commits(&self) -> watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    /// Why the database cannot be reached now, if it cannot. Unlike sled's failed fsync this is not latched:
    /// a later statement that succeeds clears it.
    pub fn failure(&self) -> Option<String> {
        lock(&self.inner.unreachable).clone()
    }

    /// A PostgreSQL node never latches a failure: every statement stands on its own commit.
    pub async fn failed(&self) -> String {
        std::future::pending().await
    }

    /// Bytes the database takes on disk.
    pub async fn size_on_disk(&self) -> Result<u64, StoreError> {
        let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(self.pool())
            .await
            .map_err(|e| self.failed_with(e))?;
        Ok(bytes.max(0) as u64)
    }

    fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<PgStore> {
        weak.upgrade().map(|inner| PgStore { inner })
    }

    /// Counts one more committed write and clears the unreachable mark.
    fn wrote(&self) {
        self.inner.commits.send_modify(|n| *n += 1);
        self.reached();
    }

    fn reached(&self) {
        let mut unreachable = lock(&self.inner.unreachable);
        if unreachable.is_some() {
            tracing::info!("the database is reachable again");
            *unreachable = None;
        }
    }

    /// Turns a database error into the store's, remembering a connection failure.
    fn failed_with(&self, error: sqlx::Error) -> StoreError {
        let error = pg_error(error);
        if let StoreError::Unavailable(reason) = &error {
            *lock(&self.inner.unreachable) = Some(reason.clone());
        }
        error
    }

    async fn check_schema(&self) -> Result<(), StoreError> {
        let present: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('hookd_messages')::text")
                .fetch_one(self.pool())
                .await
                .map_err(pg_error)?;
        match present {
            Some(_) => Ok(()),
            None => Err(StoreError::Corrupt(
                "the database has no hookd schema: run `hookd migrate --config PATH` first".into(),
            )),
        }
    }

    async fn join(&self) -> Result<(), StoreError> {
        let now = crate::model::now_millis() as i64;
        sqlx::query(
            "INSERT INTO hookd_nodes (id, label, started_at, seen_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(self.inner.node)
        .bind(&self.inner.options.label)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(pg_error)?;
        Ok(())
    }
}

async fn pool(url: &str, options: &PgOptions) -> Result<PgPool, StoreError> {
    let connect: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| StoreError::Open {
        path: "[store] url".into(),
        source: Box::new(e),
    })?;
    PgPoolOptions::new()
        .max_connections(options.max_connections)
        .min_connections(1)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(pg_error)
}

/// The store's error for a database error: a connection that could not be made or was lost is
/// [`StoreError::Unavailable`] (answered 503 `store_unavailable` at once); any other is the backend's.
pub(crate) fn pg_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(error.to_string()),
        sqlx::Error::Database(ref db) if is_unavailable_code(db.code().as_deref()) => {
            StoreError::Unavailable(error.to_string())
        }
        other => StoreError::Backend(Box::new(other)),
    }
}

/// SQLSTATE classes that mean "the server cannot serve now": 08 connection exception, 57P shutdown.
fn is_unavailable_code(code: Option<&str>) -> bool {
    code.is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A time as PostgreSQL stores it (`bigint` milliseconds).
fn sql_millis(at: Millis) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}

/// A stored time back (`bigint` milliseconds; a negative one reads as 0).
fn millis_of(at: i64) -> Millis {
    at.max(0) as Millis
}

/// Distinct endpoint names, in order.
fn distinct(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = names.into_iter().collect();
    set.into_iter().collect()
}
