//! The endpoints' registry: every endpoint the daemon knows, and the lanes of those that have work.
//!
//! Endpoints are data. The config file declares some (with run-time overrides kept in the store), the API
//! creates, changes and deletes the others (their whole table kept in the store). Each change is swapped
//! into the store's endpoint record atomically and made durable, and only then read back into memory
//! ([`Lanes::refresh`]): whatever order concurrent changes finish in, memory ends as the store does.
//!
//! An endpoint costs its validated settings and nothing else while it has nothing queued: no task, timer or
//! channel. Its lane starts when an enqueue, replay or retry wakes it ([`Lanes::wake`]) and stops once the
//! endpoint has nothing queued or in flight. Waking and stopping take the same lock and the stop re-checks the
//! due index under it, so a message queued while a lane stops always finds a lane.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use futures_util::FutureExt as _;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::health::{Circuit, CircuitState};
use super::{
    CircuitView, Control, DispatchContext, LaneShared, LaneStatus, lane, lock, read_status, verify,
};
use crate::config::{Config, EndpointConfig};
use crate::endpoint_spec::SpecError;
use crate::guard::DestinationGuard;
use crate::store::{EndpointState, StoreError};

/// Where an endpoint is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An `[[endpoints]]` table of the config file (run-time overrides laid over it).
    Config,
    /// Created through the API; its table lives in the store.
    Api,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Api => "api",
        }
    }
}

