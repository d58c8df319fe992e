//! `hookd serve`: owns the lifetimes of the store, the socket API and the lanes, and their ordered shutdown.
//!
//! Start: refuse a socket something answers on (another daemon's), before anything is created; open the
//! store (taking sled's lock, so a second daemon on the same data dir fails here, before it touches the
//! socket), put leases of a previous run back to due, bind the socket (a stale file removed, mode 0600, or
//! 0660 for `socket_group`), start the lanes and the API, then tell systemd `READY=1` (`notify`). A failed
//! group commit stops the daemon like a signal does, and `run` then returns `StoreFailed` so a supervisor
//! reopens the store. Stop (on the `shutdown` future): tell systemd `STOPPING=1`, stop accepting, let lanes
//! finish their in-flight attempts within the grace period, release what is left, make everything durable,
//! remove the socket (when it is still this daemon's).

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::api::tokens::TokenDigests;
use crate::api::{AppState, router};
use crate::config::Config;
use crate::dispatch::{DispatchContext, Dispatcher};
use crate::guard::DestinationGuard;
use crate::http_client::{ClientBuildError, HttpSender};
use crate::model::now_millis;
use crate::store::{Store, StoreError};
use crate::telemetry::Telemetry;

/// How often expired leases are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

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
    /// Something answers on the socket: another daemon serves there. Nothing was created or removed.
    #[error(
        "socket {path} is in use: a process answers on it (another hookd?); stop it, or give this daemon \
         another `socket` in its config (nothing was changed)"
    )]
    SocketInUse { path: PathBuf },
    /// `socket_group` names no group known to the system (nor is it a numeric gid).
    #[error("socket_group `{group}`: no such group")]
    UnknownGroup { group: String },
    /// The group exists but the socket could not be given to it (looking it up failed, or the daemon's
    /// user may not chown to it: it must be a member of the group, or root).
    #[error("socket_group `{group}`: cannot give {path} to it: {source}")]
    SocketGroup {
        group: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the store failed and hookd stopped: {0}")]
    StoreFailed(String),
    #[error("socket API failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("metrics_listen {addr}: {source}")]
    MetricsListen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the daemon until `shutdown` resolves, then shuts down in order.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let config = Arc::new(config);
    // An unknown group is a config error: found before the data dir is created or the store opened.
    let socket_group = config
        .socket_group
        .as_deref()
        .map(|name| socket_gid(name, &config.socket).map(|gid| (name, gid)))
        .transpose()?;
    if probe_socket(&config.socket)? == Probe::Live {
        // The same data dir held too: the same daemon's config, which the store's own error names best.
        if crate::cluster::is_embedded(&config) && Store::is_held(&config.data_dir) {
            return Err(StoreError::Locked(config.data_dir.clone()).into());
        }
        return Err(DaemonError::SocketInUse {
            path: config.socket.clone(),
        });
    }
    let store = crate::cluster::open_store(&config).await?;
    let released = store.release_all_leases(now_millis()).await?;
    if released > 0 {
        tracing::info!(
            released,
            "messages in flight at the last stop are due again"
        );
    }
    let (listener, socket_file) = bind_socket(&config.socket, socket_group)?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::MetricsListen { addr, source })?,
        ),
        None => None,
    };
    let telemetry = Arc::new(Telemetry::new(
        config.endpoints.iter().map(|e| e.name.as_str()),
        now_millis(),
    ));

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
        telemetry: Arc::clone(&telemetry),
    });
    crate::dispatch::upgrade_stored_endpoints(&store, &config.defaults).await?;
    let dispatcher = Dispatcher::start(context, Arc::clone(&config), cancel.clone())?;
    let state = AppState {
        store: store.clone(),
        config: Arc::clone(&config),
        lanes: dispatcher.lanes(),
        tokens: TokenDigests::load(&store)?,
        telemetry,
        shutdown: cancel.clone(),
    };
    let follower = crate::cluster::follow(
        &store,
        dispatcher.lanes(),
        state.tokens.clone(),
        cancel.clone(),
    );
    let pruner = tokio::spawn(prune_delivered(
        store.clone(),
        config.retention,
        cancel.clone(),
    ));
    let sweeper = tokio::spawn(sweep_leases(
        store.clone(),
        dispatcher.lanes(),
        cancel.clone(),
    ));
    let metrics_server = match metrics_listener {
        Some(listener) => {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(metrics = %addr, "serving /metrics over TCP");
            }
            let server = axum::serve(listener, crate::api::metrics::tcp_router(state.clone()))
                .with_graceful_shutdown(cancel.clone().cancelled_owned());
            Some(tokio::spawn(async move { server.await }))
        }
        None => None,
    };
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(cancel.clone().cancelled_owned());
    tracing::info!(
        socket = %config.socket.display(),
        data_dir = %config.data_dir.display(),
        store = store.backend_name(),
        endpoints = config.endpoints.len(),
        "hookd is serving"
    );

    let mut serving = tokio::spawn(async move { server.await });
    // The socket is listening, so a client connecting from now on is answered.
    crate::notify::notify("READY=1");
    let store_failure = tokio::select! {
        _ = shutdown => None,
        reason = store.failed() => Some(reason),
    };
    crate::notify::notify("STOPPING=1");
    if let Some(reason) = &store_failure {
        tracing::error!(
            %reason,
            "the store can no longer make writes durable; stopping so that a restart reopens it \
             (nothing acknowledged is lost; free disk space before restarting)"
        );
    }
    tracing::info!("shutting down: no new requests; finishing attempts in flight");
    cancel.cancel();
    // Requests in progress get the grace period to finish; the API does not hold the exit past it.
    let served = match tokio::time::timeout(config.shutdown_grace, &mut serving).await {
        Ok(served) => served,
        Err(_) => {
            tracing::warn!("grace period over; API requests still in progress are dropped");
            serving.abort();
            Ok(Ok(()))
        }
    };
    if let Some(metrics_server) = metrics_server
        && let Ok(Err(error)) = metrics_server.await
    {
        tracing::error!(%error, "the /metrics TCP listener failed");
    }
    dispatcher.join().await;
    let _ = pruner.await;
    let _ = sweeper.await;
    if let Some(follower) = follower {
        let _ = follower.await;
    }
    if let Some(reason) = store_failure {
        // Nothing more can be written; what is leased goes back to due on the next start.
        remove_socket(&config.socket, socket_file);
        return Err(DaemonError::StoreFailed(reason));
    }
    let released = store.release_all_leases(now_millis()).await?;
    if released > 0 {
        tracing::info!(
            released,
            "attempts not finished within the grace period are due again"
        );
    }
    store.commit().await?;
    remove_socket(&config.socket, socket_file);
    tracing::info!("hookd stopped");
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DaemonError::Serve(e)),
        Err(e) => Err(DaemonError::Serve(std::io::Error::other(e))),
    }
}

