//! `hookd serve`: owns the lifetimes of the store, the socket API and the lanes, and their ordered shutdown.
//!
//! Start: open the store (taking sled's lock, so a second daemon on the same data dir fails here, before it
//! touches the socket), put leases of a previous run back to due, bind the socket (stale file removed, mode
//! 0600), start the lanes and the API. Stop (on the `shutdown` future): stop accepting, let lanes finish their
//! in-flight attempts within the grace period, release what is left, make everything durable, remove the socket.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::api::tokens::TokenDigests;
use crate::api::{AppState, router};
use crate::config::{Config, EndpointConfig};
use crate::dispatch::{DispatchContext, Dispatcher};
use crate::guard::DestinationGuard;
use crate::http_client::{ClientBuildError, HttpSender};
use crate::model::now_millis;
use crate::store::{Store, StoreError};

/// How often delivered messages past the retention window are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Why the daemon could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    #[error("{path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("socket API failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Runs the daemon until `shutdown` resolves, then shuts down in order.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let config = Arc::new(config);
    create_private_dir(&config.data_dir)?;
    let store = Store::open(&config.data_dir, config.sled_cache_bytes)?;
    let released = store.release_all_leases(now_millis())?;
    if released > 0 {
        tracing::info!(
            released,
            "messages in flight at the last stop are due again"
        );
    }
    let listener = bind_socket(&config.socket)?;

    let cancel = CancellationToken::new();
    let sender = HttpSender::new(
        DestinationGuard::new(config.allow.clone()),
        config.connect_timeout,
        config.response_body_cap,
    )?;
    let context = Arc::new(DispatchContext {
        store: store.clone(),
        sender,
        max_retry_after: config.max_retry_after,
        shutdown_grace: config.shutdown_grace,
    });
    let endpoints = effective_endpoints(&config, &store)?;
    let dispatcher = Dispatcher::start(context, &endpoints, cancel.clone());
    let state = AppState {
        store: store.clone(),
        config: Arc::clone(&config),
        lanes: dispatcher.lanes(),
        tokens: TokenDigests::load(&store)?,
    };
    let pruner = tokio::spawn(prune_delivered(
        store.clone(),
        config.retention,
        cancel.clone(),
    ));
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(cancel.clone().cancelled_owned());
    tracing::info!(
        socket = %config.socket.display(),
        data_dir = %config.data_dir.display(),
        endpoints = config.endpoints.len(),
        "hookd is serving"
    );

    let serving = tokio::spawn(async move { server.await });
    shutdown.await;
    tracing::info!("shutting down: no new requests; finishing attempts in flight");
    cancel.cancel();
    let served = serving.await;
    dispatcher.join().await;
    let _ = pruner.await;
    let released = store.release_all_leases(now_millis())?;
    if released > 0 {
        tracing::info!(
            released,
            "attempts not finished within the grace period are due again"
        );
    }
    store.commit().await?;
    let _ = std::fs::remove_file(&config.socket);
    tracing::info!("hookd stopped");
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DaemonError::Serve(e)),
        Err(e) => Err(DaemonError::Serve(std::io::Error::other(e))),
    }
}

/// The config file's endpoints with the settings changed at run time (kept in the store) laid over them.
fn effective_endpoints(config: &Config, store: &Store) -> Result<Vec<EndpointConfig>, DaemonError> {
    let mut endpoints = Vec::with_capacity(config.endpoints.len());
    for endpoint in &config.endpoints {
        let settings = store.endpoint_state(&endpoint.name)?.settings;
        match endpoint.with_settings(&settings) {
            Ok(live) => endpoints.push(live),
            Err((field, reason)) => {
                tracing::error!(endpoint = %endpoint.name, field, %reason, "stored settings no longer valid; using the config file's");
                endpoints.push(endpoint.clone());
            }
        }
    }
    Ok(endpoints)
}

/// Creates a directory hookd owns (data dir, socket dir) as 0700 when it does not exist yet.
fn create_private_dir(dir: &Path) -> Result<(), DaemonError> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let fail = |source| DaemonError::Socket {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)
}

/// Binds the socket: its directory is created private (0700) when missing, a stale socket file is removed
/// (the store's lock proved no other daemon owns it), and the socket is made 0600.
fn bind_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    let fail = |source| DaemonError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(socket = %path.display(), "removed a stale socket file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let listener = UnixListener::bind(path).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    Ok(listener)
}

async fn prune_delivered(store: Store, retention: Duration, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let before = now_millis().saturating_sub(retention.as_millis() as u64);
        match store.prune_delivered(before) {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned delivered messages past retention"),
            Err(error) => tracing::error!(%error, "pruning delivered messages failed"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
