//! The store-down (degraded) mode: serving without a store, waiting for disk space, and opening the store
//! again with a growing wait. Kept apart so the serving path reads without the recovery policy.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::{Store, StoreError};

use super::listen::Api;
use super::{Daemon, Phase};

/// While the store is down: how often the data dir's free space is looked at, and the first wait before
/// an attempt to open the store again. Each failed attempt doubles the wait, up to [`REOPEN_WAIT_MAX`].
pub(super) const REOPEN_EVERY: Duration = Duration::from_secs(2);

/// The longest wait between two attempts to open the store.
const REOPEN_WAIT_MAX: Duration = Duration::from_secs(60);

/// A store that failed sooner than this after it was opened makes the next open wait longer (a disk that
/// fails for another reason than space is not reopened every few seconds).
pub(super) const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The free space the data dir's file system needs (or `min_free_disk_bytes`, when larger) before the store
/// is opened again.
const REOPEN_MIN_FREE: u64 = 4 * 1024 * 1024;

/// How often a repeated line about the store being down is logged at most.
const SAY_EVERY: Duration = Duration::from_secs(60);

impl Daemon {
    /// Serves without a store (the health check says why) and tries to open it whenever the data dir has
    /// space, each failed attempt doubling the wait; until it opens or `shutdown` resolves.
    pub(super) async fn serve_without_store(
        &mut self,
        reason: String,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> Phase {
        tracing::error!(
            %reason,
            socket = %self.config.socket.display(),
            data_dir = %self.config.data_dir.display(),
            "hookd is serving without its store: health answers `degraded`, everything else 503 \
             store_unavailable; the store is opened again once the data dir has free space"
        );
        crate::notify::notify(&format!("STATUS=degraded: the store is not open: {reason}"));
        self.said_degraded = true;
        let reason = Arc::new(Mutex::new(reason));
        let api_cancel = CancellationToken::new();
        let down = crate::api::store_down_router(backend_name(&self.config), Arc::clone(&reason));
        let api = Api::start(self, down.clone(), Some(down), &api_cancel);
        if !self.ready {
            crate::notify::notify("READY=1");
            self.ready = true;
        }
        let mut say = Throttle::new(SAY_EVERY);
        let opened = loop {
            tokio::select! {
                () = &mut shutdown => break None,
                () = tokio::time::sleep(self.reopen_wait) => {}
            }
            let (free, needed) = space(&self.config);
            if free < needed {
                if let Some(unsaid) = say.pass() {
                    tracing::warn!(
                        free,
                        needed,
                        data_dir = %self.config.data_dir.display(),
                        times_not_logged = unsaid,
                        "the store stays closed until the data dir's file system has free space"
                    );
                }
                continue;
            }
            match open_again(&self.config).await {
                Ok(store) => break Some(store),
                Err(error) => {
                    self.reopen_failed();
                    if let Some(unsaid) = say.pass() {
                        tracing::error!(
                            %error,
                            next_attempt_in_s = self.reopen_wait.as_secs(),
                            times_not_logged = unsaid,
                            "cannot open the store yet; trying again"
                        );
                    }
                    *reason.lock().unwrap_or_else(|p| p.into_inner()) = error.to_string();
                }
            }
        };
        if opened.is_none() {
            crate::notify::notify("STOPPING=1");
            tracing::info!("shutting down without a store: nothing to finish");
        }
        api_cancel.cancel();
        let _ = api.stop(self.config.shutdown_grace).await;
        match opened {
            Some(store) => {
                tracing::info!("the store is open again");
                Phase::Open(store)
            }
            None => Phase::Stop(Ok(())),
        }
    }

    /// An attempt to open (or serve) the store failed, or the store failed again soon: wait longer.
    pub(super) fn reopen_failed(&mut self) {
        self.reopen_wait = (self.reopen_wait * 2).min(REOPEN_WAIT_MAX);
    }
}

/// Opens the store again. The handles of the store before it were just dropped, but its group-commit task
/// may not have run since and still holds sled's lock: `Locked` is retried for a moment.
pub(super) async fn open_again(config: &Config) -> Result<Store, StoreError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match crate::cluster::open_store(config).await {
            Err(StoreError::Locked(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            opened => return opened,
        }
    }
}

/// Resolves, at the earliest after `first`, once the data dir's file system has the space a reopen needs;
/// says at most once a minute that it waits.
pub(super) async fn wait_for_space(config: &Config, first: Duration) {
    let mut say = Throttle::new(SAY_EVERY);
    tokio::time::sleep(first).await;
    loop {
        let (free, needed) = space(config);
        if free >= needed {
            return;
        }
        if let Some(unsaid) = say.pass() {
            tracing::warn!(
                free,
                needed,
                data_dir = %config.data_dir.display(),
                times_not_logged = unsaid,
                "the store stays failed until the data dir's file system has free space"
            );
        }
        tokio::time::sleep(REOPEN_EVERY).await;
    }
}

/// The data dir's file system's free bytes, and what opening the store again needs. A backend that is not
/// in the data dir (PostgreSQL) needs nothing there.
fn space(config: &Config) -> (u64, u64) {
    if !crate::cluster::is_embedded(config) {
        return (u64::MAX, 0);
    }
    let needed = config.min_free_disk_bytes.max(REOPEN_MIN_FREE);
    // The data dir itself may not exist yet (creating it is what failed): its nearest existing ancestor
    // is on the same file system.
    let free = config
        .data_dir
        .ancestors()
        .find_map(|dir| free_bytes(dir).ok())
        .unwrap_or(0);
    (free, needed)
}

/// Whether `error`, opening or starting the store, is for want of space: an `ENOSPC` (or quota) in its
/// causes, or less than [`REOPEN_MIN_FREE`] free on the data dir's file system. Such a store is waited for.
pub(super) fn out_of_space(config: &Config, error: &StoreError) -> bool {
    if !crate::cluster::is_embedded(config) {
        return false;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        {
            return true;
        }
        cause = error.source();
    }
    let (free, _) = space(config);
    free < REOPEN_MIN_FREE
}

/// Bytes available to this (unprivileged) process on the file system holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> nix::Result<u64> {
    let stats = nix::sys::statvfs::statvfs(dir)?;
    Ok(stats
        .blocks_available()
        .saturating_mul(stats.fragment_size()))
}

fn backend_name(config: &Config) -> &'static str {
    if crate::cluster::is_embedded(config) {
        "sled"
    } else {
        "postgres"
    }
}

/// Lets a repeated log line through at most once per period; counts the ones held back.
struct Throttle {
    period: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    fn new(period: Duration) -> Throttle {
        Throttle {
            period,
            last: None,
            held: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged now.
    fn pass(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < self.period) {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}
