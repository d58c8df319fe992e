//! The socket API: axum on a Unix socket, JSON in and out.
//!
//! Handlers validate fully before they touch the store, so a refused request changes nothing. An enqueue is
//! answered 202 only after the store's group commit made it durable. Paths and bodies are documented in
//! docs/API.md; the wire types are in [`wire`], shared with the CLI's [`client`].

mod admission;
pub mod client;
mod dlq;
mod endpoint_changes;
mod endpoints;
pub mod error;
mod events;
mod message_list;
mod messages;
pub mod metrics;
pub mod tokens;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dispatch::Lanes;
use crate::model::{MessageRecord, Stage, State};
use crate::store::Store;
use crate::telemetry::Telemetry;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub lanes: Lanes,
    /// Digests of the live access tokens.
    pub tokens: tokens::TokenDigests,
    /// Run-time counters (`/metrics`, `/v1/stats`) and the live attempt feed (`/v1/events`).
    pub telemetry: Arc<Telemetry>,
    /// Cancelled when the daemon shuts down: ends open `/v1/events` streams, which graceful shutdown
    /// would otherwise wait for forever.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// The state word for a record: `held` when it is queued for an endpoint with no running lane.
    pub fn state_of(&self, record: &MessageRecord) -> State {
        match record.stage {
            Stage::Queued if !self.lanes.is_active(&record.endpoint) => State::Held,
            Stage::Queued => State::Queued,
            Stage::InFlight => State::InFlight,
            Stage::Delivered => State::Delivered,
            Stage::Dead => State::Dead,
        }
    }
}

/// The router with every path of the public surface.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_batch_bytes;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/stats", get(metrics::stats))
        .route("/v1/events", get(events::stream))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/v1/messages",
            post(messages::enqueue).get(message_list::list),
        )
        .route("/v1/messages/batch", post(messages::enqueue_batch))
        .route("/v1/messages/{id}", get(messages::show))
        .route("/v1/messages/{id}/retry", post(message_list::retry))
        .route("/v1/messages/{id}/resend", post(message_list::resend))
        .route("/v1/dlq", get(dlq::list))
        .route("/v1/dlq/{id}", get(dlq::show))
        .route("/v1/dlq/replay", post(dlq::replay))
        .route("/v1/dlq/purge", post(dlq::purge))
        .route(
            "/v1/endpoints",
            get(endpoints::list).post(endpoint_changes::create),
        )
        .route(
            "/v1/endpoints/{name}",
            get(endpoints::show)
                .put(endpoint_changes::update)
                .patch(endpoint_changes::patch)
                .delete(endpoint_changes::delete),
        )
        .route("/v1/endpoints/{name}/reset", post(endpoint_changes::reset))
        .route("/v1/endpoints/{name}/verify", post(endpoints::verify))
        .route("/v1/endpoints/{name}/pause", post(endpoints::pause))
        .route("/v1/endpoints/{name}/resume", post(endpoints::resume))
        .route("/v1/endpoints/{name}/enable", post(endpoints::enable))
        .route("/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/v1/tokens/{name}", delete(tokens::revoke))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refuse_writes_while_down,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            tokens::check,
        ))
        .with_state(state)
}

/// `ok`, or `degraded` while the store cannot be written (a failed sled commit, an unreachable database),
/// with the reason: a load balancer or a cluster's health check takes the node out of rotation then.
async fn health(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::Json<wire::Health> {
    let store_error = state.store.failure();
    axum::Json(wire::Health {
        status: if store_error.is_some() {
            "degraded"
        } else {
            "ok"
        }
        .into(),
        version: env!("CARGO_PKG_VERSION").into(),
        store: state.store.backend_name().into(),
        store_error,
    })
}

/// While the store refuses every write (a failed sled commit), a request that could write is answered 503
/// `store_unavailable` before its handler runs, so that nothing reaches sled that no commit would make
/// durable; reads (`GET`, `HEAD`) go on from what sled and the daemon hold in memory.
async fn refuse_writes_while_down(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    use axum::response::IntoResponse;
    if ![Method::GET, Method::HEAD].contains(request.method())
        && let Some(failure) = state.store.latched_failure()
    {
        return error::ApiError::store_down(&failure).into_response();
    }
    next.run(request).await
}

/// The API while no store is open (it could not be opened, or is being opened again): `/v1/health` answers
/// `degraded` with `reason`, which the daemon keeps current; everything else is 503 `store_unavailable`.
/// Tokens live in the store, so none is asked for: nothing here reads or changes anything.
pub fn store_down_router(store: &'static str, reason: Arc<std::sync::Mutex<String>>) -> Router {
    let now = move || {
        reason
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    };
    let for_health = now.clone();
    Router::new()
        .route(
            "/v1/health",
            get(move || {
                let reason = for_health();
                async move {
                    axum::Json(wire::Health {
                        status: "degraded".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        store: store.into(),
                        store_error: Some(reason),
                    })
                }
            }),
        )
        .fallback(move || {
            let reason = now();
            async move {
                error::ApiError::unavailable(
                    "store_unavailable",
                    format!(
                        "the store is not open ({reason}); hookd opens it again once the data dir has free space"
                    ),
                    error::STORE_RETRY_AFTER_SECS,
                )
            }
        })
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::not_found(format!("no such path: {}", uri.path()))
}
