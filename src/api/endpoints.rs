//! Endpoints as they run, with their message counts and where they are defined: the reads (`GET`), the
//! operator's controls (pause, resume, enable, verify), and the daemon-wide stats. Changes to an endpoint's
//! settings are in `endpoint_changes.rs`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State as AxumState};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::wire::{CircuitInfo, EndpointList, EndpointView, Stats};
use crate::config::{Auth, EndpointConfig, masked_url};
use crate::dispatch::health::CircuitState;
use crate::dispatch::{CircuitView, ControlChange, LaneStatus, Origin};
use crate::endpoint_spec::{Table, masked};
use crate::retry::Backoff;
use crate::store::StageCounts;

/// Where an endpoint is defined, its run-time overrides and its own table, as a view shows them.
struct Definition {
    origin: Origin,
    overrides: Vec<String>,
    table: Table,
}

fn describe(
    endpoint: &EndpointConfig,
    status: Option<LaneStatus>,
    circuit: Option<CircuitView>,
    counts: StageCounts,
    definition: Definition,
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
        urls: endpoint
            .urls
            .iter()
            .map(|(kind, url)| (kind.clone(), masked_url(url)))
            .collect(),
        format: endpoint.format.name().into(),
        verification: match (&endpoint.verification, endpoint.verification_waived) {
            (Some(_), _) => Some("handshake".into()),
            (None, true) => Some("none".into()),
            (None, false) => None,
        },
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
        max_queued: endpoint.max_queued,
        counts,
        origin: definition.origin.name().into(),
        overrides: definition.overrides,
        settings: masked(&definition.table),
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
        LaneStatus::Throttled { until } => Some(throttled_reason(until)),
    }
}

/// The reason shown while a receiver's `Retry-After` holds the endpoint back.
pub(super) fn throttled_reason(until: crate::model::Millis) -> String {
    format!(
        "receiver asked to wait until {} (Retry-After); nothing new is sent before then",
        crate::model::rfc3339(until)
    )
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

/// `GET /v1/endpoints` filters and page.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
    format: Option<String>,
    state: Option<String>,
    prefix: Option<String>,
}

/// The most endpoints one page holds.
const MAX_PAGE: usize = 1000;

pub(super) async fn list(
    AxumState(state): AxumState<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<EndpointList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(format!(
            "limit: {limit} must be between 1 and {MAX_PAGE}"
        )));
    }
    if let Some(wanted) = &query.state
        && !LaneStatus::NAMES.contains(&wanted.as_str())
    {
        return Err(ApiError::invalid(format!(
            "state: `{wanted}` is not one of: {}",
            LaneStatus::NAMES.join(", ")
        )));
    }
    if let Some(format) = &query.format
        && crate::formats::FormatKind::from_name(format).is_none()
    {
        return Err(ApiError::invalid(format!(
            "format: unknown format `{format}` (known: {})",
            crate::formats::FormatKind::NAMES.join(", ")
        )));
    }
    let (names, next) = state.lanes.names(query.after.as_deref(), limit, |name, e| {
        query.prefix.as_deref().is_none_or(|p| name.starts_with(p))
            && query.format.as_deref().is_none_or(|f| e.format.name() == f)
            && query
                .state
                .as_deref()
                .is_none_or(|wanted| state.lanes.status(name).is_some_and(|s| s.name() == wanted))
    });
    let counts = state.store.counts()?;
    let mut endpoints = Vec::with_capacity(names.len());
    for name in names {
        let own = counts.by_endpoint.get(&name).copied().unwrap_or_default();
        // An endpoint deleted since the names were read is left out.
        if let Ok(view) = view_with(&state, &name, own) {
            endpoints.push(view);
        }
    }
    Ok(Json(EndpointList { endpoints, next }))
}

pub(super) async fn show(
    AxumState(state): AxumState<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(live_view(&state, &name)?))
}

/// The endpoint as it runs now (live settings), with its status, counts and definition; 404 when unknown.
pub(super) fn live_view(state: &AppState, name: &str) -> Result<EndpointView, ApiError> {
    let counts = state.store.counts()?;
    let own = counts.by_endpoint.get(name).copied().unwrap_or_default();
    view_with(state, name, own)
}

fn view_with(state: &AppState, name: &str, counts: StageCounts) -> Result<EndpointView, ApiError> {
    let live = state
        .lanes
        .endpoint(name)
        .ok_or_else(|| ApiError::unknown_endpoint(name))?;
    let origin = state
        .lanes
        .origin(name)
        .ok_or_else(|| ApiError::unknown_endpoint(name))?;
    let stored = state.store.endpoint_state(name)?;
    let definition = match origin {
        Origin::Config => {
            let mut table = state.config.declared.get(name).cloned().unwrap_or_default();
            table.extend(stored.settings.clone());
            Definition {
                origin,
                overrides: stored.settings.keys().cloned().collect(),
                table,
            }
        }
        Origin::Api => Definition {
            origin,
            overrides: Vec::new(),
            table: stored.definition.unwrap_or_default(),
        },
    };
    Ok(describe(
        &live,
        state.lanes.status(name),
        state.lanes.circuit(name),
        counts,
        definition,
    ))
}

/// `POST /v1/endpoints/{name}/verify`: runs the verification handshake now; answers the endpoint.
pub(super) async fn verify(
    AxumState(state): AxumState<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    state
        .lanes
        .endpoint(&name)
        .ok_or_else(|| ApiError::unknown_endpoint(&name))?;
    if state.lanes.verify(&name).await.is_none() {
        return Err(ApiError::invalid(format!(
            "endpoint `{name}` has no verification handshake"
        )));
    }
    Ok(Json(live_view(&state, &name)?))
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
    let control = state
        .lanes
        .control(&name, change)
        .await
        .ok_or_else(|| ApiError::unknown_endpoint(&name))??;
    // The lane writes its new status when it notices the change; answer with the status it will reach.
    let mut view = live_view(&state, &name)?;
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
        size_on_disk: state.store.size_on_disk().await?,
    }))
}
