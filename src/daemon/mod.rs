//! `hookd serve`: owns the lifetimes of the store, the socket API and the lanes, and their ordered shutdown.
//!
//! Start: refuse a socket something answers on (another daemon's), before anything is created; open the
//! store (taking sled's lock, so a second daemon on the same data dir fails here, before it touches the
//! socket), bind the socket (a stale file removed, mode 0600, or 0660 for `socket_group`), then serve the
//! store: put leases of a previous run back to due, start the lanes and the API, and tell systemd `READY=1`
//! (`notify`). Stop (on the `shutdown` future): tell systemd `STOPPING=1`, stop accepting, let lanes finish
//! their in-flight attempts within the grace period, release what is left, make everything durable, remove
//! the socket (when it is still this daemon's).
//!
//! When the store goes down the daemon stays up. A failed sled group commit is latched (sled 0.34 keeps an
//! I/O error for good), so only opening the data dir again recovers: the lanes stop (no attempt whose
//! outcome could not be written), the API stays up on the failed store (health `degraded` with the reason,
//! reads and counts from memory, every write 503 `store_unavailable`), and once the data dir's file system
//! has free space again the API stops, every handle on the store is dropped, and the store is opened again
//! and served as at start, on the same listening socket. While no store is open (one that does not open yet,
//! also at start when the disk is full) a small API answers health (`degraded`) and 503 to everything else,
//! and the open is tried again, with a growing wait. A signal stops the daemon in any of these states.
//!
//! The concepts live in submodules: `serve` (a store being served, its stop), `store_down` (degraded mode
//! and reopening), `listen` (listeners and the API on them), `socket` (the socket file), `tasks` (background
//! tasks).

mod listen;
mod serve;
mod socket;
mod store_down;
mod tasks;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};

use crate::config::Config;
use crate::guard::DestinationGuard;
use crate::http_client::{ClientBuildError, HttpSender};
use crate::model::now_millis;
use crate::store::{Store, StoreError};
use crate::telemetry::Telemetry;

use listen::Shared;
use socket::{Probe, bind_socket, probe_socket, remove_socket, socket_gid};
use store_down::{REOPEN_EVERY, open_again, out_of_space};

pub(crate) use socket::create_private_dir;
pub(crate) use store_down::free_bytes;

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
    // A store that does not open for want of space is waited for, serving: anything else stops the start.
    let mut next = match crate::cluster::open_store(&config).await {
        Ok(store) => Phase::Open(store),
        Err(error) if out_of_space(&config, &error) => Phase::Down(error.to_string()),
        Err(error) => return Err(error.into()),
    };
    let (listener, socket_file) = bind_socket(&config.socket, socket_group)?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => {
            Some(Shared(Arc::new(TcpListener::bind(addr).await.map_err(
                |source| DaemonError::MetricsListen { addr, source },
            )?)))
        }
        None => None,
    };
    let telemetry = Arc::new(Telemetry::new(
        config.endpoints.iter().map(|e| e.name.as_str()),
        now_millis(),
    ));
    let sender = HttpSender::new(
        DestinationGuard::new(config.allow.clone()),
        config.connect_timeout,
        config.response_body_cap,
    )?;
    let mut daemon = Daemon {
        config: Arc::clone(&config),
        listener: Shared(Arc::new(listener)),
        metrics_listener,
        telemetry,
        sender,
        ready: false,
        first: true,
        reopen_wait: REOPEN_EVERY,
        said_degraded: false,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let result = loop {
        next = match next {
            Phase::Open(store) => daemon.serve(store, shutdown.as_mut()).await,
            Phase::Closed => match open_again(&config).await {
                Ok(store) => Phase::Open(store),
                Err(error) => {
                    daemon.reopen_failed();
                    Phase::Down(error.to_string())
                }
            },
            Phase::Down(reason) => daemon.serve_without_store(reason, shutdown.as_mut()).await,
            Phase::Stop(result) => break result,
        };
        daemon.first = false;
    };
    remove_socket(&config.socket, socket_file);
    tracing::info!("hookd stopped");
    result
}

/// Where the daemon's loop goes next.
enum Phase {
    /// Serve this store.
    Open(Store),
    /// The store failed, the data dir has space again, and every handle on the store is dropped: open it.
    Closed,
    /// No store is open, for this reason: serve without one and try to open it now and then.
    Down(String),
    /// Stopped on request (or failed to start): the daemon's result.
    Stop(Result<(), DaemonError>),
}

/// What outlives a store: the config, the listeners (bound once), the counters and the HTTP client.
struct Daemon {
    config: Arc<Config>,
    listener: Shared<UnixListener>,
    metrics_listener: Option<Shared<TcpListener>>,
    telemetry: Arc<Telemetry>,
    sender: HttpSender,
    /// Whether systemd has been told `READY=1`.
    ready: bool,
    /// The first store of this process, opened at start: an error starting it that is not for want of space
    /// stops the daemon (a config or data error an operator must see), as it always did.
    first: bool,
    /// The wait before the next attempt to open the store.
    reopen_wait: Duration,
    /// Whether systemd was last told `STATUS=degraded: ...` (a store serving again says `STATUS=serving`).
    said_degraded: bool,
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
