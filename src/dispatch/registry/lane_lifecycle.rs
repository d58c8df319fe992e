//! Starting and stopping lanes: a wake starts an endpoint's lane when none runs, an idle lane retires under
//! the same lock, a deleted endpoint's lane is stopped, and shutdown waits for them all. Apart from the types
//! because this is the part that must keep "a message queued while a lane stops always finds a lane".

use std::sync::{Arc, Mutex, RwLock};

use futures_util::FutureExt as _;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::{LaneHandle, Lanes, Registered, read};
use crate::dispatch::health::Circuit;
use crate::dispatch::{LaneShared, LaneStatus, lane, lock};

impl Lanes {
    /// Tells the endpoint's lane there may be due work, starting the lane if it is not running. Unknown
    /// endpoints have no lane: their messages are held.
    pub fn wake(&self, endpoint: &str) {
        let endpoints = read(&self.inner.endpoints);
        let Some(registered) = endpoints.get(endpoint) else {
            return;
        };
        let mut running = lock(&self.inner.running);
        if let Some(lane) = running.get(endpoint) {
            lane.wake.notify_one();
            return;
        }
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        let handle = self.spawn(endpoint, registered);
        running.insert(endpoint.to_owned(), handle);
    }

    fn spawn(&self, name: &str, registered: &Registered) -> LaneHandle {
        let config = &registered.config;
        let initial = match config.verification {
            Some(_) => LaneStatus::Unverified {
                reason: "verification handshake not yet run".into(),
            },
            None => LaneStatus::Active,
        };
        let (settings, settings_rx) = watch::channel(Arc::clone(config));
        let (control, control_rx) = watch::channel(registered.control.clone());
        let shared = Arc::new(LaneShared {
            name: name.to_owned(),
            circuit: Mutex::new(Circuit::new(config.circuit_breaker)),
            registry: Arc::downgrade(&self.inner),
            health_changed: Notify::new(),
            status: RwLock::new(initial),
            throttle: Mutex::new(None),
            telemetry: Arc::clone(&self.inner.context.telemetry),
        });
        let handle = LaneHandle {
            settings,
            control,
            wake: Arc::new(Notify::new()),
            recheck: Arc::new(Notify::new()),
            shared: Arc::clone(&shared),
            stop: self.inner.shutdown.child_token(),
            stopped: CancellationToken::new(),
        };
        let lane = lane::Lane {
            context: Arc::clone(&self.inner.context),
            name: name.to_owned(),
            settings: settings_rx,
            control: control_rx,
            wake: Arc::clone(&handle.wake),
            recheck: Arc::clone(&handle.recheck),
            shared,
            shutdown: handle.stop.clone(),
            stopped: handle.stopped.clone(),
            lanes: self.clone(),
        };
        self.inner.tasks.spawn(lane.run());
        handle
    }

    /// Called by an idle lane (nothing leasable, no attempt running): true when the lane may stop, because
    /// its endpoint has nothing queued or in flight; its handle is then gone, so the next wake starts a new one.
    ///
    /// A wake that came since the lane last looked keeps it running: [`Lanes::wake`] notifies under the same
    /// lock, so a wake either lands here (and is seen) or finds the lane gone (and starts another). This
    /// matters with a shared store, whose counts lag the other nodes' enqueues: an enqueue another node
    /// committed while this lane was deciding it had nothing left is known only by its wake.
    pub(in crate::dispatch) fn retire(&self, endpoint: &str, wake: &Arc<Notify>) -> bool {
        let mut running = lock(&self.inner.running);
        if self.inner.context.store.has_queued(endpoint) {
            return false;
        }
        if wake.notified().now_or_never().is_some() {
            // That took the wake: put it back for the lane's wait, so that it looks again at once.
            wake.notify_one();
            return false;
        }
        match running.get(endpoint) {
            Some(lane) if Arc::ptr_eq(&lane.wake, wake) => {
                running.remove(endpoint);
                true
            }
            _ => true,
        }
    }

    /// Stops the endpoint's lane (if it runs) and waits until it has.
    pub(in crate::dispatch) async fn stop_lane(&self, endpoint: &str) {
        let handle = lock(&self.inner.running).remove(endpoint);
        if let Some(handle) = handle {
            handle.stop.cancel();
            handle.stopped.cancelled().await;
        }
    }

    /// Waits until every lane has stopped (after shutdown was cancelled).
    pub(in crate::dispatch) async fn join(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}
