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

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;
use tokio::time::Instant;
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

/// While the store is down: how often the data dir's free space is looked at, and the first wait before
/// an attempt to open the store again. Each failed attempt doubles the wait, up to [`REOPEN_WAIT_MAX`].
const REOPEN_EVERY: Duration = Duration::from_secs(2);

/// The longest wait between two attempts to open the store.
const REOPEN_WAIT_MAX: Duration = Duration::from_secs(60);

/// A store that failed sooner than this after it was opened makes the next open wait longer (a disk that
/// fails for another reason than space is not reopened every few seconds).
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The free space the data dir's file system needs (or `min_free_disk_bytes`, when larger) before the store
/// is opened again.
const REOPEN_MIN_FREE: u64 = 4 * 1024 * 1024;

/// How often a repeated line about the store being down is logged at most.
const SAY_EVERY: Duration = Duration::from_secs(60);

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

/// A store being served: what `Daemon::serve` started and stops.
struct Serving {
    /// Stops the lanes, the pruner, the lease sweeper and the follower.
    lanes_cancel: CancellationToken,
    /// Stops the socket API, `/metrics` over TCP and open `/v1/events` streams.
    api_cancel: CancellationToken,
    dispatcher: Dispatcher,
    tasks: Vec<JoinHandle<()>>,
    api: Api,
}

/// The socket API (and `/metrics` over TCP) served on the daemon's listeners until its token is cancelled.
struct Api {
    server: JoinHandle<std::io::Result<()>>,
    metrics: Option<JoinHandle<std::io::Result<()>>>,
}

impl Api {
    fn start(
        daemon: &Daemon,
        socket: axum::Router,
        metrics: Option<axum::Router>,
        cancel: &CancellationToken,
    ) -> Api {
        let server = axum::serve(daemon.listener.clone(), socket)
            .with_graceful_shutdown(cancel.clone().cancelled_owned());
        let metrics = match (&daemon.metrics_listener, metrics) {
            (Some(listener), Some(router)) => {
                let server = axum::serve(listener.clone(), router)
                    .with_graceful_shutdown(cancel.clone().cancelled_owned());
                Some(tokio::spawn(async move { server.await }))
            }
            _ => None,
        };
        Api {
            server: tokio::spawn(async move { server.await }),
            metrics,
        }
    }

    /// Waits for the API to stop (its token cancelled): requests in progress get `grace` to finish, then are
    /// dropped. Returns how the socket API ended.
    async fn stop(mut self, grace: Duration) -> Result<(), DaemonError> {
        let served = match tokio::time::timeout(grace, &mut self.server).await {
            Ok(served) => served,
            Err(_) => {
                tracing::warn!("grace period over; API requests still in progress are dropped");
                self.server.abort();
                Ok(Ok(()))
            }
        };
        if let Some(metrics) = self.metrics {
            match tokio::time::timeout(grace, metrics).await {
                Ok(Ok(Err(error))) => tracing::error!(%error, "the /metrics TCP listener failed"),
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!("grace period over; /metrics requests in progress are dropped")
                }
            }
        }
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DaemonError::Serve(e)),
            Err(e) => Err(DaemonError::Serve(std::io::Error::other(e))),
        }
    }
}