/// Creates a directory hookd owns (data dir, socket dir) as 0700 when it does not exist yet.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), DaemonError> {
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

/// What is at the socket's path.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Nothing.
    Absent,
    /// A file nothing answers on: a socket left by a daemon that did not stop cleanly.
    Stale,
    /// A socket something accepts connections on.
    Live,
}

/// Tries to connect to `path`: whether a daemon answers there. An error that says neither (no permission
/// to connect) is refused rather than guessed at: the file may be another user's live socket.
fn probe_socket(path: &Path) -> Result<Probe, DaemonError> {
    use std::io::ErrorKind;
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Ok(Probe::Live),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Probe::Absent),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(Probe::Stale),
        Err(source) => Err(DaemonError::Socket {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The file a bound socket is (device, inode), so that a stop removes this daemon's socket and nobody
/// else's.
type SocketFile = Option<(u64, u64)>;

fn socket_file(path: &Path) -> SocketFile {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Removes the socket file if it is still the one this daemon bound.
fn remove_socket(path: &Path, ours: SocketFile) {
    if ours.is_some() && socket_file(path) == ours {
        let _ = std::fs::remove_file(path);
    }
}

/// Binds the socket: its directory is created private (0700) when missing, a stale socket file (one nothing
/// answers on) is removed, a live one refused, and the socket is made 0600, or, with `socket_group`, given
/// to that group (name and gid, looked up by `run` before anything else) and made 0660.
fn bind_socket(
    path: &Path,
    group: Option<(&str, u32)>,
) -> Result<(UnixListener, SocketFile), DaemonError> {
    let fail = |source| DaemonError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    match probe_socket(path)? {
        Probe::Absent => {}
        Probe::Live => {
            return Err(DaemonError::SocketInUse {
                path: path.to_owned(),
            });
        }
        Probe::Stale => match std::fs::remove_file(path) {
            Ok(()) => tracing::info!(socket = %path.display(), "removed a stale socket file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        },
    }
    let listener = UnixListener::bind(path).map_err(fail)?;
    let file = socket_file(path);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    if let Some((name, gid)) = group {
        // Owner-only until the group is right, so no other group ever gets a window.
        let given = std::os::unix::fs::chown(path, None, Some(gid))
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)));
        if let Err(source) = given {
            let _ = std::fs::remove_file(path);
            return Err(DaemonError::SocketGroup {
                group: name.to_owned(),
                path: path.to_owned(),
                source,
            });
        }
        warn_if_group_cannot_reach(path, gid);
    }
    Ok((listener, file))
}

/// The gid of `socket_group`: a group name known to the system (NSS included), else a numeric gid.
fn socket_gid(name: &str, path: &Path) -> Result<u32, DaemonError> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => name.parse::<u32>().map_err(|_| DaemonError::UnknownGroup {
            group: name.to_owned(),
        }),
        Err(errno) => Err(DaemonError::SocketGroup {
            group: name.to_owned(),
            path: path.to_owned(),
            source: std::io::Error::from(errno),
        }),
    }
}

