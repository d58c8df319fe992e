//! Endpoints as configured, with their message counts; and the daemon-wide stats.

use axum::Json;
use axum::extract::{Path, State as AxumState};

use super::AppState;
use super::error::ApiError;
use super::wire::{CircuitInfo, EndpointList, EndpointView, Stats};
use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use bytes::Bytes;

use super::error::parse_json;
use super::messages::read_body;
use crate::config::{Auth, EndpointConfig, EndpointSettings, masked_url};
use crate::dispatch::health::CircuitState;
use crate::dispatch::{CircuitView, ControlChange, LaneStatus};
use crate::retry::Backoff;
use crate::store::StageCounts;

fn describe(
    endpoint: &EndpointConfig,
    status: Option<LaneStatus>,
    circuit: Option<CircuitView>,
    counts: StageCounts,
) -> EndpointView {
    let retry = match &endpoint.retry.backoff {
        Backoff::Schedule { delays, jitter } => format!(
            "schedule [{}] jitter {jitter}",
            delays
                .iter()
                .map(|d| humantime::format_duration(*d).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Backoff::Exponential {
            initial,
            max,
            multiplier,
            jitter,
        } => format!(
            "exponential {}ms x{multiplier} up to {}ms jitter {jitter}",
            initial.as_millis(),
            max.as_millis()
        ),
    };
    EndpointView {
        name: endpoint.name.clone(),
        url: masked_url(&endpoint.url),
        format: endpoint.format.name().into(),
        state: status
            .as_ref()
            .map_or("not_running", LaneStatus::name)
            .into(),
        state_reason: status.and_then(state_reason),
        circuit: circuit_info(endpoint, circuit),
        rate_limit: endpoint.rate_limit,
        signed: !endpoint.signing_keys.is_empty(),
        timeout_ms: endpoint.timeout.as_millis() as u64,
        concurrency: endpoint.concurrency,
        max_attempts: endpoint.retry.max_attempts,
        max_age: humantime::format_duration(endpoint.retry.max_age).to_string(),
        auth: endpoint.auth.as_ref().map(|auth| match auth {
            Auth::Bearer { .. } => "bearer ***".to_owned(),
            Auth::Basic { username, .. } => format!("basic {username}:***"),
        }),
        retry,
        counts,
    }
}

fn state_reason(status: LaneStatus) -> Option<String> {
    match status {
        LaneStatus::Active | LaneStatus::Paused => None,
        LaneStatus::Unverified { reason } | LaneStatus::Disabled { reason } => Some(reason),
        LaneStatus::CircuitOpen { until, failures } => Some(format!(
            "{failures} consecutive failures; one probe in {}",
            humantime::format_duration(std::time::Duration::from_millis(
                until.saturating_sub(crate::model::now_millis())
            ))
        )),
        LaneStatus::Probing => Some("one probe message decides whether the circuit closes".into()),
    }
}

fn circuit_info(endpoint: &EndpointConfig, circuit: Option<CircuitView>) -> CircuitInfo {
    let (state, open_until, failures) = match circuit {
        None => ("closed", None, 0),
        Some(view) => match view.state {
            CircuitState::Closed => ("closed", None, view.consecutive_failures),
            CircuitState::Open { until } => ("open", Some(until), view.consecutive_failures),
            CircuitState::Probing => ("probing", None, view.consecutive_failures),
        },
    };
    CircuitInfo {
        state: state.into(),
        consecutive_failures: failures,
        failure_threshold: endpoint.circuit_breaker.failure_threshold,
        cooldown_ms: endpoint.circuit_breaker.cooldown.as_millis() as u64,
        open_until,
    }
}

pub(super) async fn list(
    AxumState(state): AxumState<AppState>,
) -> Result<Json<EndpointList>, ApiError> {
    let counts = state.store.counts()?;
    let endpoints = state
        .config
        .endpoints
        .iter()
        .map(|e| {
            let own = counts.by_endpoint.get(&e.name).copied().unwrap_or_default();
            let live = state
                .lanes
                .endpoint(&e.name)
                .unwrap_or_else(|| Arc::new(e.clone()));
            describe(
                &live,
                state.lanes.status(&e.name),
                state.lanes.circuit(&e.name),
                own,
            )
        })
        .collect();
    Ok(Json(EndpointList { endpoints }))
}

pub(super) async fn show(
    AxumState(state): AxumState<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let endpoint = configured(&state, &name)?;
    Ok(Json(live_view(&state, endpoint)?))
}

/// The endpoint of that name in the config file, or 404.
fn configured<'a>(state: &'a AppState, name: &str) -> Result<&'a EndpointConfig, ApiError> {
    state
        .config
        .endpoint(name)
        .ok_or_else(|| ApiError::unknown_endpoint(name))
}

