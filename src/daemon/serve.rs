//! Serving one store: start the lanes, background tasks and API on it, then either stop in order on
//! shutdown, or, when the store fails, stop the lanes and keep the API up until the disk has space again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::tokens::TokenDigests;
use crate::api::{AppState, router};
use crate::dispatch::{DispatchContext, Dispatcher};
use crate::model::now_millis;
use crate::store::{Store, StoreError};

use super::listen::Api;
use super::store_down::{REOPEN_EVERY, STABLE_AFTER, out_of_space, wait_for_space};
use super::tasks::{prune_delivered, sweep_leases};
use super::{Daemon, DaemonError, Phase};

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

impl Daemon {
    /// Starts the lanes and the API on `store`, then waits for `shutdown` (an ordered stop) or the store's
    /// failure (lanes stop, the API stays up on the failed store until the data dir has space again).
    pub(super) async fn serve(
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
}