/// A group-owned socket is useless if the group cannot search the directory it lives in (the data dir, by
/// default, is 0700): say so at start rather than leave the operator puzzling over `EACCES`.
fn warn_if_group_cannot_reach(path: &Path, gid: u32) {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return;
    };
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let mode = meta.mode();
    let reachable = mode & 0o001 != 0 || (meta.gid() == gid && mode & 0o010 != 0);
    if !reachable {
        tracing::warn!(
            socket = %path.display(),
            directory = %dir.display(),
            mode = format!("{:o}", mode & 0o7777),
            "socket_group members cannot reach the socket: its directory does not let the group search it"
        );
    }
}

/// Gives back, every [`SWEEP_EVERY`], the messages whose lease has expired: their attempt was lost without
/// its guard giving them back (it cannot be, short of a bug). Nothing waits for a restart.
async fn sweep_leases(store: Store, lanes: crate::dispatch::Lanes, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match store.release_expired(now_millis()).await {
            Ok(endpoints) if endpoints.is_empty() => {}
            Ok(mut endpoints) => {
                tracing::warn!(
                    given_back = endpoints.len(),
                    "expired leases: their messages are due again, no attempt counted"
                );
                endpoints.sort();
                endpoints.dedup();
                for endpoint in &endpoints {
                    lanes.wake(endpoint);
                }
            }
            Err(error) => tracing::error!(%error, "cannot give back expired leases"),
        }
    }
}

async fn prune_delivered(store: Store, retention: Duration, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let before = now_millis().saturating_sub(retention.as_millis() as u64);
        // A pass can read many records: the store runs it where no tokio worker (a lane's lease, an
        // attempt) waits for it (sled: on a blocking thread).
        match store.prune_delivered(before).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned delivered messages past retention"),
            Err(error) => tracing::error!(%error, "pruning delivered messages failed"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled: a signal that arrives while the daemon is still starting stops it gracefully too.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot listen for SIGTERM or SIGINT; stop with SIGINT");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
