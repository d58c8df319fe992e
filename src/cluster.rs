//! A node among several: opening the configured store, and applying the changes other nodes make to a
//! shared store (messages that became due, endpoints and tokens changed) to this node's lanes and API.
//!
//! With sled there are no other nodes and nothing to follow. With PostgreSQL the store passes on the other
//! nodes' notifications ([`Change`]); this module turns each into what this node would have done had the
//! change been its own: wake the endpoint's lane, reread the endpoint into the registry, reload the tokens.

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::api::tokens::TokenDigests;
use crate::config::Config;
use crate::dispatch::Lanes;
use crate::store::{Change, Store, StoreError};
use crate::store_config::StoreChoice;

/// Opens the store the config names: sled in `data_dir` (created 0700 if missing), or the PostgreSQL
/// database of `[store] url`, joined as a new node.
pub async fn open_store(config: &Config) -> Result<Store, StoreError> {
    match &config.store {
        StoreChoice::Sled => {
            crate::daemon::create_private_dir(&config.data_dir).map_err(|e| StoreError::Open {
                path: config.data_dir.clone(),
                source: Box::new(e),
            })?;
            Store::open(&config.data_dir, config.sled_cache_bytes)
        }
        StoreChoice::Postgres { url, options } => {
            Store::connect(url.expose(), options.clone()).await
        }
    }
}

/// Applies other nodes' changes until `cancel`; does nothing for a store no other node writes.
pub fn follow(
    store: &Store,
    lanes: Lanes,
    tokens: TokenDigests,
    cancel: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut changes = store.changes()?;
    let store = store.clone();
    Some(tokio::spawn(async move {
        loop {
            let change = tokio::select! {
                _ = cancel.cancelled() => return,
                change = changes.recv() => change,
            };
            match change {
                Ok(change) => apply(&store, &lanes, &tokens, change),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "fell behind other nodes' changes; rereading everything"
                    );
                    catch_up(&store, &lanes, &tokens);
                }
                Err(RecvError::Closed) => return,
            }
        }
    }))
}

fn apply(store: &Store, lanes: &Lanes, tokens: &TokenDigests, change: Change) {
    match change {
        Change::Work(endpoints) => {
            for endpoint in endpoints {
                lanes.wake(&endpoint);
            }
        }
        Change::Endpoint(name) => {
            if let Err(error) = lanes.refresh(&name) {
                tracing::warn!(endpoint = %name, %error, "cannot apply another node's endpoint change");
            }
            lanes.wake(&name);
        }
        Change::Tokens => {
            if let Err(error) = tokens.replace(store) {
                tracing::warn!(%error, "cannot reload the tokens another node changed");
            }
        }
    }
}

/// After missed changes: every endpoint reread, every endpoint with work woken, the tokens reloaded.
fn catch_up(store: &Store, lanes: &Lanes, tokens: &TokenDigests) {
    if let Ok(states) = store.endpoint_states() {
        for (name, _) in states {
            apply(store, lanes, tokens, Change::Endpoint(name));
        }
    }
    apply(store, lanes, tokens, Change::Work(store.queued_endpoints()));
    apply(store, lanes, tokens, Change::Tokens);
}

/// Whether the config's store is one this process alone writes (sled).
pub fn is_embedded(config: &Config) -> bool {
    matches!(config.store, StoreChoice::Sled)
}