/// The endpoint as it runs now (live settings), with its lane status and counts.
fn live_view(state: &AppState, endpoint: &EndpointConfig) -> Result<EndpointView, ApiError> {
    let counts = state.store.counts()?;
    let own = counts
        .by_endpoint
        .get(&endpoint.name)
        .copied()
        .unwrap_or_default();
    let live = state
        .lanes
        .endpoint(&endpoint.name)
        .unwrap_or_else(|| Arc::new(endpoint.clone()));
    Ok(describe(
        &live,
        state.lanes.status(&endpoint.name),
        state.lanes.circuit(&endpoint.name),
        own,
    ))
}

/// `PUT /v1/endpoints/{name}`: changes url, timeout_ms, max_attempts or max_age at run time. Validated like
/// the config file, persisted in the store (surviving restarts), applied to the running lane at once.
pub(super) async fn update(
    AxumState(state): AxumState<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EndpointView>, ApiError> {
    let endpoint = configured(&state, &name)?;
    let change: EndpointSettings = parse_json(&read_body(body)?)?;
    if change == EndpointSettings::default() {
        return Err(ApiError::invalid(
            "give at least one of url, timeout_ms, max_attempts, max_age",
        ));
    }
    let mut stored = state.store.endpoint_state(&name)?;
    let merged = change.over(stored.settings.clone());
    let live = endpoint
        .with_settings(&merged)
        .map_err(|(field, reason)| ApiError::invalid(format!("{field}: {reason}")))?;
    stored.settings = merged;
    state.store.set_endpoint_state(&name, &stored).await?;
    tracing::info!(endpoint = %name, "endpoint settings changed at run time");
    state.lanes.update(live);
    Ok(Json(live_view(&state, endpoint)?))
}

/// `POST /v1/endpoints/{name}/verify`: runs the verification handshake now; answers the endpoint.
pub(super) async fn verify(
    AxumState(state): AxumState<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let endpoint = configured(&state, &name)?;
    if state.lanes.verify(&name).await.is_none() {
        return Err(ApiError::invalid(format!(
            "endpoint `{name}` has no verification handshake"
        )));
    }
    Ok(Json(live_view(&state, endpoint)?))
}

/// `POST /v1/endpoints/{name}/pause`: stop sending; messages stay queued (attempts untouched).
pub(super) async fn pause(
    state: AxumState<AppState>,
    name: Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    control(state, name, ControlChange::Pause).await
}

/// `POST /v1/endpoints/{name}/resume`: undo a pause.
pub(super) async fn resume(
    state: AxumState<AppState>,
    name: Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    control(state, name, ControlChange::Resume).await
}

/// `POST /v1/endpoints/{name}/enable`: send again to an endpoint disabled by a 410 Gone (and close its circuit).
pub(super) async fn enable(
    state: AxumState<AppState>,
    name: Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    control(state, name, ControlChange::Enable).await
}

async fn control(
    AxumState(state): AxumState<AppState>,
    Path(name): Path<String>,
    change: ControlChange,
) -> Result<Json<EndpointView>, ApiError> {
    let endpoint = configured(&state, &name)?;
    let control = state
        .lanes
        .control(&name, change)
        .await
        .ok_or_else(|| ApiError::unknown_endpoint(&name))??;
    // The lane writes its new status when it notices the change; answer with the status it will reach.
    let mut view = live_view(&state, endpoint)?;
    if let Some(reason) = control.disabled {
        view.state = "disabled".into();
        view.state_reason = Some(reason);
    } else if control.paused {
        view.state = "paused".into();
        view.state_reason = None;
    } else if matches!(view.state.as_str(), "paused" | "disabled") {
        view.state = "active".into();
        view.state_reason = None;
    }
    Ok(Json(view))
}

pub(super) async fn stats(AxumState(state): AxumState<AppState>) -> Result<Json<Stats>, ApiError> {
    let counts = state.store.counts()?;
    let mut totals = StageCounts::default();
    for c in counts.by_endpoint.values() {
        totals.queued += c.queued;
        totals.in_flight += c.in_flight;
        totals.delivered += c.delivered;
        totals.dead += c.dead;
    }
    let held_endpoints = counts
        .by_endpoint
        .iter()
        .filter(|(name, c)| c.queued > 0 && !state.lanes.is_active(name))
        .map(|(name, _)| name.clone())
        .collect();
    Ok(Json(Stats {
        totals,
        by_endpoint: counts.by_endpoint,
        held_endpoints,
        size_on_disk: state.store.size_on_disk()?,
    }))
}