impl Daemon {
    /// Starts the lanes and the API on `store`, then waits for `shutdown` (an ordered stop) or the store's
    /// failure (lanes stop, the API stays up on the failed store until the data dir has space again).
    async fn serve(
        &mut self,
        store: Store,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> Phase {
        let opened_at = Instant::now();
        let serving = match self.start(&store).await {
            Ok(serving) => serving,
            Err(error) => {
                if self.first && !out_of_space(&self.config, &error) {
                    return Phase::Stop(Err(error.into()));
                }
                tracing::error!(%error, "the store opened but cannot be served");
                drop(store);
                self.reopen_failed();
                return Phase::Down(error.to_string());
            }
        };
        if !self.ready {
            // The socket is listening, so a client connecting from now on is answered.
            crate::notify::notify("READY=1");
            self.ready = true;
        }
        if std::mem::take(&mut self.said_degraded) {
            crate::notify::notify("STATUS=serving");
        }
        let reason = tokio::select! {
            () = &mut shutdown => return Phase::Stop(self.stop(serving, &store).await),
            reason = store.failed() => reason,
        };
        tracing::error!(
            %reason,
            "the store can no longer make writes durable: deliveries stop; the API stays up (health \
             `degraded`, every write answered 503 store_unavailable) and hookd opens the store again once the \
             data dir has free space; nothing acknowledged is lost"
        );
        crate::notify::notify(&format!("STATUS=degraded: the store failed: {reason}"));
        self.said_degraded = true;
        if opened_at.elapsed() < STABLE_AFTER {
            self.reopen_failed();
        } else {
            self.reopen_wait = REOPEN_EVERY;
        }
        serving.lanes_cancel.cancel();
        serving.dispatcher.join().await;
        for task in serving.tasks {
            let _ = task.await;
        }
        tracing::info!(
            "deliveries stopped; messages in flight are due again once the store is open again"
        );
        let stop = tokio::select! {
            () = &mut shutdown => true,
            () = wait_for_space(&self.config, self.reopen_wait) => false,
        };
        if stop {
            crate::notify::notify("STOPPING=1");
            tracing::info!(
                "shutting down with the store failed: everything acknowledged is on disk; messages in \
                 flight are due again at the next start"
            );
        } else {
            tracing::info!(
                data_dir = %self.config.data_dir.display(),
                "the data dir has free space again: opening the store again"
            );
        }
        serving.api_cancel.cancel();
        let _ = serving.api.stop(self.config.shutdown_grace).await;
        drop(store);
        if stop {
            Phase::Stop(Ok(()))
        } else {
            Phase::Closed
        }
    }

    /// Puts a previous run's leases back to due, starts the lanes, the background tasks and the API.
    async fn start(&self, store: &Store) -> Result<Serving, StoreError> {
        let config = &self.config;
        let released = store.release_all_leases(now_millis()).await?;
        if released > 0 {
            tracing::info!(
                released,
                "messages in flight at the last stop are due again"
            );
        }
        crate::dispatch::upgrade_stored_endpoints(store, &config.defaults).await?;
        let tokens = TokenDigests::load(store)?;
        let lanes_cancel = CancellationToken::new();
        let api_cancel = CancellationToken::new();
        let context = Arc::new(DispatchContext {
            store: store.clone(),
            sender: self.sender.clone(),
            max_retry_after: config.max_retry_after,
            shutdown_grace: config.shutdown_grace,
            telemetry: Arc::clone(&self.telemetry),
        });
        let dispatcher = Dispatcher::start(context, Arc::clone(config), lanes_cancel.clone())
            .inspect_err(|_| lanes_cancel.cancel())?;
        let state = AppState {
            store: store.clone(),
            config: Arc::clone(config),
            lanes: dispatcher.lanes(),
            tokens,
            telemetry: Arc::clone(&self.telemetry),
            shutdown: api_cancel.clone(),
        };
        let mut tasks = Vec::new();
        if let Some(follower) = crate::cluster::follow(
            store,
            dispatcher.lanes(),
            state.tokens.clone(),
            lanes_cancel.clone(),
        ) {
            tasks.push(follower);
        }
        tasks.push(tokio::spawn(prune_delivered(
            store.clone(),
            config.retention,
            lanes_cancel.clone(),
        )));
        tasks.push(tokio::spawn(sweep_leases(
            store.clone(),
            dispatcher.lanes(),
            lanes_cancel.clone(),
        )));
        if let Some(listener) = &self.metrics_listener
            && let Ok(addr) = listener.0.local_addr()
        {
            tracing::info!(metrics = %addr, "serving /metrics over TCP");
        }
        let metrics = crate::api::metrics::tcp_router(state.clone());
        let api = Api::start(self, router(state), Some(metrics), &api_cancel);
        tracing::info!(
            socket = %config.socket.display(),
            data_dir = %config.data_dir.display(),
            store = store.backend_name(),
            endpoints = config.endpoints.len(),
            "hookd is serving"
        );
        Ok(Serving {
            lanes_cancel,
            api_cancel,
            dispatcher,
            tasks,
            api,
        })
    }

    /// The ordered stop of a store being served.
    async fn stop(&self, serving: Serving, store: &Store) -> Result<(), DaemonError> {
        crate::notify::notify("STOPPING=1");
        tracing::info!("shutting down: no new requests; finishing attempts in flight");
        serving.lanes_cancel.cancel();
        serving.api_cancel.cancel();
        // Requests in progress get the grace period to finish; the API does not hold the exit past it.
        let served = serving.api.stop(self.config.shutdown_grace).await;
        serving.dispatcher.join().await;
        for task in serving.tasks {
            let _ = task.await;
        }
        if let Some(reason) = store.latched_failure() {
            // Nothing more can be written; what is leased is due again at the next start.
            tracing::info!(
                %reason,
                "the store failed while stopping: everything acknowledged is on disk; messages in flight \
                 are due again at the next start"
            );
            return served;
        }
        let released = store.release_all_leases(now_millis()).await?;
        if released > 0 {
            tracing::info!(
                released,
                "attempts not finished within the grace period are due again"
            );
        }
        store.commit().await?;
        served
    }

    /// Serves without a store (the health check says why) and tries to open it whenever the data dir has
    /// space, each failed attempt doubling the wait; until it opens or `shutdown` resolves.
    async fn serve_without_store(
        &mut self,
        reason: String,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> Phase {
        tracing::error!(
            %reason,
            socket = %self.config.socket.display(),
            data_dir = %self.config.data_dir.display(),
            "hookd is serving without its store: health answers `degraded`, everything else 503 \
             store_unavailable; the store is opened again once the data dir has free space"
        );
        crate::notify::notify(&format!("STATUS=degraded: the store is not open: {reason}"));
        self.said_degraded = true;
        let reason = Arc::new(Mutex::new(reason));
        let api_cancel = CancellationToken::new();
        let down = crate::api::store_down_router(backend_name(&self.config), Arc::clone(&reason));
        let api = Api::start(self, down.clone(), Some(down), &api_cancel);
        if !self.ready {
            crate::notify::notify("READY=1");
            self.ready = true;
        }
        let mut say = Throttle::new(SAY_EVERY);
        let opened = loop {
            tokio::select! {
                () = &mut shutdown => break None,
                () = tokio::time::sleep(self.reopen_wait) => {}
            }
            let (free, needed) = space(&self.config);
            if free < needed {
                if let Some(unsaid) = say.pass() {
                    tracing::warn!(
                        free,
                        needed,
                        data_dir = %self.config.data_dir.display(),
                        times_not_logged = unsaid,
                        "the store stays closed until the data dir's file system has free space"
                    );
                }
                continue;
            }
            match open_again(&self.config).await {
                Ok(store) => break Some(store),
                Err(error) => {
                    self.reopen_failed();
                    if let Some(unsaid) = say.pass() {
                        tracing::error!(
                            %error,
                            next_attempt_in_s = self.reopen_wait.as_secs(),
                            times_not_logged = unsaid,
                            "cannot open the store yet; trying again"
                        );
                    }
                    *reason.lock().unwrap_or_else(|p| p.into_inner()) = error.to_string();
                }
            }
        };
        if opened.is_none() {
            crate::notify::notify("STOPPING=1");
            tracing::info!("shutting down without a store: nothing to finish");
        }
        api_cancel.cancel();
        let _ = api.stop(self.config.shutdown_grace).await;
        match opened {
            Some(store) => {
                tracing::info!("the store is open again");
                Phase::Open(store)
            }
            None => Phase::Stop(Ok(())),
        }
    }

    /// An attempt to open (or serve) the store failed, or the store failed again soon: wait longer.
    fn reopen_failed(&mut self) {
        self.reopen_wait = (self.reopen_wait * 2).min(REOPEN_WAIT_MAX);
    }
}

/// Opens the store again. The handles of the store before it were just dropped, but its group-commit task
/// may not have run since and still holds sled's lock: `Locked` is retried for a moment.
async fn open_again(config: &Config) -> Result<Store, StoreError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match crate::cluster::open_store(config).await {
            Err(StoreError::Locked(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            opened => return opened,
        }
    }
}

/// Resolves, at the earliest after `first`, once the data dir's file system has the space a reopen needs;
/// says at most once a minute that it waits.
async fn wait_for_space(config: &Config, first: Duration) {
    let mut say = Throttle::new(SAY_EVERY);
    tokio::time::sleep(first).await;
    loop {
        let (free, needed) = space(config);
        if free >= needed {
            return;
        }
        if let Some(unsaid) = say.pass() {
            tracing::warn!(
                free,
                needed,
                data_dir = %config.data_dir.display(),
                times_not_logged = unsaid,
                "the store stays failed until the data dir's file system has free space"
            );
        }
        tokio::time::sleep(REOPEN_EVERY).await;
    }
}

/// The data dir's file system's free bytes, and what opening the store again needs. A backend that is not
/// in the data dir (PostgreSQL) needs nothing there.
fn space(config: &Config) -> (u64, u64) {
    if !crate::cluster::is_embedded(config) {
        return (u64::MAX, 0);
    }
    let needed = config.min_free_disk_bytes.max(REOPEN_MIN_FREE);
    // The data dir itself may not exist yet (creating it is what failed): its nearest existing ancestor
    // is on the same file system.
    let free = config
        .data_dir
        .ancestors()
        .find_map(|dir| free_bytes(dir).ok())
        .unwrap_or(0);
    (free, needed)
}

/// Whether `error`, opening or starting the store, is for want of space: an `ENOSPC` (or quota) in its
/// causes, or less than [`REOPEN_MIN_FREE`] free on the data dir's file system. Such a store is waited for.
fn out_of_space(config: &Config, error: &StoreError) -> bool {
    if !crate::cluster::is_embedded(config) {
        return false;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        {
            return true;
        }
        cause = error.source();
    }
    let (free, _) = space(config);
    free < REOPEN_MIN_FREE
}

/// Bytes available to this (unprivileged) process on the file system holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> nix::Result<u64> {
    let stats = nix::sys::statvfs::statvfs(dir)?;
    Ok(stats
        .blocks_available()
        .saturating_mul(stats.fragment_size()))
}

fn backend_name(config: &Config) -> &'static str {
    if crate::cluster::is_embedded(config) {
        "sled"
    } else {
        "postgres"
    }
}

/// Lets a repeated log line through at most once per period; counts the ones held back.
struct Throttle {
    period: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    fn new(period: Duration) -> Throttle {
        Throttle {
            period,
            last: None,
            held: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged now.
    fn pass(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < self.period) {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

/// A listener bound once and served by one `axum::serve` after another (a store, then none, then a store
/// opened again), so the socket never goes away while the daemon runs: a connection made between two
/// servers waits in the listen backlog.
struct Shared<L>(Arc<L>);

impl<L> Clone for Shared<L> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl axum::serve::Listener for Shared<UnixListener> {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                Err(error) => accept_failed(error).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl axum::serve::Listener for Shared<TcpListener> {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                Err(error) => accept_failed(error).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// As axum's own listeners do: a connection's own failure is passed over; anything else (out of file
/// descriptors) is logged and waited out for a second.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
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
