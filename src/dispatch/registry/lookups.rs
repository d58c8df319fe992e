//! What the API and the lanes read from the registry: an endpoint's status, circuit, settings and origin,
//! and the names in order. Apart from the types because these are read-only views, each taking a lock only
//! for its read.

use std::sync::Arc;

use super::{Lanes, Origin, Registered, read};
use crate::config::EndpointConfig;
use crate::dispatch::health::CircuitState;
use crate::dispatch::{CircuitView, LaneStatus, lock, read_status, verify};

impl Lanes {
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
