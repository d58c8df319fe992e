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

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::health::{Circuit, CircuitState};
use super::{
    CircuitView, Control, ControlChange, DispatchContext, LaneShared, LaneStatus, lane, lock,
    read_status, verify,
};
use crate::config::{Config, EndpointConfig};
use crate::endpoint_spec::{SpecError, Table, apply_patch};
use crate::guard::DestinationGuard;
use crate::model::now_millis;
use crate::store::{EndpointState, Retire, StoreError};

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
struct Registered {
    config: Arc<EndpointConfig>,
    origin: Origin,
    control: Control,
}

/// A running lane as seen from outside.
#[derive(Debug)]
struct LaneHandle {
    settings: watch::Sender<Arc<EndpointConfig>>,
    control: watch::Sender<Control>,
    wake: Arc<Notify>,
    recheck: Arc<Notify>,
    shared: Arc<LaneShared>,
    /// Cancelled to stop this lane alone (a child of the daemon's shutdown).
    stop: CancellationToken,
    /// Cancelled by the lane when it has stopped.
    stopped: CancellationToken,
}

#[derive(Debug)]
pub(crate) struct Registry {
    context: Arc<DispatchContext>,
    config: Arc<Config>,
    guard: DestinationGuard,
    /// Lock order: `endpoints` before `running`.
    endpoints: RwLock<BTreeMap<String, Registered>>,
    running: Mutex<HashMap<String, LaneHandle>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Enqueues hold it shared from their check of the endpoint to their write; a delete takes it once
    /// exclusively after unregistering, so no enqueue that saw the endpoint is still writing.
    gate: tokio::sync::RwLock<()>,
}

/// Cheap, cloneable access to the endpoints and their lanes.
#[derive(Clone, Debug)]
pub struct Lanes {
    inner: Arc<Registry>,
}

impl From<Arc<Registry>> for Lanes {
    fn from(inner: Arc<Registry>) -> Lanes {
        Lanes { inner }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
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
            warn_if_unverified(&registered.config);
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
    pub(super) fn refresh(&self, name: &str) -> Result<(), StoreError> {
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
    pub(super) fn retire(&self, endpoint: &str, wake: &Arc<Notify>) -> bool {
        let mut running = lock(&self.inner.running);
        if self.inner.context.store.has_queued(endpoint) {
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
    async fn stop_lane(&self, endpoint: &str) {
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

    /// Applies a control change to the endpoint's store record, atomically and durably, then to memory.
    pub(super) async fn change_control(
        &self,
        endpoint: &str,
        change: impl Fn(&mut Control),
    ) -> Result<Control, StoreError> {
        let updated = self
            .inner
            .context
            .store
            .update_endpoint_state(endpoint, |state| {
                let mut control = Control::from(&*state);
                change(&mut control);
                state.paused = control.paused;
                state.disabled = control.disabled;
                Ok::<(), std::convert::Infallible>(())
            })
            .await?;
        let (state, ()) = match updated {
            Ok(done) => done,
            Err(never) => match never {},
        };
        self.refresh(endpoint)?;
        Ok(Control::from(&state))
    }

    /// Pauses, resumes or re-enables an endpoint, durably; `None` when no such endpoint is registered.
    pub async fn control(
        &self,
        endpoint: &str,
        change: ControlChange,
    ) -> Option<Result<Control, StoreError>> {
        read(&self.inner.endpoints).get(endpoint)?;
        if change == ControlChange::Enable
            && let Some(lane) = lock(&self.inner.running).get(endpoint)
        {
            lock(&lane.shared.circuit).reset();
        }
        let result = self
            .change_control(endpoint, |control| match change {
                ControlChange::Pause => control.paused = true,
                ControlChange::Resume => control.paused = false,
                ControlChange::Enable => control.disabled = None,
            })
            .await;
        tracing::info!(endpoint, ?change, "endpoint control changed");
        if result.is_ok() {
            let event = match change {
                ControlChange::Pause => crate::telemetry::EndpointChange::Paused,
                ControlChange::Resume => crate::telemetry::EndpointChange::Resumed,
                ControlChange::Enable => crate::telemetry::EndpointChange::Enabled,
            };
            self.inner
                .context
                .telemetry
                .endpoint_changed(endpoint, event, None);
        }
        self.wake(endpoint);
        Some(result)
    }

    /// Runs the endpoint's verification handshake now and lets its lane go on if it passed.
    /// `None` when the endpoint is unknown or has no verification.
    pub async fn verify(&self, endpoint: &str) -> Option<LaneStatus> {
        let settings = self.endpoint(endpoint)?;
        settings.verification.as_ref()?;
        let running = lock(&self.inner.running)
            .get(endpoint)
            .map(|lane| (Arc::clone(&lane.shared), Arc::clone(&lane.recheck)));
        // A handshake may hang up to the endpoint's timeout: shutdown does not wait for it.
        let shutdown = self.inner.shutdown.clone();
        let status = match running {
            Some((shared, recheck)) => {
                let status = tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    status = verify::verify_now(&self.inner.context, &settings, &shared.status) => status,
                };
                recheck.notify_one();
                status
            }
            None => {
                let scratch = RwLock::new(LaneStatus::Active);
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    status = verify::verify_now(&self.inner.context, &settings, &scratch) => status,
                }
            }
        };
        Some(status)
    }

    /// Runs the endpoint's verification handshake in the background when it has one that its current URL
    /// and key have not passed (seed 002: a webhook is verified when it is created).
    fn verify_soon(&self, name: &str) {
        let Some(config) = self.endpoint(name) else {
            return;
        };
        if config.verification.is_none() || verify::already_verified(&self.inner.context, &config) {
            return;
        }
        let lanes = self.clone();
        let name = name.to_owned();
        let shutdown = self.inner.shutdown.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = lanes.verify(&name) => {}
            }
        });
    }

