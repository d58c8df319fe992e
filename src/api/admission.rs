//! Admission: whether the daemon may accept more messages right now, checked before anything is written.
//!
//! An enqueue is refused with 503 and `Retry-After` (and nothing stored) when the store can no longer make
//! writes durable, when `max_queue_depth` messages already wait (a memory guard; the answer names the
//! endpoints that hold the most), or when the data dir's file system has less than `min_free_disk_bytes`
//! free. Each endpoint also has its own bound, `max_queued`: past it, that endpoint's enqueues and replays get
//! 429 `endpoint_full` while every other endpoint's go on, so one receiver down for a day fills only its own
//! share. The disk check matters because sled 0.34 treats a failed write as
//! permanent for the open store (the daemon stops delivering until it can reopen it): stopping enqueues
//! before the disk is full keeps deliveries (which need small writes) going, and lets enqueues resume by
//! themselves once space returns.

use axum::http::StatusCode;

use super::AppState;
use super::error::{ApiError, STORE_RETRY_AFTER_SECS};
use crate::config::EndpointConfig;

/// What a client is told to wait when the queue is full.
const QUEUE_FULL_RETRY_AFTER_SECS: u64 = 1;
/// What a client is told to wait when the disk is nearly full.
const DISK_FULL_RETRY_AFTER_SECS: u64 = 10;

/// Checks that `count` more messages of `bytes` payload bytes in all may be accepted.
pub(super) fn admit(state: &AppState, count: u64, bytes: u64) -> Result<(), ApiError> {
    let embedded = crate::cluster::is_embedded(&state.config);
    if let Some(failure) = state.store.latched_failure() {
        return Err(ApiError::store_down(&failure));
    }
    if let Some(failure) = state.store.failure() {
        // sled's failure lasts until the store is reopened; PostgreSQL's until the database can be reached.
        let message = if embedded {
            format!("the store cannot make writes durable ({failure})")
        } else {
            format!("the database cannot be reached ({failure}); retry later")
        };
        return Err(ApiError::unavailable(
            "store_unavailable",
            message,
            STORE_RETRY_AFTER_SECS,
        ));
    }
    let pending = state.store.pending();
    let max = state.config.max_queue_depth;
    if pending.saturating_add(count) > max {
        let most: Vec<String> = state
            .store
            .most_pending(3)
            .into_iter()
            .map(|(endpoint, n)| format!("{endpoint} ({n})"))
            .collect();
        return Err(ApiError::unavailable(
            "queue_full",
            format!(
                "{pending} messages are waiting (max_queue_depth {max}); most are held for: {}; retry later",
                most.join(", ")
            ),
            QUEUE_FULL_RETRY_AFTER_SECS,
        ));
    }
    // The free space that matters is the data dir's only when the queue is in it (sled): PostgreSQL's disk is
    // the database server's, and the data dir need not even exist then.
    let keep = state.config.min_free_disk_bytes;
    if keep > 0 && embedded {
        match crate::daemon::free_bytes(&state.config.data_dir) {
            Ok(free) if free < keep.saturating_add(bytes) => {
                return Err(ApiError::unavailable(
                    "disk_full",
                    format!(
                        "the data dir's disk has {free} bytes free, below min_free_disk_bytes {keep}; retry later"
                    ),
                    DISK_FULL_RETRY_AFTER_SECS,
                ));
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read the data dir's free space; not checked");
            }
        }
    }
    Ok(())
}

/// Checks that `count` more messages may wait for `endpoint` (its `max_queued`): 429 `endpoint_full`.
pub(super) fn admit_to(
    state: &AppState,
    endpoint: &EndpointConfig,
    count: u64,
) -> Result<(), ApiError> {
    let pending = state.store.pending_of(&endpoint.name);
    let max = endpoint.max_queued;
    if pending.saturating_add(count) > max {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "endpoint_full",
            format!(
                "endpoint `{}` has {pending} messages waiting (its max_queued is {max}); retry later",
                endpoint.name
            ),
        );
        error.retry_after = Some(QUEUE_FULL_RETRY_AFTER_SECS);
        return Err(error);
    }
    Ok(())
}
