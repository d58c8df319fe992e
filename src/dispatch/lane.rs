//! A lane: the loop that feeds one endpoint's attempts, within that endpoint's concurrency limit.
//!
//! A permit is acquired *before* a message is leased, so a lane never holds more leased messages than it can
//! send. With no permit free (a hanging receiver) the lane simply waits; other lanes are unaffected.

use std::sync::Arc;
use std::time::Duration;

use std::sync::RwLock;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::attempt::run_attempt;
use super::{DispatchContext, LaneStatus, read_status, verify, write_status};
use crate::config::EndpointConfig;
use crate::model::now_millis;
use crate::store::Lease;

/// Extra lease time beyond the request timeout; leases only matter to a restart, which releases them all.
const LEASE_MARGIN_MS: u64 = 30_000;
/// How often an unverified endpoint's handshake is tried again without an operator asking.
const VERIFY_RETRY: Duration = Duration::from_secs(300);
/// How long a lane waits before asking a failing store again.
const STORE_RETRY: Duration = Duration::from_secs(1);

pub(super) struct Lane {
    pub context: Arc<DispatchContext>,
    pub name: String,
    /// The endpoint's live settings; `PUT /v1/endpoints/{name}` replaces them while the lane runs.
    pub settings: watch::Receiver<Arc<EndpointConfig>>,
    /// Nudged by enqueues, replays and this lane's own retries, so the lane re-reads its next due time.
    pub wake: Arc<Notify>,
    /// Nudged when an operator ran the verification handshake.
    pub recheck: Arc<Notify>,
    pub status: Arc<RwLock<LaneStatus>>,
    pub shutdown: CancellationToken,
}

impl Lane {
    pub async fn run(self) {
        // Concurrency is fixed for the lane's life (a config file setting, not a run-time one).
        let permits = Arc::new(Semaphore::new(self.current().concurrency));
        let mut attempts = JoinSet::new();
        let mut changes = self.settings.clone();
        let mut settings_dirty = false;
        let name = self.name.as_str();
        tracing::debug!(endpoint = name, "lane started");
        if !self.wait_until_verified().await {
            return;
        }
        loop {
            while attempts.try_join_next().is_some() {}
            // New settings (a new URL or key), or a failed re-verification: no sending until verified.
            let settings_changed = settings_dirty || changes.has_changed().unwrap_or(false);
            if settings_changed {
                changes.borrow_and_update();
                settings_dirty = false;
            }
            if (settings_changed || read_status(&self.status) != LaneStatus::Active)
                && !self.wait_until_verified().await
            {
                break;
            }
            let permit = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let endpoint = self.current();
            let now = now_millis();
            let lease_until = now + endpoint.timeout.as_millis() as u64 + LEASE_MARGIN_MS;
            let batch_max = endpoint.batch_max;
            let sleep_for = match self
                .context
                .store
                .lease_due(name, now, batch_max, lease_until)
            {
                Ok(Lease::Taken(mut messages)) => {
                    if messages.len() < batch_max {
                        self.fill_batch(&endpoint, &mut messages).await;
                    }
                    attempts.spawn(run_attempt(
                        Arc::clone(&self.context),
                        Arc::clone(&endpoint),
                        messages,
                        Arc::clone(&self.wake),
                        permit,
                    ));
                    continue;
                }
                Ok(Lease::NextDueAt(due_at)) => {
                    Some(Duration::from_millis(due_at.saturating_sub(now)))
                }
                Ok(Lease::Idle) => None,
                Err(error) => {
                    tracing::error!(endpoint = name, %error, "lane cannot read the store");
                    Some(STORE_RETRY)
                }
            };
            drop(permit);
            let sleep = async {
                match sleep_for {
                    Some(duration) => tokio::time::sleep(duration).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = sleep => {}
                changed = changes.changed() => match changed {
                    Ok(()) => settings_dirty = true,
                    // The API is gone (shutdown): no more changes can come.
                    Err(_) => break,
                },
            }
        }
        self.finish(attempts).await;
    }

    /// The endpoint's settings now.
    fn current(&self) -> Arc<EndpointConfig> {
        Arc::clone(&self.settings.borrow())
    }

    /// Holds the lane until the endpoint passed its verification handshake (at once when it needs none or
    /// passed before). Returns false when shutdown came first.
    async fn wait_until_verified(&self) -> bool {
        loop {
            let endpoint = self.current();
            if verify::already_verified(&self.context, &endpoint) {
                write_status(&self.status, LaneStatus::Active);
                return true;
            }
            let status = verify::verify_now(&self.context, &endpoint, &self.status).await;
            if status == LaneStatus::Active {
                return true;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = self.recheck.notified() => {}
                _ = tokio::time::sleep(VERIFY_RETRY) => {}
            }
        }
    }

    /// For batching formats: waits up to `batch_linger` for more due messages (woken by enqueues) so one
    /// request carries up to `batch_max` of them.
    async fn fill_batch(
        &self,
        endpoint: &EndpointConfig,
        messages: &mut Vec<crate::model::MessageRecord>,
    ) {
        let batch_max = endpoint.batch_max;
        let deadline = tokio::time::Instant::now() + endpoint.batch_linger;
        while messages.len() < batch_max {
            let woken = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.wake.notified() => true,
                _ = tokio::time::sleep_until(deadline) => false,
            };
            let now = now_millis();
            let lease_until = now + endpoint.timeout.as_millis() as u64 + LEASE_MARGIN_MS;
            let room = batch_max - messages.len();
            match self
                .context
                .store
                .lease_due(&self.name, now, room, lease_until)
            {
                Ok(Lease::Taken(more)) => messages.extend(more),
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(endpoint = %self.name, %error, "lane cannot read the store");
                    return;
                }
            }
            if !woken {
                return;
            }
        }
    }

    /// Lets in-flight attempts finish within the grace period, then aborts the rest and releases their
    /// messages back to due (no attempt counted).
    async fn finish(&self, mut attempts: JoinSet<()>) {
        let name = self.name.as_str();
        let grace = self.context.shutdown_grace;
        let all_done = async { while attempts.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            tracing::warn!(
                endpoint = name,
                "grace period over; aborting attempts still in flight"
            );
            attempts.shutdown().await;
        }
        tracing::debug!(endpoint = name, "lane stopped");
    }
}
