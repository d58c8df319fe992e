//! The store backends the store suites (`store_conformance.rs`, `store_endpoint_records.rs`,
//! `store_faults.rs`) run against. A backend-neutral test takes a fresh, empty [`Store`] from
//! [`each_backend`] and drives it only through the facade's verbs, so every backend passes the same tests.
//!
//! The extension point for a second backend is [`backends`]: it lists one fresh store per backend. A
//! PostgreSQL backend adds its entry there (a fresh schema in the database a test environment names, skipped
//! with a note when none is named); nothing else in the suites changes. Tests that reopen a data dir or write
//! sled's bytes are sled's own and open it themselves ([`open_sled`]).
#![allow(dead_code)]

use std::path::Path;

use hookd::store::Store;

pub const CACHE_BYTES: u64 = 1 << 20;

/// A fresh, empty store of one backend, and what keeps it alive (its temporary data dir).
pub struct Fresh {
    pub backend: &'static str,
    pub store: Store,
    _keep: tempfile::TempDir,
}

/// One fresh, empty store of every backend; must run inside tokio.
pub async fn backends() -> Vec<Fresh> {
    vec![sled()]
}

fn sled() -> Fresh {
    let dir = tempfile::tempdir().expect("a temporary data dir");
    let store = open_sled(dir.path());
    Fresh {
        backend: "sled",
        store,
        _keep: dir,
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

/// Opens (or creates) the sled store in `dir`: for the sled-only tests, which reopen a data dir.
pub fn open_sled(dir: &Path) -> Store {
    Store::open(dir, CACHE_BYTES).expect("open the store")
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
