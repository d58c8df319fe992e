//! Filling the registry: the config file's endpoints with their stored overrides and the API's from the
//! store, at start, and one endpoint again after each committed change. Apart from the types because it is
//! where an endpoint's table becomes validated settings.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Lanes, Origin, Registered, Registry, write};
use crate::config::{Config, EndpointConfig};
use crate::dispatch::{Control, DispatchContext, lock};
use crate::endpoint_spec::SpecError;
use crate::guard::DestinationGuard;
use crate::store::{EndpointState, StoreError};

impl Lanes {
    /// Registers the config file's endpoints and the store's, and starts the lanes of those with work.
    pub(in crate::dispatch) fn load(
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
            crate::dispatch::endpoint_changes::warn_if_unverified(&registered.config);
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
}
