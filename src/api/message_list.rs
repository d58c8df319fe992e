//! Finding messages in any state (`GET /v1/messages`) and an operator's nudges on one message: retry (a
//! queued or held message due now) and resend (a delivered message sent again). Where the store finds each
//! state, and why no index is written for it, is in `store/listing.rs`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::messages::{parse_id, shown_next_attempt};
use super::tokens::Scope;
use super::wire::{MessageItem, MessageList, Nudged as NudgedView};
use crate::model::{MessageId, MessageRecord, Millis, Stage, State, now_millis};
use crate::store::{MessageQuery, Nudged, Wanted};

/// Items on a page of messages or dead letters when the request gives no `limit`, and the most it may ask.
const DEFAULT_PAGE: usize = 100;
pub(super) const MAX_PAGE: usize = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    endpoint: Option<String>,
    state: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

/// A time given as Unix milliseconds or as RFC 3339 (`2026-11-21T09:00:00Z`); `field` names it in the error.
pub(super) fn parse_time(field: &str, text: &str) -> Result<Millis, ApiError> {
    if let Ok(ms) = text.parse::<Millis>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(text)
        .map(|at| {
            at.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as Millis)
                .unwrap_or(0)
        })
        .map_err(|_| {
            ApiError::invalid(format!(
                "{field}: `{text}` is neither Unix milliseconds nor an RFC 3339 time (2026-11-21T09:00:00Z)"
            ))
        })
}

