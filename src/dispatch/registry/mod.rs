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
//!
//! This module holds the registry's types; the rest is split by what it does: `loading` fills memory from the
//! config file and the store and refreshes it after a change, `lane_lifecycle` starts and stops lanes, and
//! `lookups` answers what the API and the lanes ask about an endpoint.

mod lane_lifecycle;
mod loading;
mod lookups;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Control, DispatchContext, LaneShared};
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
    /// Held by an enqueue from its check of the endpoint until its write (see `Registry::gate`).
    pub async fn admit(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.inner.gate.read().await
    }
}
