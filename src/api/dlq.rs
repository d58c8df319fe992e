//! The dead-letter queue: list, show, replay, purge.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State as AxumState};
use bytes::Bytes;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, parse_json};
use super::messages::{parse_id, read_body, view};
use super::wire::{DeadItem, DeadList, DlqSelection, MessageView, PurgeResponse, ReplayResponse};
use crate::model::{MessageId, Stage, now_millis};
use crate::store::Selection;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    endpoint: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

pub(super) async fn list(
    AxumState(state): AxumState<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeadList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let after = query.after.as_deref().map(parse_id).transpose()?;
    let page = state
        .store
        .list_dead(query.endpoint.as_deref(), after, limit)?;
    let mut items = Vec::with_capacity(page.items.len());
    for record in page.items {
        let last_status = state
            .store
            .attempts(record.id)?
            .last()
            .and_then(|a| a.status);
        items.push(DeadItem {
            id: record.id.to_string(),
            endpoint: record.endpoint,
            kind: record.kind,
            dead_at: record.dead_at,
            reason: record.dead_reason.unwrap_or_default(),
            attempts: record.cycle_attempts,
            last_status,
        });
    }
    Ok(Json(DeadList {
        items,
        next: page.next.map(|id| id.to_string()),
    }))
}

pub(super) async fn show(
    AxumState(state): AxumState<AppState>,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let id = parse_id(&id)?;
    match state.store.get(id)? {
        Some(record) if record.stage == Stage::Dead => Ok(Json(view(&state, record)?)),
        _ => Err(ApiError::not_found(format!(
            "{id} is not in the dead-letter queue"
        ))),
    }
}

/// Turns the wire selection into the store's, and lists requested ids that are not dead letters.
fn selection(state: &AppState, body: DlqSelection) -> Result<(Selection, Vec<String>), ApiError> {
    if let Some(endpoint) = &body.endpoint {
        if !body.all {
            return Err(ApiError::invalid(
                "endpoint: only valid together with \"all\": true",
            ));
        }
        if state.config.endpoint(endpoint).is_none()
            && state
                .store
                .list_dead(Some(endpoint), None, 1)?
                .items
                .is_empty()
        {
            return Err(ApiError::unknown_endpoint(endpoint));
        }
    }
    match (body.all, body.ids.is_empty()) {
        (true, true) => Ok((
            Selection::All {
                endpoint: body.endpoint,
            },
            Vec::new(),
        )),
        (false, false) => {
            let ids = body
                .ids
                .iter()
                .map(|id| parse_id(id))
                .collect::<Result<Vec<MessageId>, _>>()?;
            let mut dead = Vec::new();
            let mut not_dead = Vec::new();
            for id in ids {
                match state.store.get(id)? {
                    Some(record) if record.stage == Stage::Dead => dead.push(id),
                    _ => not_dead.push(id.to_string()),
                }
            }
            Ok((Selection::Ids(dead), not_dead))
        }
        (true, false) => Err(ApiError::invalid(
            "give either \"ids\" or \"all\", not both",
        )),
        (false, true) => Err(ApiError::invalid(
            "ids: give at least one id, or \"all\": true",
        )),
    }
}

pub(super) async fn replay(
    AxumState(state): AxumState<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ReplayResponse>, ApiError> {
    let body: DlqSelection = parse_json(&read_body(body)?)?;
    let (selection, not_dead) = selection(&state, body)?;
    let endpoints = state.store.replay(&selection, now_millis())?;
    state.store.commit().await?;
    let mut woken = endpoints.clone();
    woken.sort();
    woken.dedup();
    for endpoint in &woken {
        state.lanes.wake(endpoint);
    }
    Ok(Json(ReplayResponse {
        replayed: endpoints.len(),
        not_dead,
    }))
}

pub(super) async fn purge(
    AxumState(state): AxumState<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PurgeResponse>, ApiError> {
    let body: DlqSelection = parse_json(&read_body(body)?)?;
    let (selection, not_dead) = selection(&state, body)?;
    let purged = state.store.purge(&selection)?;
    state.store.commit().await?;
    Ok(Json(PurgeResponse { purged, not_dead }))
}
