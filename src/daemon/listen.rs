//! The listeners, bound once and shared by one `axum::serve` after another, and the API served on them:
//! the socket stays while stores come and go.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Daemon, DaemonError};

/// The socket API (and `/metrics` over TCP) served on the daemon's listeners until its token is cancelled.
pub(super) struct Api {
    server: JoinHandle<std::io::Result<()>>,
    metrics: Option<JoinHandle<std::io::Result<()>>>,
}

impl Api {
    pub(super) fn start(
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
    pub(super) async fn stop(mut self, grace: Duration) -> Result<(), DaemonError> {
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

/// A listener bound once and served by one `axum::serve` after another (a store, then none, then a store
/// opened again), so the socket never goes away while the daemon runs: a connection made between two
/// servers waits in the listen backlog.
pub(super) struct Shared<L>(pub(super) Arc<L>);

impl<L> Clone for Shared<L> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl axum::serve::Listener for Shared<UnixListener> {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let listener = &*self.0;
        accept_retrying(|| listener.accept()).await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl axum::serve::Listener for Shared<TcpListener> {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let listener = &*self.0;
        accept_retrying(|| listener.accept()).await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The first connection `accept` takes, its failures passed over or waited out as [`accept_failed`] says.
async fn accept_retrying<T, F>(mut accept: impl FnMut() -> F) -> T
where
    F: Future<Output = std::io::Result<T>>,
{
    loop {
        match accept().await {
            Ok(accepted) => return accepted,
            Err(error) => accept_failed(error).await,
        }
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
