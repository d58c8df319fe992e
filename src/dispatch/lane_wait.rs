//! What a lane waits for between leases, and what ended the wait.
//!
//! A lane leases again only when something may have made a message due: a wake (an enqueue, a replay, a
//! scheduled retry, a lease given back or swept), a control or settings change, a timer it set, or, while it
//! waits for a place, an attempt's end. A lane whose lease took the last of its endpoint's queue waits
//! without watching its attempts at all ([`Lane::wait_drained`]): one of ten thousand endpoints taking
//! turns then costs its lane one poll per message, not three.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::lane::{IDLE_GRACE, Lane};
use crate::config::EndpointConfig;

impl Lane {
    /// Waits for news: a wake (an enqueue, replay, retry or give-back), a control or settings change, the end
    /// of one of `attempts`, or `sleep_for`.
    pub(super) async fn wait(
        &mut self,
        sleep_for: Option<Duration>,
        mut attempts: Option<&mut JoinSet<()>>,
        changes: &mut watch::Receiver<Arc<EndpointConfig>>,
    ) -> Woken {
        let sleep = async {
            match sleep_for {
                Some(duration) => tokio::time::sleep(duration).await,
                None => std::future::pending().await,
            }
        };
        let watching = attempts
            .as_ref()
            .is_some_and(|attempts| !attempts.is_empty());
        let ended = async {
            match attempts.as_mut() {
                Some(attempts) => attempts.join_next().await,
                None => None,
            }
        };
        tokio::select! {
            _ = self.shutdown.cancelled() => Woken::Shutdown,
            _ = self.wake.notified() => Woken::Work,
            _ = self.control.changed() => Woken::Work,
            _ = sleep => Woken::Work,
            // An ended attempt: the lane may have nothing left and stop.
            Some(ended) = ended, if watching => {
                note_ended(&self.name, ended);
                Woken::Work
            }
            changed = changes.changed() => match changed {
                Ok(()) => Woken::Settings,
                // The API is gone (shutdown): no more changes can come.
                Err(_) => Woken::Shutdown,
            },
        }
    }

    /// After a lease took the last of the endpoint's queue: waits without leasing until something wakes the
    /// lane, or for [`IDLE_GRACE`] (the lane then leases, and retires if it finds nothing and has no attempt
    /// left). Every way a message becomes due again wakes the lane (an enqueue, a replay, a scheduled retry,
    /// a lease given back or swept), so nothing due waits here. The lane's attempts end meanwhile without
    /// waking it: there is nothing to do when they do.
    pub(super) async fn wait_drained(
        &mut self,
        changes: &mut watch::Receiver<Arc<EndpointConfig>>,
        idle_until: &mut Option<tokio::time::Instant>,
    ) -> Woken {
        let now = tokio::time::Instant::now();
        let until = *idle_until.get_or_insert(now + IDLE_GRACE);
        self.wait(Some(until.saturating_duration_since(now)), None, changes)
            .await
    }
}

/// What ended a lane's wait.
pub(super) enum Woken {
    /// Look again: a wake, a control change (pause, resume, disable), the wait's own time (a message's due
    /// time, the idle grace, a store retry) or an attempt's end.
    Work,
    /// The endpoint's settings changed.
    Settings,
    /// The lane must stop.
    Shutdown,
}

/// Logs an attempt task that did not end normally (its guard gave its messages back).
pub(super) fn note_ended(endpoint: &str, ended: Result<(), tokio::task::JoinError>) {
    if let Err(error) = ended
        && error.is_panic()
    {
        tracing::error!(endpoint, "an attempt panicked; its messages are due again");
    }
}