/// Whether `name` is an endpoint the daemon knows: registered, or with messages in the store.
/// A listing's page size (`limit`, [`DEFAULT_PAGE`] when absent, 1 to [`MAX_PAGE`]), once the caller may list
/// `endpoint`: a token scoped to one endpoint lists that endpoint's messages only.
pub(super) fn page_limit(
    scope: Option<&axum::Extension<Scope>>,
    endpoint: Option<&str>,
    limit: Option<usize>,
) -> Result<usize, ApiError> {
    if let Some(axum::Extension(Scope(own))) = scope
        && endpoint != Some(own.as_str())
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token is scoped to endpoint `{own}`: list with endpoint={own}"),
        ));
    }
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(format!(
            "limit: {limit} must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok(limit)
}

pub(super) fn known_endpoint(state: &AppState, name: &str) -> Result<bool, ApiError> {
    Ok(
        state.lanes.endpoint(name).is_some()
            || state.store.counts()?.by_endpoint.contains_key(name),
    )
}

pub(super) async fn list(
    AxumState(state): AxumState<AppState>,
    scope: Option<axum::Extension<Scope>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<MessageList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = page_limit(scope.as_ref(), query.endpoint.as_deref(), query.limit)?;
    let wanted_state = query
        .state
        .as_deref()
        .map(|s| match s {
            "queued" => Ok(State::Queued),
            "held" => Ok(State::Held),
            "in_flight" => Ok(State::InFlight),
            "delivered" => Ok(State::Delivered),
            "dead" => Ok(State::Dead),
            other => Err(ApiError::invalid(format!(
                "state: `{other}` is not one of queued, held, in_flight, delivered, dead"
            ))),
        })
        .transpose()?;
    let since = query
        .since
        .as_deref()
        .map(|t| parse_time("since", t))
        .transpose()?;
    let until = query
        .until
        .as_deref()
        .map(|t| parse_time("until", t))
        .transpose()?;
    let after = query.after.as_deref().map(parse_id).transpose()?;
    if let Some(endpoint) = &query.endpoint
        && !known_endpoint(&state, endpoint)?
    {
        return Err(ApiError::unknown_endpoint(endpoint));
    }
    // Queued and held differ by their endpoint's status: the endpoints of the state asked for are looked up
    // here, once each, and the store reads only their slices of the due index.
    let endpoints = match wanted_state {
        Some(wanted @ (State::Queued | State::Held)) => {
            let candidates = match &query.endpoint {
                Some(name) => vec![name.clone()],
                None => state.store.queued_endpoints(),
            };
            let mut names: Vec<String> = candidates
                .into_iter()
                .filter(|name| state.lanes.is_active(name) == (wanted == State::Queued))
                .collect();
            names.sort();
            Some(names)
        }
        _ => query.endpoint.clone().map(|name| vec![name]),
    };
    let wanted = match wanted_state {
        None => Wanted::Any,
        Some(State::Queued | State::Held) => Wanted::Queued,
        Some(State::InFlight) => Wanted::InFlight,
        Some(State::Delivered) => Wanted::Delivered,
        Some(State::Dead) => Wanted::Dead,
    };
    let store_query = MessageQuery {
        endpoints,
        wanted,
        kind: query.kind,
        since,
        until,
        after,
        limit,
    };
    // The store runs the listing's scan on a blocking thread.
    let page = state.store.list_messages(&store_query).await?;
    let items = page
        .items
        .into_iter()
        .map(|record| item(&state, record))
        .collect();
    Ok(Json(MessageList {
        items,
        next: page.next.map(|id| id.to_string()),
    }))
}

fn item(state: &AppState, record: MessageRecord) -> MessageItem {
    let view_state = state.state_of(&record);
    MessageItem {
        id: record.id.to_string(),
        endpoint: record.endpoint,
        kind: record.kind,
        state: view_state,
        created_at: record.created_at,
        attempts: record.total_attempts,
        cycle_attempts: record.cycle_attempts,
        next_attempt_at: shown_next_attempt(view_state, record.next_attempt_at),
        delivered_at: record.delivered_at,
        dead_at: record.dead_at,
        dead_reason: record.dead_reason,
    }
}

/// Which nudge an operator asked for.
#[derive(Clone, Copy)]
enum Nudge {
    Retry,
    Resend,
}

pub(super) async fn retry(
    AxumState(state): AxumState<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NudgedView>, ApiError> {
    nudge(state, &id, Nudge::Retry).await
}

pub(super) async fn resend(
    AxumState(state): AxumState<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NudgedView>, ApiError> {
    nudge(state, &id, Nudge::Resend).await
}

async fn nudge(state: AppState, id: &str, nudge: Nudge) -> Result<Json<NudgedView>, ApiError> {
    let id: MessageId = parse_id(id)?;
    let now = now_millis();
    let done = match nudge {
        Nudge::Retry => state.store.retry_now(id, now).await?,
        Nudge::Resend => {
            // A resend queues a message again: admitted like an enqueue, to an endpoint that exists.
            if let Some(record) = state.store.get(id).await?
                && record.stage == Stage::Delivered
            {
                let endpoint = state.lanes.endpoint(&record.endpoint).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::CONFLICT,
                        "unknown_endpoint",
                        format!(
                            "{id} cannot be sent again: no endpoint `{}` exists (create it again first)",
                            record.endpoint
                        ),
                    )
                })?;
                super::admission::admit(&state, 1, 0)?;
                super::admission::admit_to(&state, &endpoint, 1)?;
            }
            state.store.resend(id, now).await?
        }
    };
    let endpoint = match done {
        Nudged::Done { endpoint } => endpoint,
        Nudged::Unknown => return Err(ApiError::not_found(format!("no message {id}"))),
        Nudged::InFlight => {
            return Err(conflict(format!(
                "{id} is in flight: an attempt is under way (its outcome decides what comes next)"
            )));
        }
        Nudged::Stage(stage) => return Err(conflict(refusal(id, nudge, stage))),
    };
    state.store.commit().await?;
    tracing::info!(message_id = %id, endpoint, verb = match nudge { Nudge::Retry => "retry", Nudge::Resend => "resend" }, "message due now by operator");
    state.lanes.wake(&endpoint);
    let view_state = if state.lanes.is_active(&endpoint) {
        State::Queued
    } else {
        State::Held
    };
    Ok(Json(NudgedView {
        id: id.to_string(),
        endpoint,
        state: view_state,
        next_attempt_at: now,
    }))
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", message)
}

/// Why a nudge does not apply to a message in `stage`, and what does.
fn refusal(id: MessageId, nudge: Nudge, stage: Stage) -> String {
    match (nudge, stage) {
        (Nudge::Retry, Stage::Delivered) => format!(
            "{id} is delivered: retry applies to queued or held messages; send it again with `hookd msg resend {id}` (POST /v1/messages/{id}/resend)"
        ),
        (Nudge::Retry, Stage::Dead) => format!(
            "{id} is dead: retry applies to queued or held messages; queue it again with `hookd dlq replay {id}` (POST /v1/dlq/replay)"
        ),
        (Nudge::Resend, Stage::Dead) => format!(
            "{id} is dead: resend applies to delivered messages; queue it again with `hookd dlq replay {id}` (POST /v1/dlq/replay)"
        ),
        (Nudge::Resend, Stage::Queued | Stage::InFlight) => format!(
            "{id} is not delivered yet: resend applies to delivered messages; make it due now with `hookd msg retry {id}` (POST /v1/messages/{id}/retry)"
        ),
        (Nudge::Retry, Stage::Queued | Stage::InFlight) => {
            format!("{id} is in flight: an attempt is under way")
        }
        (Nudge::Resend, Stage::Delivered) => format!("{id} cannot be sent again now"),
    }
}
