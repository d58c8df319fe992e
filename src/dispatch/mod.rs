//! The dispatcher: one lane per endpoint, each taking its own due messages from the store.
//!
//! There is no central scheduler to block: every lane reads only its endpoint's slice of the due index, holds
//! its own concurrency limit, and sleeps until its next due time or until woken by an enqueue, a replay or a
//! retry. A receiver that hangs fills only its own lane's places. The dispatcher never awaits a receiver
//! itself; attempts run as tasks of their lane (see [`attempt`]).
//!
//! Whether a lane sends at all is decided, in this order, by its operator control (paused, or disabled by a
//! 410 Gone), its verification handshake, and its circuit breaker ([`health`]); all three keep messages
//! queued without spending their attempts.

mod attempt;
pub mod health;
mod lane;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::EndpointConfig;
use crate::http_client::HttpSender;
use crate::model::Millis;
use crate::store::{Store, StoreError};
use health::{Circuit, CircuitState, Health};

/// What every lane shares.
#[derive(Debug)]
pub struct DispatchContext {
    pub store: Store,
    pub sender: HttpSender,
    /// The cap on a receiver's `Retry-After`.
    pub max_retry_after: Duration,
    /// How long in-flight attempts may finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Counts every attempt's outcome and feeds `hookd tail`; shared with the API.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

/// Whether a lane is sending, and if not, why. Messages of a lane that is not active wait (`held`), with
/// their attempts untouched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaneStatus {
    Active,
    /// The verification handshake has not passed (seed 002).
    Unverified {
        reason: String,
    },
    /// An operator paused the endpoint (`hookd endpoints pause`).
    Paused,
    /// The receiver answered 410 Gone, or an operator disabled it; `hookd endpoints enable` resumes.
    Disabled {
        reason: String,
    },
    /// Too many consecutive failures: nothing is sent before `until` (Unix ms).
    CircuitOpen {
        until: Millis,
        failures: u32,
    },
    /// The circuit's cooldown is over and one probe message is being sent.
    Probing,
}

impl LaneStatus {
    /// A stable one-word name, for scripts and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            LaneStatus::Active => "active",
            LaneStatus::Unverified { .. } => "unverified",
            LaneStatus::Paused => "paused",
            LaneStatus::Disabled { .. } => "disabled",
            LaneStatus::CircuitOpen { .. } => "circuit_open",
            LaneStatus::Probing => "probing",
        }
    }

    /// Every name [`LaneStatus::name`] can give.
    pub const NAMES: [&'static str; 6] = [
        "active",
        "unverified",
        "paused",
        "disabled",
        "circuit_open",
        "probing",
    ];
}

/// What an operator (or a 410 Gone) decided about an endpoint; kept in the store across restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Control {
    pub paused: bool,
    /// Why the endpoint is disabled, while it is.
    pub disabled: Option<String>,
}

/// A change to an endpoint's [`Control`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlChange {
    Pause,
    Resume,
    Enable,
}

/// The circuit as shown to operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitView {
    pub state: CircuitState,
    pub consecutive_failures: u32,
}

/// What a lane shares with its attempts and with the API.
#[derive(Debug)]
pub(crate) struct LaneShared {
    pub name: String,
    circuit: Mutex<Circuit>,
    /// Paused / disabled; the lane watches it so a change reaches it at once.
    control: watch::Sender<Control>,
    /// Nudged when an attempt changed the circuit, so a lane awaiting its probe looks again.
    health_changed: Notify,
    status: RwLock<LaneStatus>,
}

impl LaneShared {
    /// Records what an answer says about the receiver's health.
    pub fn record_health(&self, health: Health, now: Millis) {
        let (changed, state, failures) = {
            let mut circuit = lock(&self.circuit);
            let changed = circuit.record(health, now);
            (changed, circuit.state(), circuit.consecutive_failures())
        };
        if changed {
            match state {
                CircuitState::Open { until } => tracing::warn!(
                    endpoint = %self.name,
                    failures,
                    retry_in_ms = until.saturating_sub(now),
                    "circuit opened: endpoint failing; messages wait"
                ),
                CircuitState::Closed => {
                    tracing::info!(endpoint = %self.name, "circuit closed: endpoint answers again")
                }
                CircuitState::Probing => {}
            }
            self.health_changed.notify_one();
        }
    }

