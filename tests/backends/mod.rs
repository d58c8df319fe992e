//! The store backends the store suites (`store_conformance.rs`, `store_endpoint_records.rs`,
//! `store_faults.rs`) run against. A backend-neutral test takes a fresh, empty [`Store`] from
//! [`each_backend`] and drives it only through the facade's verbs, so every backend passes the same tests.
//!
//! [`backends`] lists one fresh store per backend: sled in a temporary data dir, and PostgreSQL in a fresh
//! database of this test binary's throwaway cluster (`tests/support/postgres_cluster.rs`: started on first
//! use, as the `postgres` user when the tests run as root, removed when the binary exits). Tests that reopen
//! a data dir or write sled's bytes are sled's own and open it themselves ([`open_sled`]).
#![allow(dead_code)]

use std::path::Path;

use hookd::store::{PgOptions, Store, StoreError};

#[path = "../support/postgres_cluster.rs"]
pub mod postgres_cluster;

pub const CACHE_BYTES: u64 = 1 << 20;

/// A fresh, empty store of one backend, and what keeps it alive (its temporary data dir).
pub struct Fresh {
    pub backend: &'static str,
    pub store: Store,
    _keep: Option<tempfile::TempDir>,
}

/// One fresh, empty store of every backend; must run inside tokio.
pub async fn backends() -> Vec<Fresh> {
    vec![sled(), postgres().await]
}

/// A store on a fresh database of this binary's PostgreSQL cluster.
pub async fn postgres() -> Fresh {
    Fresh {
        backend: "postgres",
        store: connect_postgres(&fresh_database().await).await,
        _keep: None,
    }
}

/// A fresh, empty database of this binary's PostgreSQL cluster: its URL.
pub async fn fresh_database() -> String {
    postgres_cluster::cluster().fresh_database().await
}

/// Joins the database at `url` as a new node, with the test options ([`pg_options`]).
pub async fn connect_postgres(url: &str) -> Store {
    Store::connect(url, pg_options())
        .await
        .expect("connect to the test database")
}

/// Small pools (many tests run at once against one cluster), the default leases.
pub fn pg_options() -> PgOptions {
    PgOptions {
        max_connections: 4,
        label: "test".into(),
        ..PgOptions::default()
    }
}

fn sled() -> Fresh {
    let dir = tempfile::tempdir().expect("a temporary data dir");
    let store = open_sled(dir.path());
    Fresh {
        backend: "sled",
        store,
        _keep: Some(dir),
    }
}

/// Runs `test` once against a fresh, empty store of each backend, in turn.
pub async fn each_backend(test: impl AsyncFn(&Store)) {
    for fresh in backends().await {
        let backend = fresh.backend;
        let failed = Failed(backend);
        test(&fresh.store).await;
        std::mem::forget(failed);
    }
}

/// Says which backend a failing test ran against (the panic is under way when it drops).
struct Failed(&'static str);

impl Drop for Failed {
    fn drop(&mut self) {
        eprintln!("failed against the {} backend", self.0);
    }
}

/// Opens (or creates) the sled store in `dir`, for the sled-only tests, which reopen a data dir: once the
/// store or sled database that had it before has let go of it. Dropping a sled `Db` joins its flusher, but
/// a write job on sled's I/O pool can hold the log file (and with it the lock) a moment longer, and sled
/// gives no event to wait for; so this asks again every 10 ms, up to 10 s.
pub fn open_sled(dir: &Path) -> Store {
    once_released(
        || Store::open(dir, CACHE_BYTES),
        |e| matches!(e, StoreError::Locked(_)),
    )
}

/// Runs `work` on a runtime of its own and drops that runtime before returning.
///
/// Dropping a sled `Store` does not release the data dir: its group-commit task holds a `sled::Db` clone (and
/// with it sled's file lock) until the runtime polls the task again or drops it. Dropping the runtime drops
/// the task, so the next open of the same dir is not refused as `Locked`.
pub fn in_own_runtime<T>(work: impl Future<Output = T>) -> T {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let out = runtime.block_on(work);
    drop(runtime);
    out
}

/// Runs `open` until it stops failing with an error `locked` recognises as sled's lock (every 10 ms, up to
/// 10 s), and answers what it opened.
pub fn once_released<T, E: std::fmt::Debug>(
    open: impl Fn() -> Result<T, E>,
    locked: impl Fn(&E) -> bool,
) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Err(e) if locked(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other.expect("open the data dir"),
        }
    }
}

/// Opens the data dir with sled directly once the store that had it has let go of it (see
/// [`open_sled`]).
pub fn sled_once_released(dir: &Path) -> sled::Db {
    once_released(
        || sled::open(dir),
        |e| matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock")),
    )
}
