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
mod clearance;
mod endpoint_changes;
pub mod health;
mod lane;
mod lane_wait;
mod places;
mod registry;
mod verify;

pub use endpoint_changes::upgrade_stored_endpoints;
pub use registry::{EndpointError, Lanes, Origin};

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http_client::HttpSender;
use crate::model::Millis;
use crate::store::{Store, StoreError};
use crate::telemetry::EndpointChange;
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
    /// The receiver answered 429 (or 503) with `Retry-After`: nothing new is sent before `until` (Unix ms).
    Throttled {
        until: Millis,
    },
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
            LaneStatus::Throttled { .. } => "throttled",
        }
    }

    /// Every name [`LaneStatus::name`] can give.
    pub const NAMES: [&'static str; 7] = [
        "active",
        "unverified",
        "paused",
        "disabled",
        "circuit_open",
        "probing",
        "throttled",
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
    /// The endpoints' registry, for a 410's disable (weak: the registry holds the lanes).
    registry: Weak<registry::Registry>,
    /// Nudged when an attempt changed the circuit, so a lane awaiting its probe looks again.
    health_changed: Notify,
    status: RwLock<LaneStatus>,
    /// Until when the receiver asked the endpoint to wait (a 429, or a 503, with `Retry-After`).
    throttle: Mutex<Option<Millis>>,
    /// Where the circuit's changes are told to `hookd tail`.
    telemetry: Arc<crate::telemetry::Telemetry>,
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
                CircuitState::Open { until } => {
                    tracing::warn!(
                        endpoint = %self.name,
                        failures,
                        retry_in_ms = until.saturating_sub(now),
                        "circuit opened: endpoint failing; messages wait"
                    );
                    self.telemetry.endpoint_changed(
                        &self.name,
                        EndpointChange::CircuitOpened,
                        Some(format!(
                            "{failures} consecutive failures; probing again in {} ms",
                            until.saturating_sub(now)
                        )),
                    );
                }
                CircuitState::Closed => {
                    tracing::info!(endpoint = %self.name, "circuit closed: endpoint answers again");
                    self.telemetry.endpoint_changed(
                        &self.name,
                        EndpointChange::CircuitClosed,
                        None,
                    );
                }
                CircuitState::Probing => {}
            }
            self.health_changed.notify_one();
        }
    }

    /// The receiver asked the endpoint to wait until `until` (a 429 or 503 with `Retry-After`, capped and
    /// jittered by the attempt): the lane sends nothing new before then. A later time replaces an earlier one.
    pub fn throttle(&self, until: Millis, now: Millis) {
        let started = {
            let mut throttle = lock(&self.throttle);
            let started = throttle.is_none_or(|at| at <= now);
            if throttle.is_none_or(|at| at < until) {
                *throttle = Some(until);
            }
            started
        };
        if started {
            tracing::warn!(
                endpoint = %self.name,
                until = %crate::model::rfc3339(until),
                wait_ms = until.saturating_sub(now),
                "throttling started: the receiver asked to wait; nothing new is sent to it until then"
            );
        }
        self.health_changed.notify_one();
    }

    /// Until when the lane waits at `now`, if it is throttled; the end of a throttle that has passed is
    /// noted (logged) once.
    fn throttled_until(&self, now: Millis) -> Option<Millis> {
        let mut throttle = lock(&self.throttle);
        match *throttle {
            Some(until) if now < until => Some(until),
            Some(_) => {
                *throttle = None;
                tracing::info!(endpoint = %self.name, "throttling ended: sending again");
                None
            }
            None => None,
        }
    }

    /// An attempt ended before its answer was noted: were it the circuit's probe, the circuit probes again.
    pub fn probe_lost(&self, now: Millis) {
        lock(&self.circuit).probe_not_sent(now);
        self.health_changed.notify_one();
    }

    fn circuit(&self) -> CircuitView {
        let circuit = lock(&self.circuit);
        CircuitView {
            state: circuit.state(),
            consecutive_failures: circuit.consecutive_failures(),
        }
    }

    /// A receiver answered 410 Gone: stop sending to it until an operator enables it again.
    pub async fn disable(&self, reason: String) -> Result<(), StoreError> {
        tracing::warn!(endpoint = %self.name, %reason, "endpoint disabled; messages kept until `hookd endpoints enable`");
        self.telemetry
            .endpoint_changed(&self.name, EndpointChange::Disabled, Some(reason.clone()));
        match self.registry.upgrade() {
            Some(registry) => Lanes::from(registry)
                .change_control(&self.name, |c| c.disabled = Some(reason.clone()))
                .await
                .map(|_| ()),
            // The daemon is stopping: the next start sends again and meets the 410 again.
            None => Ok(()),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Starts and stops the lanes: a lane runs while its endpoint has messages queued or in flight.
#[derive(Debug)]
pub struct Dispatcher {
    lanes: Lanes,
}

impl Dispatcher {
    /// Registers every endpoint (the config file's, with their run-time overrides, and those created
    /// through the API) and starts a lane for each that has messages queued; lanes stop when `shutdown` is
    /// cancelled.
    pub fn start(
        context: Arc<DispatchContext>,
        config: Arc<Config>,
        shutdown: CancellationToken,
    ) -> Result<Dispatcher, StoreError> {
        let lanes = Lanes::load(context, config, shutdown)?;
        Ok(Dispatcher { lanes })
    }

    /// A cheap handle for the API: wake lanes, read their status, change endpoints.
    pub fn lanes(&self) -> Lanes {
        self.lanes.clone()
    }

    /// Waits until every lane has stopped (after shutdown was cancelled).
    pub async fn join(self) {
        self.lanes.join().await;
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