    fn circuit(&self) -> CircuitView {
        let circuit = lock(&self.circuit);
        CircuitView {
            state: circuit.state(),
            consecutive_failures: circuit.consecutive_failures(),
        }
    }

    /// Applies and persists a control change; answers the new control.
    async fn change_control(
        &self,
        store: &Store,
        change: impl FnOnce(&mut Control),
    ) -> Result<Control, StoreError> {
        let mut stored = store.endpoint_state(&self.name)?;
        let mut control = Control {
            paused: stored.paused,
            disabled: stored.disabled.clone(),
        };
        change(&mut control);
        stored.paused = control.paused;
        stored.disabled = control.disabled.clone();
        store.set_endpoint_state(&self.name, &stored).await?;
        self.control.send_replace(control.clone());
        Ok(control)
    }

    /// A receiver answered 410 Gone: stop sending to it until an operator enables it again.
    pub async fn disable(&self, store: &Store, reason: String) -> Result<(), StoreError> {
        tracing::warn!(endpoint = %self.name, %reason, "endpoint disabled; messages kept until `hookd endpoints enable`");
        self.change_control(store, |c| c.disabled = Some(reason))
            .await
            .map(|_| ())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
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
    shared: Arc<LaneShared>,
}

/// Handles to the running lanes: wake them, or wait for them to stop.
#[derive(Debug)]
pub struct Dispatcher {
    lanes: Lanes,
    tasks: JoinSet<()>,
}

impl Dispatcher {
    /// Starts a lane for each endpoint (paused or disabled as the store remembers them); they stop when
    /// `shutdown` is cancelled.
    pub fn start(
        context: Arc<DispatchContext>,
        endpoints: &[EndpointConfig],
        shutdown: CancellationToken,
    ) -> Result<Dispatcher, StoreError> {
        let mut handles = HashMap::new();
        let mut tasks = JoinSet::new();
        for endpoint in endpoints {
            let stored = context.store.endpoint_state(&endpoint.name)?;
            let control = Control {
                paused: stored.paused,
                disabled: stored.disabled,
            };
            let initial = match endpoint.verification {
                Some(_) => LaneStatus::Unverified {
                    reason: "verification handshake not yet run".into(),
                },
                None => LaneStatus::Active,
            };
            let (settings, settings_rx) = watch::channel(Arc::new(endpoint.clone()));
            let (control, control_rx) = watch::channel(control);
            let shared = Arc::new(LaneShared {
                name: endpoint.name.clone(),
                circuit: Mutex::new(Circuit::new(endpoint.circuit_breaker)),
                control,
                health_changed: Notify::new(),
                status: RwLock::new(initial),
            });
            let handle = LaneHandle {
                settings,
                wake: Arc::new(Notify::new()),
                recheck: Arc::new(Notify::new()),
                shared: Arc::clone(&shared),
            };
            let lane = lane::Lane {
                context: Arc::clone(&context),
                name: endpoint.name.clone(),
                settings: settings_rx,
                control: control_rx,
                wake: Arc::clone(&handle.wake),
                recheck: Arc::clone(&handle.recheck),
                shared,
                shutdown: shutdown.clone(),
            };
            tasks.spawn(lane.run());
            handles.insert(endpoint.name.clone(), handle);
        }
        Ok(Dispatcher {
            lanes: Lanes {
                handles: Arc::new(handles),
                context,
            },
            tasks,
        })
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
        Some(read_status(&handle.shared.status))
    }

    /// The endpoint's circuit breaker, when a lane runs for it.
    pub fn circuit(&self, endpoint: &str) -> Option<CircuitView> {
        self.handles.get(endpoint).map(|h| h.shared.circuit())
    }

    /// Pauses, resumes or re-enables an endpoint, durably; `None` when no lane runs for it.
    pub async fn control(
        &self,
        endpoint: &str,
        change: ControlChange,
    ) -> Option<Result<Control, StoreError>> {
        let handle = self.handles.get(endpoint)?;
        let shared = &handle.shared;
        if change == ControlChange::Enable {
            lock(&shared.circuit).reset();
        }
        let result = shared
            .change_control(&self.context.store, |control| match change {
                ControlChange::Pause => control.paused = true,
                ControlChange::Resume => control.paused = false,
                ControlChange::Enable => control.disabled = None,
            })
            .await;
        tracing::info!(endpoint, ?change, "endpoint control changed");
        handle.wake.notify_one();
        Some(result)
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
        let status = verify::verify_now(&self.context, &settings, &handle.shared.status).await;
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