/// Why a change to the endpoints was refused.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("an endpoint named `{0}` exists already")]
    Exists(String),
    #[error("no endpoint named `{0}`")]
    Unknown(String),
    #[error(transparent)]
    Invalid(#[from] SpecError),
    #[error(
        "endpoint `{0}` is declared in the config file: remove it there (and restart) to delete it"
    )]
    Declared(String),
    #[error("endpoint `{0}` was created through the API: it has no config-file table to reset to")]
    NotDeclared(String),
    #[error(
        "endpoint `{name}` has {waiting} messages queued, held or in flight: pass messages=dead-letter or messages=purge"
    )]
    NotEmpty { name: String, waiting: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A known endpoint as memory keeps it: what it takes to run it, nothing more.
#[derive(Debug)]
pub(super) struct Registered {
    pub(super) config: Arc<EndpointConfig>,
    pub(super) origin: Origin,
    pub(super) control: Control,
}

/// A running lane as seen from outside.
#[derive(Debug)]
pub(super) struct LaneHandle {
    pub(super) settings: watch::Sender<Arc<EndpointConfig>>,
    pub(super) control: watch::Sender<Control>,
    pub(super) wake: Arc<Notify>,
    pub(super) recheck: Arc<Notify>,
    pub(super) shared: Arc<LaneShared>,
    /// Cancelled to stop this lane alone (a child of the daemon's shutdown).
    pub(super) stop: CancellationToken,
    /// Cancelled by the lane when it has stopped.
    pub(super) stopped: CancellationToken,
}

#[derive(Debug)]
pub(crate) struct Registry {
    pub(super) context: Arc<DispatchContext>,
    pub(super) config: Arc<Config>,
    pub(super) guard: DestinationGuard,
    /// Lock order: `endpoints` before `running`.
    pub(super) endpoints: RwLock<BTreeMap<String, Registered>>,
    pub(super) running: Mutex<HashMap<String, LaneHandle>>,
    pub(super) shutdown: CancellationToken,
    pub(super) tasks: TaskTracker,
    /// Enqueues hold it shared from their check of the endpoint to their write; a delete takes it once
    /// exclusively after unregistering, so no enqueue that saw the endpoint is still writing.
    pub(super) gate: tokio::sync::RwLock<()>,
}

/// Cheap, cloneable access to the endpoints and their lanes.
#[derive(Clone, Debug)]
pub struct Lanes {
    pub(super) inner: Arc<Registry>,
}

impl From<Arc<Registry>> for Lanes {
    fn from(inner: Arc<Registry>) -> Lanes {
        Lanes { inner }
    }
}

pub(super) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl From<&EndpointState> for Control {
    fn from(state: &EndpointState) -> Control {
        Control {
            paused: state.paused,
            disabled: state.disabled.clone(),
        }
    }
}

impl Lanes {
    /// Registers the config file's endpoints and the store's, and starts the lanes of those with work.
    pub(super) fn load(
        context: Arc<DispatchContext>,
        config: Arc<Config>,
        shutdown: CancellationToken,
    ) -> Result<Lanes, StoreError> {
        let mut states: HashMap<String, EndpointState> =
            context.store.endpoint_states()?.into_iter().collect();
        let lanes = Lanes {
            inner: Arc::new(Registry {
                guard: DestinationGuard::new(config.allow.clone()),
                context,
                config: Arc::clone(&config),
                endpoints: RwLock::new(BTreeMap::new()),
                running: Mutex::new(HashMap::new()),
                shutdown,
                tasks: TaskTracker::new(),
                gate: tokio::sync::RwLock::new(()),
            }),
        };
        let mut endpoints = BTreeMap::new();
        for declared in &config.endpoints {
            let state = states.remove(&declared.name).unwrap_or_default();
            if !state.settings.is_empty() {
                let keys: Vec<&str> = state.settings.keys().map(String::as_str).collect();
                tracing::info!(endpoint = %declared.name, overrides = ?keys,
                    "run-time overrides laid over the config file (`hookd endpoints reset` drops them)");
            }
            if state.definition.is_some() {
                tracing::warn!(endpoint = %declared.name,
                    "the config file declares an endpoint also created through the API: the file's table is used");
            }
            let config = match lanes.effective(&declared.name, &state) {
                Ok(Some((live, _))) => live,
                Ok(None) | Err(_) => {
                    tracing::error!(endpoint = %declared.name,
                        "stored run-time overrides are no longer valid; using the config file's table");
                    declared.clone()
                }
            };
            endpoints.insert(
                declared.name.clone(),
                Registered {
                    config: Arc::new(config),
                    origin: Origin::Config,
                    control: Control::from(&state),
                },
            );
        }
        for (name, state) in states {
            match lanes.effective(&name, &state) {
                Ok(Some((config, origin))) => {
                    endpoints.insert(
                        name,
                        Registered {
                            config: Arc::new(config),
                            origin,
                            control: Control::from(&state),
                        },
                    );
                }
                Ok(None) => {}
                Err(error) => tracing::error!(endpoint = %name, %error,
                    "a stored endpoint is no longer valid (were the defaults changed?); its messages are held"),
            }
        }
        for registered in endpoints.values() {
            super::endpoint_changes::warn_if_unverified(&registered.config);
        }
        *write(&lanes.inner.endpoints) = endpoints;
        for name in lanes.inner.context.store.queued_endpoints() {
            lanes.wake(&name);
        }
        // Declared endpoints with a handshake verify at start, as a created one does at creation (seed 002).
        for declared in &config.endpoints {
            lanes.verify_soon(&declared.name);
        }
        Ok(lanes)
    }

    /// The endpoint as the config file and its store record define it now, validated; `None` when neither does.
    fn effective(
        &self,
        name: &str,
        state: &EndpointState,
    ) -> Result<Option<(EndpointConfig, Origin)>, SpecError> {
        let config = &self.inner.config;
        let (mut table, origin) = match (config.declared.get(name), &state.definition) {
            (Some(declared), _) => {
                let mut table = declared.clone();
                table.extend(state.settings.clone());
                (table, Origin::Config)
            }
            (None, Some(definition)) => (definition.clone(), Origin::Api),
            (None, None) => return Ok(None),
        };
        table.insert("name".into(), name.into());
        Ok(Some((config.defaults.validate(&table)?, origin)))
    }

    /// Reads the endpoint's store record back into memory (and into its running lane).
    pub(crate) fn refresh(&self, name: &str) -> Result<(), StoreError> {
        let state = self.inner.context.store.endpoint_state(name)?;
        let mut endpoints = write(&self.inner.endpoints);
        match self.effective(name, &state) {
            Ok(Some((config, origin))) => {
                let config = Arc::new(config);
                let control = Control::from(&state);
                if let Some(lane) = lock(&self.inner.running).get(name) {
                    lane.settings.send_replace(Arc::clone(&config));
                    lane.control.send_if_modified(|now| {
                        let changed = *now != control;
                        *now = control.clone();
                        changed
                    });
                    lane.wake.notify_one();
                }
                endpoints.insert(
                    name.to_owned(),
                    Registered {
                        config,
                        origin,
                        control,
                    },
                );
            }
            Ok(None) => {
                endpoints.remove(name);
            }
            Err(error) => {
                tracing::error!(endpoint = name, %error, "the stored endpoint is not valid; kept as it was")
            }
        }
        Ok(())
    }

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
    pub(super) fn retire(&self, endpoint: &str, wake: &Arc<Notify>) -> bool {
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
    pub(super) async fn stop_lane(&self, endpoint: &str) {
        let handle = lock(&self.inner.running).remove(endpoint);
        if let Some(handle) = handle {
            handle.stop.cancel();
            handle.stopped.cancelled().await;
        }
    }

    /// Waits until every lane has stopped (after shutdown was cancelled).
    pub(super) async fn join(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Held by an enqueue from its check of the endpoint until its write (see `Registry::gate`).
    pub async fn admit(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.inner.gate.read().await
    }

    /// The endpoint's status; `None` when no such endpoint is registered (its queued messages are held).
    pub fn status(&self, endpoint: &str) -> Option<LaneStatus> {
        let endpoints = read(&self.inner.endpoints);
        let registered = endpoints.get(endpoint)?;
        if let Some(lane) = lock(&self.inner.running).get(endpoint) {
            return Some(read_status(&lane.shared.status));
        }
        Some(self.idle_status(registered))
    }

    /// The status of an endpoint whose lane is not running.
    fn idle_status(&self, registered: &Registered) -> LaneStatus {
        if let Some(reason) = &registered.control.disabled {
            return LaneStatus::Disabled {
                reason: reason.clone(),
            };
        }
        if registered.control.paused {
            return LaneStatus::Paused;
        }
        let config = &registered.config;
        if config.verification.is_some() && !verify::already_verified(&self.inner.context, config) {
            let reason = self
                .inner
                .context
                .store
                .endpoint_state(&config.name)
                .ok()
                .and_then(|s| s.verification_error)
                .unwrap_or_else(|| "verification handshake not yet run".into());
            return LaneStatus::Unverified { reason };
        }
        LaneStatus::Active
    }

    /// The endpoint's circuit breaker (closed while its lane is not running).
    pub fn circuit(&self, endpoint: &str) -> Option<CircuitView> {
        if let Some(lane) = lock(&self.inner.running).get(endpoint) {
            return Some(lane.shared.circuit());
        }
        read(&self.inner.endpoints)
            .contains_key(endpoint)
            .then_some(CircuitView {
                state: CircuitState::Closed,
                consecutive_failures: 0,
            })
    }

    /// Whether the endpoint's messages are being sent (otherwise they are held).
    pub fn is_active(&self, endpoint: &str) -> bool {
        self.status(endpoint) == Some(LaneStatus::Active)
    }

    /// The endpoint's live settings.
    pub fn endpoint(&self, name: &str) -> Option<Arc<EndpointConfig>> {
        read(&self.inner.endpoints)
            .get(name)
            .map(|r| Arc::clone(&r.config))
    }

    /// Where the endpoint is defined.
    pub fn origin(&self, name: &str) -> Option<Origin> {
        read(&self.inner.endpoints).get(name).map(|r| r.origin)
    }

    /// How many endpoints are registered, and how many lanes run.
    pub fn sizes(&self) -> (usize, usize) {
        let registered = read(&self.inner.endpoints).len();
        (registered, lock(&self.inner.running).len())
    }

    /// Up to `limit` endpoint names after `after`, in name order, that `keep` accepts; and the name to
    /// continue after when there are more.
    pub fn names(
        &self,
        after: Option<&str>,
        limit: usize,
        mut keep: impl FnMut(&str, &EndpointConfig) -> bool,
    ) -> (Vec<String>, Option<String>) {
        use std::ops::Bound;
        let endpoints = read(&self.inner.endpoints);
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut names = Vec::new();
        for (name, registered) in endpoints.range::<str, _>((start, Bound::Unbounded)) {
            if !keep(name, &registered.config) {
                continue;
            }
            if names.len() == limit {
                return (names.clone(), names.last().cloned());
            }
            names.push(name.clone());
        }
        (names, None)
    }
}
