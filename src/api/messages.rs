//! Enqueue (single and batch) and message lookup.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::value::RawValue;

use super::AppState;
use super::admission::{admit, admit_to};
use super::error::{ApiError, ErrorDetail, parse_json, size_in_words};
use super::wire::{BatchResponse, BatchResult, EnqueueRequest, EnqueueResponse, MessageView};
use crate::model::{MessageId, MessageRecord, Millis, State, now_millis};
use crate::store::{ContactLimit, Enqueued, NewMessage, StoreError, first_answer};

/// Room for the envelope around a maximal payload in a single enqueue request.
const ENVELOPE_SLACK: usize = 16 * 1024;
const MAX_IDEMPOTENCY_KEY: usize = 256;

/// Maps a body that could not be read (over `limit`, the router's `max_batch_bytes`; a broken stream) to a
/// JSON error.
pub(super) fn read_body(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(format!(
            "the request body is over the limit of {} (max_batch_bytes = {limit} bytes)",
            size_in_words(limit)
        )),
        _ => ApiError::bad_request(rejection.body_text()),
    })
}

pub(super) async fn enqueue(
    AxumState(state): AxumState<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<EnqueueResponse>), ApiError> {
    let body = read_body(body, state.config.max_batch_bytes)?;
    if body.len() > state.config.max_payload_bytes + ENVELOPE_SLACK {
        return Err(ApiError::too_large(format!(
            "the request body is {}; a message's payload may be at most {} (max_payload_bytes = {} bytes)",
            size_in_words(body.len()),
            size_in_words(state.config.max_payload_bytes),
            state.config.max_payload_bytes
        )));
    }
    let request: EnqueueRequest = parse_json(&body)?;
    // Held from the endpoint's check to the write, so a delete of the endpoint waits for this enqueue.
    let gate = state.lanes.admit().await;
    let message = validate(&state, request)?;
    admit(&state, 1, message.payload.len() as u64)?;
    let endpoint = message.endpoint.clone();
    let enqueued = first_answer(
        state
            .store
            .enqueue_many(vec![message], now_millis())
            .await?,
    )?;
    drop(gate);
    state.store.commit().await?;
    if !enqueued.duplicate {
        state.telemetry.enqueued(&endpoint);
    }
    state.lanes.wake(&endpoint);
    Ok((
        StatusCode::ACCEPTED,
        Json(answer(&state, &endpoint, enqueued).await?),
    ))
}

/// `POST /v1/messages/batch` as read: [`super::wire::BatchRequest`]'s items, borrowed from the body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BorrowedBatch<'a> {
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
}

/// [`parse_json`] for a type that borrows from the body.
fn parse_json_borrowed<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid(e.to_string()),
        _ => ApiError::bad_json(format!("request body is not valid JSON: {e}")),
    })
}

pub(super) async fn enqueue_batch(
    AxumState(state): AxumState<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<BatchResponse>), ApiError> {
    let body = read_body(body, state.config.max_batch_bytes)?;
    let body_len = body.len() as u64;
    // The items are borrowed from the body (no copy of each) and decoded one at a time into the message
    // they make, so the batch is held about twice at most: the body and its messages, then (the body
    // dropped) its messages and what the store writes.
    let batch: BorrowedBatch<'_> = parse_json_borrowed(&body)?;
    let max = state.config.max_batch_messages;
    if batch.messages.len() > max {
        return Err(ApiError::too_large(format!(
            "the batch has {} messages; at most {max} are accepted in one request (max_batch_messages = {max})",
            batch.messages.len()
        )));
    }
    // All or nothing: a batch is refused whole rather than cut at an arbitrary message.
    admit(&state, batch.messages.len() as u64, body_len)?;
    let now = now_millis();
    let gate = state.lanes.admit().await;
    // Every valid message of the batch is written in one store transaction.
    let checked: Vec<Result<NewMessage, ApiError>> = batch
        .messages
        .iter()
        .map(|item| {
            parse_json::<EnqueueRequest>(item.get().as_bytes())
                .and_then(|request| validate(&state, request))
        })
        .collect();
    drop(batch);
    drop(body);
    // Each endpoint's messages of the batch together within its max_queued, or all of them refused.
    let mut per_endpoint = std::collections::BTreeMap::<&str, u64>::new();
    for message in checked.iter().flatten() {
        *per_endpoint.entry(&message.endpoint).or_insert(0) += 1;
    }
    let full: std::collections::BTreeMap<String, ApiError> = per_endpoint
        .into_iter()
        .filter_map(|(name, count)| {
            let endpoint = state.lanes.endpoint(name)?;
            admit_to(&state, &endpoint, count)
                .err()
                .map(|e| (name.to_owned(), e))
        })
        .collect();
    let checked: Vec<Result<NewMessage, ApiError>> = checked
        .into_iter()
        .map(|check| match check {
            Ok(message) => match full.get(&message.endpoint) {
                Some(error) => Err(error.clone()),
                None => Ok(message),
            },
            Err(error) => Err(error),
        })
        .collect();
    let mut endpoints = Vec::with_capacity(checked.len());
    let mut valid = Vec::with_capacity(checked.len());
    for check in checked {
        match check {
            Ok(message) => {
                endpoints.push(Ok(message.endpoint.clone()));
                valid.push(message);
            }
            Err(error) => endpoints.push(Err(error)),
        }
    }
    let mut stored = state.store.enqueue_many(valid, now).await?.into_iter();
    drop(gate);
    let mut outcomes = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        outcomes.push(endpoint.and_then(|endpoint| {
            let enqueued = stored.next().unwrap_or_else(|| {
                Err(StoreError::Corrupt(
                    "the store gave no answer for a message".into(),
                ))
            })?;
            Ok((endpoint, enqueued))
        }));
    }
    // One group commit makes the whole batch durable before any of it is acknowledged.
    state.store.commit().await?;
    let mut results = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        results.push(match outcome {
            Ok((endpoint, enqueued)) => {
                if !enqueued.duplicate {
                    state.telemetry.enqueued(&endpoint);
                }
                state.lanes.wake(&endpoint);
                BatchResult::Queued(answer(&state, &endpoint, enqueued).await?)
            }
            Err(error) => BatchResult::Error {
                error: ErrorDetail::from(&error),
            },
        });
    }
    Ok((StatusCode::ACCEPTED, Json(BatchResponse { results })))
}

