//! The dead-letter queue: list, show, replay, purge; narrowed by endpoint, time, reason and status, and
//! replay and purge tried without changing anything (`dry_run`).
//!
//! This module holds the four handlers; finding the dead letters that pass a filter is in `filter`, and
//! resolving a replay's or purge's selection and applying it in steps is in `bulk`.

mod bulk;
mod filter;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State as AxumState};
use bytes::Bytes;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, parse_json};
use super::message_list::{MAX_PAGE, page_limit};
use super::messages::{parse_id, read_body, view};
use super::wire::{DeadItem, DeadList, DlqSelection, MessageView, PurgeResponse, ReplayResponse};
use crate::model::{Stage, now_millis};
use crate::store::Selection;
use bulk::{Bulk, dead_counts, in_chunks, selection};
use filter::{DeadFilter, scan};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    endpoint: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
    since: Option<String>,
    until: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    reason: Option<String>,
    status: Option<u16>,
}

pub(super) async fn list(
    AxumState(state): AxumState<AppState>,
    scope: Option<axum::Extension<super::tokens::Scope>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeadList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = page_limit(scope.as_ref(), query.endpoint.as_deref(), query.limit)?;
    let after = query.after.as_deref().map(parse_id).transpose()?;
    let time = |field: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| super::message_list::parse_time(field, t))
            .transpose()
    };
    let filter = DeadFilter {
        until: time("until", &query.until)?,
        kind: query.kind.clone(),
        ..DeadFilter::new(
            time("since", &query.since)?,
            query.reason.as_deref(),
            query.status,
        )
    };
    let (found, next) = scan(
        &state,
        query.endpoint.as_deref(),
        after,
        limit,
        &filter,
        true,
    )
    .await?;
    let items = found
        .into_iter()
        .map(|(record, last_status)| DeadItem {
            id: record.id.to_string(),
            endpoint: record.endpoint,
            kind: record.kind,
            dead_at: record.dead_at,
            reason: record.dead_reason.unwrap_or_default(),
            attempts: record.cycle_attempts,
            last_status,
        })
        .collect();
    Ok(Json(DeadList {
        items,
        next: next.map(|id| id.to_string()),
    }))
}

pub(super) async fn show(
    AxumState(state): AxumState<AppState>,
    scope: Option<axum::Extension<super::tokens::Scope>>,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let id = parse_id(&id)?;
    match state.store.get(id).await? {
        Some(record) if record.stage == Stage::Dead => {
            super::tokens::Scope::allows(scope.as_deref(), &record.endpoint)?;
            Ok(Json(view(&state, record).await?))
        }
        _ => Err(ApiError::not_found(format!(
            "{id} is not in the dead-letter queue"
        ))),
    }
}

pub(super) async fn replay(
    AxumState(state): AxumState<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ReplayResponse>, ApiError> {
    let body: DlqSelection = parse_json(&read_body(body, state.config.max_batch_bytes)?)?;
    let resolved = selection(&state, body).await?;
    if resolved.dry_run {
        return Ok(Json(ReplayResponse {
            replayed: 0,
            selected: Some(resolved.ids(&state).await?),
            not_dead: resolved.not_dead,
            dry_run: true,
        }));
    }
    // Replays are admitted like enqueues: to endpoints that exist, within their bounds and the daemon's.
    let per_endpoint = match &resolved.selection {
        Selection::All { endpoint } => dead_counts(&state, endpoint.as_deref())?,
        selection => state.store.dead_by_endpoint(selection).await?,
    };
    let total: u64 = per_endpoint.values().sum();
    super::admission::admit(&state, total, 0)?;
    for (name, count) in &per_endpoint {
        let endpoint = state.lanes.endpoint(name).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "unknown_endpoint",
                format!("dead letters of `{name}` cannot be replayed: no endpoint of that name exists (create it again first)"),
            )
        })?;
        super::admission::admit_to(&state, &endpoint, *count)?;
    }
    let (replayed, woken) =
        in_chunks(&state, resolved.selection, Bulk::Replay(now_millis())).await?;
    state.store.commit().await?;
    tracing::info!(replayed, "dead letters replayed");
    for endpoint in &woken {
        state.lanes.wake(endpoint);
    }
    Ok(Json(ReplayResponse {
        replayed,
        not_dead: resolved.not_dead,
        dry_run: false,
        selected: None,
    }))
}

pub(super) async fn purge(
    AxumState(state): AxumState<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PurgeResponse>, ApiError> {
    let body: DlqSelection = parse_json(&read_body(body, state.config.max_batch_bytes)?)?;
    let resolved = selection(&state, body).await?;
    if resolved.dry_run {
        return Ok(Json(PurgeResponse {
            purged: 0,
            selected: Some(resolved.ids(&state).await?),
            not_dead: resolved.not_dead,
            dry_run: true,
        }));
    }
    let (purged, _) = in_chunks(&state, resolved.selection, Bulk::Purge).await?;
    state.store.commit().await?;
    tracing::info!(purged, "dead letters purged");
    Ok(Json(PurgeResponse {
        purged,
        not_dead: resolved.not_dead,
        dry_run: false,
        selected: None,
    }))
}
