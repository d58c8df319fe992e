//! The dispatcher: one lane per endpoint, each taking its own due messages from the store.
//!
//! There is no central scheduler to block: every lane reads only its endpoint's slice of the due index, holds
//! its own concurrency limit, and sleeps until its next due time or until woken by an enqueue, a replay or a
//! retry. A receiver that hangs fills only its own lane's permits. The dispatcher never awaits a receiver
//! itself; attempts run as tasks of their lane (see [`attempt`]).

mod attempt;
mod lane;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
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

/// Handles to the running lanes: wake them, or wait for them to stop.
#[derive(Debug)]
pub struct Dispatcher {
    wakers: HashMap<String, Arc<Notify>>,
    lanes: JoinSet<()>,
}

impl Dispatcher {
    /// Starts a lane for each endpoint; they stop when `shutdown` is cancelled.
    pub fn start(
        context: Arc<DispatchContext>,
        endpoints: &[EndpointConfig],
        shutdown: CancellationToken,
    ) -> Dispatcher {
        let mut wakers = HashMap::new();
        let mut lanes = JoinSet::new();
        for endpoint in endpoints {
            let wake = Arc::new(Notify::new());
            wakers.insert(endpoint.name.clone(), Arc::clone(&wake));
            let lane = lane::Lane {
                context: Arc::clone(&context),
                endpoint: Arc::new(endpoint.clone()),
                wake,
                shutdown: shutdown.clone(),
            };
            lanes.spawn(lane.run());
        }
        Dispatcher { wakers, lanes }
    }

    /// The waker of each lane, for the API to nudge after enqueues and replays.
    pub fn wakers(&self) -> Wakers {
        Wakers(Arc::new(self.wakers.clone()))
    }

    /// Waits until every lane has stopped (after shutdown was cancelled).
    pub async fn join(mut self) {
        while self.lanes.join_next().await.is_some() {}
    }
}

/// Cheap, cloneable access to the lanes' wakers.
#[derive(Clone, Debug, Default)]
pub struct Wakers(Arc<HashMap<String, Arc<Notify>>>);

impl Wakers {
    /// Tells the endpoint's lane there may be due work. Unknown endpoints have no lane: nothing to wake.
    pub fn wake(&self, endpoint: &str) {
        if let Some(notify) = self.0.get(endpoint) {
            notify.notify_one();
        }
    }

    /// Whether a lane is running for the endpoint (otherwise its queued messages are held).
    pub fn has_lane(&self, endpoint: &str) -> bool {
        self.0.contains_key(endpoint)
    }
}