/// Checks an enqueue request against the configuration and its endpoint's format; touches nothing.
fn validate(state: &AppState, request: EnqueueRequest) -> Result<NewMessage, ApiError> {
    let endpoint = state
        .lanes
        .endpoint(&request.endpoint)
        .ok_or_else(|| ApiError::unknown_endpoint(&request.endpoint))?;
    admit_to(state, &endpoint, 1)?;
    let payload = request.payload.get();
    if payload.len() > state.config.max_payload_bytes {
        return Err(ApiError::too_large(format!(
            "the payload is {}; at most {} is accepted (max_payload_bytes = {} bytes)",
            size_in_words(payload.len()),
            size_in_words(state.config.max_payload_bytes),
            state.config.max_payload_bytes
        )));
    }
    if !payload.trim_start().starts_with('{') {
        return Err(ApiError::invalid("payload: must be a JSON object"));
    }
    if let Some(key) = &request.idempotency_key {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(ApiError::invalid(format!(
                "idempotency_key: must be 1 to {MAX_IDEMPOTENCY_KEY} bytes"
            )));
        }
    }
    endpoint
        .format
        .validate(&request.kind, &request.payload)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let contact = match endpoint.max_pending_per_contact {
        Some(max_pending) => endpoint
            .format
            .contact(request.payload.get())
            .map(|contact| ContactLimit {
                contact,
                max_pending,
            }),
        None => None,
    };
    if contact.as_ref().is_some_and(|c| c.contact.contains('\0')) {
        return Err(ApiError::invalid(
            "payload: the contact id must not contain a NUL character",
        ));
    }
    Ok(NewMessage {
        endpoint: endpoint.name.clone(),
        kind: request.kind,
        // Stored exactly as the client sent it: formats that pass the payload on send these very bytes
        // (taken over from the request, not copied).
        payload: String::from(Box::<str>::from(request.payload)),
        idempotency_key: request.idempotency_key,
        contact,
    })
}

/// The enqueue answer. A new message is queued, or held when its endpoint's lane is not sending; only a
/// duplicate needs its record read (it may have moved on since).
async fn answer(
    state: &AppState,
    endpoint: &str,
    enqueued: Enqueued,
) -> Result<EnqueueResponse, ApiError> {
    let status = if enqueued.duplicate {
        match state.store.get(enqueued.id).await? {
            Some(record) => state.state_of(&record),
            None => State::Queued,
        }
    } else if state.lanes.is_active(endpoint) {
        State::Queued
    } else {
        State::Held
    };
    Ok(EnqueueResponse {
        id: enqueued.id.to_string(),
        status,
        duplicate: enqueued.duplicate,
    })
}

pub(super) fn parse_id(text: &str) -> Result<MessageId, ApiError> {
    text.parse()
        .map_err(|e: crate::model::BadMessageId| ApiError::bad_request(e.to_string()))
}

pub(super) async fn show(
    AxumState(state): AxumState<AppState>,
    scope: Option<axum::Extension<super::tokens::Scope>>,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let id = parse_id(&id)?;
    let record = state
        .store
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no message {id}")))?;
    super::tokens::Scope::allows(scope.as_deref(), &record.endpoint)?;
    Ok(Json(view(&state, record).await?))
}

/// When a message in `view_state` is next due, as the API shows it: only while it is queued or held.
pub(super) fn shown_next_attempt(view_state: State, next_attempt_at: Millis) -> Option<Millis> {
    matches!(view_state, State::Queued | State::Held).then_some(next_attempt_at)
}

/// The full view of a message: record, state word and every attempt.
pub(super) async fn view(state: &AppState, record: MessageRecord) -> Result<MessageView, ApiError> {
    let attempts = state.store.attempts_of(&record).await?;
    let view_state = state.state_of(&record);
    let payload = RawValue::from_string(record.payload).map_err(|e| {
        ApiError::from(crate::store::StoreError::Corrupt(format!(
            "stored payload: {e}"
        )))
    })?;
    Ok(MessageView {
        id: record.id.to_string(),
        endpoint: record.endpoint,
        kind: record.kind,
        state: view_state,
        created_at: record.created_at,
        next_attempt_at: shown_next_attempt(view_state, record.next_attempt_at),
        delivered_at: record.delivered_at,
        dead_reason: record.dead_reason,
        dead_at: record.dead_at,
        cycle_attempts: record.cycle_attempts,
        attempts,
        payload,
    })
}
