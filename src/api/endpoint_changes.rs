//! Endpoints created, changed, reset and deleted at run time. Each answers only after the store has made
//! the change durable; bodies are tables of config-file keys (`endpoint_spec.rs`), validated by the config
//! file's rules and the destination guard, so a refused change names its key and changes nothing.

use axum::Json;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;

use super::AppState;
use super::endpoints::live_view;
use super::error::{ApiError, parse_json};
use super::messages::read_body;
use super::wire::{EndpointDeleted, EndpointView};
use crate::config::EndpointSettings;
use crate::dispatch::EndpointError;
use crate::endpoint_spec::Table;
use crate::store::Retire;

impl From<EndpointError> for ApiError {
    fn from(error: EndpointError) -> ApiError {
        let message = error.to_string();
        match error {
            EndpointError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "exists", message),
            EndpointError::Unknown(name) => ApiError::unknown_endpoint(&name),
            EndpointError::Invalid(_) => ApiError::invalid(message),
            EndpointError::Declared(_) => {
                ApiError::new(StatusCode::CONFLICT, "declared_in_config", message)
            }
            EndpointError::NotDeclared(_) => {
                ApiError::new(StatusCode::CONFLICT, "not_declared", message)
            }
            EndpointError::NotEmpty { .. } => {
                ApiError::new(StatusCode::CONFLICT, "not_empty", message)
            }
            EndpointError::Store(store) => store.into(),
        }
    }
}

/// A body that must be a JSON object of endpoint keys.
fn table(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Table, ApiError> {
    match parse_json::<serde_json::Value>(&read_body(body, limit)?)? {
        serde_json::Value::Object(table) => Ok(table),
        _ => Err(ApiError::invalid(
            "the body must be a JSON object of endpoint settings",
        )),
    }
}

/// `POST /v1/endpoints`: creates an endpoint from `{"name", "format", "url", ...any endpoint key}`.
pub(super) async fn create(
    AxumState(state): AxumState<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    let table = table(body, state.config.max_batch_bytes)?;
    for required in ["name", "format", "url"] {
        if !table.contains_key(required) {
            return Err(ApiError::invalid(format!("{required}: required")));
        }
    }
    let created = state.lanes.create(table).await?;
    Ok((StatusCode::CREATED, Json(live_view(&state, &created.name)?)))
}

/// `PATCH /v1/endpoints/{name}`: changes any of the endpoint's keys (`null` drops a key back to its default,
/// or for a declared endpoint to the file's value).
pub(super) async fn patch(
    AxumState(state): AxumState<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EndpointView>, ApiError> {
    let patch = table(body, state.config.max_batch_bytes)?;
    if patch.is_empty() {
        return Err(ApiError::invalid(
            "give at least one endpoint key to change",
        ));
    }
    state.lanes.patch(&name, &patch).await?;
    Ok(Json(live_view(&state, &name)?))
}

/// `PUT /v1/endpoints/{name}`: changes url, timeout_ms, max_attempts or max_age (the older, narrower form of
/// `PATCH`).
pub(super) async fn update(
    AxumState(state): AxumState<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EndpointView>, ApiError> {
    state
        .lanes
        .endpoint(&name)
        .ok_or_else(|| ApiError::unknown_endpoint(&name))?;
    let change: EndpointSettings = parse_json(&read_body(body, state.config.max_batch_bytes)?)?;
    if change == EndpointSettings::default() {
        return Err(ApiError::invalid(
            "give at least one of url, timeout_ms, max_attempts, max_age",
        ));
    }
    state.lanes.patch(&name, &change.to_table()).await?;
    Ok(Json(live_view(&state, &name)?))
}

/// `POST /v1/endpoints/{name}/reset`: drops a declared endpoint's run-time overrides.
pub(super) async fn reset(
    AxumState(state): AxumState<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    state.lanes.reset(&name).await?;
    Ok(Json(live_view(&state, &name)?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteQuery {
    /// `dead-letter` or `purge`: what becomes of the endpoint's queued messages.
    messages: Option<String>,
}

/// `DELETE /v1/endpoints/{name}[?messages=dead-letter|purge]`.
pub(super) async fn delete(
    AxumState(state): AxumState<AppState>,
    Path(name): Path<String>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<EndpointDeleted>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let retire = match query.messages.as_deref() {
        None => None,
        Some("dead-letter") => Some(Retire::DeadLetter {
            reason: "endpoint deleted".into(),
        }),
        Some("purge") => Some(Retire::Purge),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "messages: `{other}` is not one of: dead-letter, purge"
            )));
        }
    };
    let retired = state.lanes.delete(&name, retire).await?;
    // A token scoped to the endpoint would otherwise reach a new endpoint created under the same name.
    let mut revoked = false;
    for token in state.store.tokens()? {
        if token.endpoint.as_deref() == Some(name.as_str()) {
            revoked |= state.store.revoke_token(&token.name).await?;
        }
    }
    if revoked {
        state.tokens.replace(&state.store)?;
        tracing::info!(endpoint = %name, "tokens scoped to the deleted endpoint revoked");
    }
    Ok(Json(EndpointDeleted {
        name,
        deleted: true,
        retired,
    }))
}
