//! The dispatcher: one lane per endpoint, each taking its own due messages from the store.
//!
//! There is no central scheduler to block: every lane reads only its endpoint's slice of the due index, holds
//! its own concurrency limit, and sleeps until its next due time or until woken by an enqueue, a replay or a
//! retry. A receiver that hangs fills only its own lane's permits. The dispatcher never awaits a receiver
//! itself; attempts run as tasks of their lane (see [`attempt`]).

mod attempt;
mod lane;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::EndpointConfig;
use crate::http_client::HttpSender;
use crate::store::Store;

/// What every lane shares.
#[derive(Debug)]
pub struct DispatchContext {
    pub store: Store,
    pub sender: HttpSender,
    /// The cap on a receiver's `Retry-After`.
    pub max_retry_after: Duration,
    /// How long in-flight attempts may finish after shutdown begins.
    pub shutdown_grace: Duration,
}

/// Whether a lane is sending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaneStatus {
    Active,
    /// The verification handshake has not passed (seed 002); messages wait, nothing is dropped.
    Unverified {
        reason: String,
    },
}

/// One running lane as seen from outside.
#[derive(Debug)]
struct LaneHandle {
    /// The live settings; replacing them reaches the lane at once.
    settings: watch::Sender<Arc<EndpointConfig>>,
    /// Nudges the lane to re-read its due messages.
    wake: Arc<Notify>,
    /// Nudges a lane waiting for verification to look again.
    recheck: Arc<Notify>,
    status: Arc<RwLock<LaneStatus>>,
}

/// Handles to the running lanes: wake them, or wait for them to stop.
#[derive(Debug)]
pub struct Dispatcher {
    lanes: Lanes,
    tasks: JoinSet<()>,
}

impl Dispatcher {
    /// Starts a lane for each endpoint; they stop when `shutdown` is cancelled.
    pub fn start(
        context: Arc<DispatchContext>,
        endpoints: &[EndpointConfig],
        shutdown: CancellationToken,
    ) -> Dispatcher {
        let mut handles = HashMap::new();
        let mut tasks = JoinSet::new();
        for endpoint in endpoints {
            let initial = match endpoint.verification {
                Some(_) => LaneStatus::Unverified {
                    reason: "verification handshake not yet run".into(),
                },
                None => LaneStatus::Active,
            };
            let (settings, settings_rx) = watch::channel(Arc::new(endpoint.clone()));
            let handle = LaneHandle {
                settings,
                wake: Arc::new(Notify::new()),
                recheck: Arc::new(Notify::new()),
                status: Arc::new(RwLock::new(initial)),
            };
            let lane = lane::Lane {
                context: Arc::clone(&context),
                name: endpoint.name.clone(),
                settings: settings_rx,
                wake: Arc::clone(&handle.wake),
                recheck: Arc::clone(&handle.recheck),
                status: Arc::clone(&handle.status),
                shutdown: shutdown.clone(),
            };
            tasks.spawn(lane.run());
            handles.insert(endpoint.name.clone(), handle);
        }
        Dispatcher {
            lanes: Lanes {
                handles: Arc::new(handles),
                context,
            },
            tasks,
        }
    }

    /// A cheap handle for the API: wake lanes, read their status, run a verification.
    pub fn lanes(&self) -> Lanes {
        self.lanes.clone()
    }

    /// Waits until every lane has stopped (after shutdown was cancelled).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Cheap, cloneable access to the running lanes.
#[derive(Clone, Debug)]
pub struct Lanes {
    handles: Arc<HashMap<String, LaneHandle>>,
    context: Arc<DispatchContext>,
}

impl Lanes {
    /// Tells the endpoint's lane there may be due work. Unknown endpoints have no lane: nothing to wake.
    pub fn wake(&self, endpoint: &str) {
        if let Some(handle) = self.handles.get(endpoint) {
            handle.wake.notify_one();
        }
    }

    /// The lane's status; `None` when no lane runs for the endpoint (its queued messages are held).
    pub fn status(&self, endpoint: &str) -> Option<LaneStatus> {
        let handle = self.handles.get(endpoint)?;
        Some(read_status(&handle.status))
    }

    /// Whether the endpoint's lane is sending (otherwise its queued messages are held).
    pub fn is_active(&self, endpoint: &str) -> bool {
        self.status(endpoint) == Some(LaneStatus::Active)
    }

    /// The endpoint's live settings, when a lane runs for it.
    pub fn endpoint(&self, name: &str) -> Option<Arc<EndpointConfig>> {
        self.handles
            .get(name)
            .map(|h| Arc::clone(&h.settings.borrow()))
    }

    /// Replaces an endpoint's live settings; its lane re-verifies if the URL changed, and looks for work.
    pub fn update(&self, endpoint: EndpointConfig) {
        if let Some(handle) = self.handles.get(&endpoint.name) {
            handle.settings.send_replace(Arc::new(endpoint));
            handle.wake.notify_one();
        }
    }

    /// Runs the endpoint's verification handshake now and lets its lane go on if it passed.
    /// `None` when the endpoint has no lane or no verification.
    pub async fn verify(&self, endpoint: &str) -> Option<LaneStatus> {
        let handle = self.handles.get(endpoint)?;
        let settings = Arc::clone(&handle.settings.borrow());
        settings.verification.as_ref()?;
        let status = verify::verify_now(&self.context, &settings, &handle.status).await;
        handle.recheck.notify_one();
        Some(status)
    }
}

/// Reads a status lock; a poisoned lock still holds the last status written.
fn read_status(status: &RwLock<LaneStatus>) -> LaneStatus {
    match status.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn write_status(status: &RwLock<LaneStatus>, value: LaneStatus) {
    match status.write() {
        Ok(mut guard) => *guard = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}