    /// Creates an endpoint from its table (config-file keys, `name` and `format` included), durably.
    pub async fn create(&self, table: Table) -> Result<Arc<EndpointConfig>, EndpointError> {
        let config = self.inner.config.defaults.validate(&table)?;
        self.check_destination(&config)?;
        let name = config.name.clone();
        if self.inner.config.declared.contains_key(&name) || self.endpoint(&name).is_some() {
            return Err(EndpointError::Exists(name));
        }
        let mut definition = table;
        definition.remove("name");
        self.inner
            .context
            .store
            .update_endpoint_state(&name, |state| {
                if state.definition.is_some() {
                    return Err(EndpointError::Exists(name.clone()));
                }
                state.definition = Some(definition.clone());
                Ok(())
            })
            .await??;
        self.refresh(&name)?;
        tracing::info!(endpoint = %name, "endpoint created");
        warn_if_unverified(&config);
        self.verify_soon(&name);
        self.endpoint(&name)
            .ok_or_else(|| EndpointError::Unknown(name))
    }

    /// Changes an endpoint's keys at run time (a key given as `null` goes back to the default, or for a
    /// declared endpoint to the file's value), durably; the next attempt uses them.
    pub async fn patch(&self, name: &str, patch: &Table) -> Result<(), EndpointError> {
        for fixed in ["name", "format"] {
            if patch.contains_key(fixed) {
                return Err(SpecError::new(
                    fixed,
                    "cannot change; delete the endpoint and create it anew",
                )
                .into());
            }
        }
        let origin = self
            .origin(name)
            .ok_or_else(|| EndpointError::Unknown(name.to_owned()))?;
        let config = &self.inner.config;
        self.inner
            .context
            .store
            .update_endpoint_state(name, |state| -> Result<(), EndpointError> {
                let mut table = match origin {
                    Origin::Config => {
                        apply_patch(&mut state.settings, patch);
                        let mut table = config.declared.get(name).cloned().unwrap_or_default();
                        table.extend(state.settings.clone());
                        table
                    }
                    Origin::Api => {
                        let definition = state
                            .definition
                            .as_mut()
                            .ok_or_else(|| EndpointError::Unknown(name.to_owned()))?;
                        apply_patch(definition, patch);
                        definition.clone()
                    }
                };
                table.insert("name".into(), name.into());
                let live = config.defaults.validate(&table)?;
                Ok(self.check_destination(&live)?)
            })
            .await??;
        self.refresh(name)?;
        tracing::info!(endpoint = name, keys = ?patch.keys().collect::<Vec<_>>(), "endpoint changed at run time");
        if patch.contains_key("verification")
            && let Some(live) = self.endpoint(name)
        {
            warn_if_unverified(&live);
        }
        self.verify_soon(name);
        Ok(())
    }

    /// Drops a declared endpoint's run-time overrides, durably: the file's table applies again.
    pub async fn reset(&self, name: &str) -> Result<(), EndpointError> {
        match self.origin(name) {
            None => return Err(EndpointError::Unknown(name.to_owned())),
            Some(Origin::Api) => return Err(EndpointError::NotDeclared(name.to_owned())),
            Some(Origin::Config) => {}
        }
        self.inner
            .context
            .store
            .update_endpoint_state(name, |state| {
                state.settings.clear();
                Ok::<(), std::convert::Infallible>(())
            })
            .await?
            .ok();
        self.refresh(name)?;
        tracing::info!(endpoint = name, "run-time overrides dropped");
        Ok(())
    }

