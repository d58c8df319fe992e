//! Changes to the endpoints: created, changed, reset, deleted, paused or resumed, verified. Each change is
//! swapped into the endpoint's store record atomically and made durable, then read back into memory
//! ([`Lanes::refresh`]), so concurrent changes (a PATCH racing a 410's disable, a verification result) lose
//! nothing. The registry itself, and the lanes' life, are in `registry.rs`.

use std::sync::{Arc, RwLock};

use super::registry::{EndpointError, Origin, read, write};
use super::{Control, ControlChange, LaneStatus, Lanes, lock, verify};
use crate::config::EndpointConfig;
use crate::endpoint_spec::{SpecError, Table, apply_patch};
use crate::model::now_millis;
use crate::store::{Retire, StoreError};

impl Lanes {
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
    pub(super) fn verify_soon(&self, name: &str) {
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
