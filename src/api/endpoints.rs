//! Endpoints as configured, with their message counts; and the daemon-wide stats.

use axum::Json;
use axum::extract::{Path, State as AxumState};

use super::AppState;
use super::error::ApiError;
use super::wire::{EndpointList, EndpointView, Stats};
use crate::config::{Auth, EndpointConfig};
use crate::retry::Backoff;
use crate::store::StageCounts;

fn describe(endpoint: &EndpointConfig, counts: StageCounts) -> EndpointView {
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
        url: endpoint.url.to_string(),
        format: endpoint.format.name().into(),
        state: "active".into(),
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

pub(super) async fn list(
    AxumState(state): AxumState<AppState>,
) -> Result<Json<EndpointList>, ApiError> {
    let counts = state.store.counts()?;
    let endpoints = state
        .config
        .endpoints
        .iter()
        .map(|e| {
            describe(
                e,
                counts.by_endpoint.get(&e.name).copied().unwrap_or_default(),
            )
        })
        .collect();
    Ok(Json(EndpointList { endpoints }))
}

pub(super) async fn show(
    AxumState(state): AxumState<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let endpoint = state
        .config
        .endpoint(&name)
        .ok_or_else(|| ApiError::unknown_endpoint(&name))?;
    let counts = state.store.counts()?;
    let own = counts.by_endpoint.get(&name).copied().unwrap_or_default();
    Ok(Json(describe(endpoint, own)))
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
        .filter(|(name, c)| c.queued > 0 && !state.wakers.has_lane(name))
        .map(|(name, _)| name.clone())
        .collect();
    Ok(Json(Stats {
        totals,
        by_endpoint: counts.by_endpoint,
        held_endpoints,
        size_on_disk: state.store.size_on_disk()?,
    }))
}