    /// Deletes an endpoint created through the API, durably. While it has messages queued or in flight it is
    /// refused unless `retire` says what becomes of them. Returns how many messages were retired.
    pub async fn delete(&self, name: &str, retire: Option<Retire>) -> Result<usize, EndpointError> {
        match self.origin(name) {
            None => return Err(EndpointError::Unknown(name.to_owned())),
            Some(Origin::Config) => return Err(EndpointError::Declared(name.to_owned())),
            Some(Origin::Api) => {}
        }
        let store = &self.inner.context.store;
        let waiting = |store: &crate::store::Store| {
            let counts = store.counts().map(|c| c.by_endpoint.get(name).copied())?;
            Ok::<u64, StoreError>(counts.map_or(0, |c| c.queued + c.in_flight))
        };
        let not_empty = |waiting| EndpointError::NotEmpty {
            name: name.to_owned(),
            waiting,
        };
        if retire.is_none() && waiting(store)? > 0 {
            return Err(not_empty(waiting(store)?));
        }
        // No enqueue, wake or lane start finds it from here on.
        write(&self.inner.endpoints).remove(name);
        drop(self.inner.gate.write().await);
        self.stop_lane(name).await;
        let now = now_millis();
        store.release_leases_of(name, now).await?;
        let retired = match &retire {
            Some(how) => store.retire_queued(name, how, now).await?,
            None if store.has_queued(name) => {
                // Something was enqueued since the count: the endpoint stays.
                self.refresh(name)?;
                self.wake(name);
                return Err(not_empty(waiting(store)?));
            }
            None => 0,
        };
        store.remove_endpoint_state(name).await?;
        tracing::info!(endpoint = name, retired, "endpoint deleted");
        Ok(retired)
    }

    /// The destination guard's verdict on IP-literal URLs, `url` and each of `urls` (names are judged when
    /// they resolve).
    fn check_destination(&self, endpoint: &EndpointConfig) -> Result<(), SpecError> {
        let guard = &self.inner.guard;
        guard
            .check_url(&endpoint.url)
            .map_err(|refused| SpecError::new("url", refused.to_string()))?;
        for (kind, url) in &endpoint.urls {
            guard
                .check_url(url)
                .map_err(|refused| SpecError::new(format!("urls.{kind}"), refused.to_string()))?;
        }
        Ok(())
    }
}

/// Logs that an endpoint whose format verifies its webhook (seed 002) sends without the handshake, as its
/// `verification = "none"` says.
pub(super) fn warn_if_unverified(endpoint: &EndpointConfig) {
    if endpoint.verification_waived {
        tracing::warn!(endpoint = %endpoint.name, format = endpoint.format.name(),
            "verification = \"none\": messages go out without the verification handshake the format asks for \
             (seed 002); give verification = {{ validation_key = \"...\" }} once the receiver answers it");
    }
}

/// Upgrades the stored tables of endpoints created through the API by a release that let a `dlr-json`
/// endpoint omit `verification` (it then sent without a handshake): such a table is given
/// `verification = "none"`, durably, so that the endpoint keeps loading and keeps behaving as it did. Runs
/// at start, before the registry loads.
pub async fn upgrade_stored_endpoints(
    store: &crate::store::Store,
    defaults: &crate::endpoint_spec::Defaults,
) -> Result<(), StoreError> {
    for (name, state) in store.endpoint_states()? {
        let Some(definition) = &state.definition else {
            continue;
        };
        let verifies = definition
            .get("format")
            .and_then(serde_json::Value::as_str)
            .and_then(crate::formats::FormatKind::from_name)
            .is_some_and(crate::formats::FormatKind::verifies);
        if !verifies || defaults.apply(definition).contains_key("verification") {
            continue;
        }
        store
            .update_endpoint_state(&name, |state| {
                if let Some(definition) = state.definition.as_mut() {
                    definition
                        .entry("verification")
                        .or_insert_with(|| serde_json::Value::from("none"));
                }
                Ok::<(), std::convert::Infallible>(())
            })
            .await?
            .ok();
        tracing::warn!(endpoint = %name,
            "endpoint created without `verification` by an earlier release: recorded as verification = \"none\" \
             (it keeps sending without the handshake); PATCH a validation key to verify it");
    }
    Ok(())
}
