//! The dead-letter queue: list, show, replay, purge; narrowed by endpoint, time, reason and status, and
//! replay and purge tried without changing anything (`dry_run`).

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State as AxumState};
use bytes::Bytes;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, parse_json};
use super::messages::{parse_id, read_body, view};
use super::wire::{DeadItem, DeadList, DlqSelection, MessageView, PurgeResponse, ReplayResponse};
use crate::model::{MessageId, MessageRecord, Millis, Stage, now_millis};
use crate::store::Selection;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;

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

/// How many dead letters one store read takes while a filter looks for matches.
const SCAN_CHUNK: usize = 500;

/// What narrows a listing, a replay or a purge beyond its endpoint.
#[derive(Debug, Default)]
struct DeadFilter {
    /// Dead at or after (Unix ms).
    since: Option<Millis>,
    /// Dead before (Unix ms).
    until: Option<Millis>,
    /// The message type.
    kind: Option<String>,
    /// Lower-cased text the reason must contain.
    reason: Option<String>,
    /// The last attempt's HTTP status.
    status: Option<u16>,
}

impl DeadFilter {
    fn new(since: Option<Millis>, reason: Option<&str>, status: Option<u16>) -> DeadFilter {
        DeadFilter {
            since,
            reason: reason.map(str::to_lowercase),
            status,
            ..DeadFilter::default()
        }
    }

    fn is_empty(&self) -> bool {
        self.since.is_none()
            && self.until.is_none()
            && self.kind.is_none()
            && self.reason.is_none()
            && self.status.is_none()
    }

    fn matches(&self, record: &MessageRecord, last_status: Option<u16>) -> bool {
        self.since
            .is_none_or(|since| record.dead_at.is_some_and(|at| at >= since))
            && self
                .until
                .is_none_or(|until| record.dead_at.is_some_and(|at| at < until))
            && self.kind.as_ref().is_none_or(|kind| *kind == record.kind)
            && self.reason.as_ref().is_none_or(|text| {
                record
                    .dead_reason
                    .as_deref()
                    .is_some_and(|r| r.to_lowercase().contains(text.as_str()))
            })
            && self.status.is_none_or(|s| last_status == Some(s))
    }
}

/// A dead letter found by [`scan`], with its last attempt's status (when asked for).
type Found = (MessageRecord, Option<u16>);

/// Up to `limit` dead letters of `endpoint` after `after` that pass `filter`, in enqueue order, and the cursor
/// of the next page when another one passes. The last attempt's status is read for the filter, and for the
/// dead letters found when `with_status`.
async fn scan(
    state: &AppState,
    endpoint: Option<&str>,
    after: Option<MessageId>,
    limit: usize,
    filter: &DeadFilter,
    with_status: bool,
) -> Result<(Vec<Found>, Option<MessageId>), ApiError> {
    let chunk = if filter.is_empty() {
        limit.saturating_add(1).min(MAX_PAGE + 1)
    } else {
        SCAN_CHUNK
    };
    let mut found: Vec<Found> = Vec::new();
    let mut cursor = after;
    loop {
        let page = state.store.list_dead(endpoint, cursor, chunk).await?;
        for record in page.items {
            let read = match filter.status.is_some() || with_status {
                true => last_status(state, &record).await?,
                false => None,
            };
            if !filter.matches(&record, read) {
                continue;
            }
            if found.len() == limit {
                let next = found.last().map(|(r, _)| r.id);
                return Ok((found, next));
            }
            found.push((record, read));
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok((found, None)),
        }
    }
}

async fn last_status(state: &AppState, record: &MessageRecord) -> Result<Option<u16>, ApiError> {
    Ok(state
        .store
        .last_attempt(record)
        .await?
        .and_then(|a| a.status))
}

pub(super) async fn list(
    AxumState(state): AxumState<AppState>,
    scope: Option<axum::Extension<super::tokens::Scope>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeadList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some(axum::Extension(super::tokens::Scope(own))) = &scope
        && query.endpoint.as_deref() != Some(own.as_str())
    {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token is scoped to endpoint `{own}`: list with endpoint={own}"),
        ));
    }
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(format!(
            "limit: {limit} must be between 1 and {MAX_PAGE}"
        )));
    }
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

/// A replay or purge request, checked: what to apply it to, and the requested ids that are not dead letters.
struct Resolved {
    selection: Selection,
    not_dead: Vec<String>,
    dry_run: bool,
}

impl Resolved {
    /// The ids the selection covers now (for a dry run).
    async fn ids(&self, state: &AppState) -> Result<Vec<String>, ApiError> {
        let ids = match &self.selection {
            Selection::Ids(ids) => ids.clone(),
            Selection::All { endpoint } => {
                let everything = DeadFilter::default();
                scan(
                    state,
                    endpoint.as_deref(),
                    None,
                    usize::MAX,
                    &everything,
                    false,
                )
                .await?
                .0
                .into_iter()
                .map(|(record, _)| record.id)
                .collect()
            }
        };
        Ok(ids.iter().map(MessageId::to_string).collect())
    }
}

/// Turns the wire selection into the store's, and lists requested ids that are not dead letters.
/// Filters (`since`, `reason`, `status`) are resolved here into the ids they select.
async fn selection(state: &AppState, body: DlqSelection) -> Result<Resolved, ApiError> {
    if !body.all {
        for (given, field) in [
            (body.endpoint.is_some(), "endpoint"),
            (body.since.is_some(), "since"),
            (body.reason.is_some(), "reason"),
            (body.status.is_some(), "status"),
        ] {
            if given {
                return Err(ApiError::invalid(format!(
                    "{field}: only valid together with \"all\": true"
                )));
            }
        }
    }
    if let Some(endpoint) = &body.endpoint
        && state.lanes.endpoint(endpoint).is_none()
        && state
            .store
            .list_dead(Some(endpoint), None, 1)
            .await?
            .items
            .is_empty()
    {
        return Err(ApiError::unknown_endpoint(endpoint));
    }
    let dry_run = body.dry_run;
    match (body.all, body.ids.is_empty()) {
        (true, true) if body.filtered() => {
            let filter = DeadFilter::new(body.since, body.reason.as_deref(), body.status);
            let (found, _) = scan(
                state,
                body.endpoint.as_deref(),
                None,
                usize::MAX,
                &filter,
                false,
            )
            .await?;
            Ok(Resolved {
                selection: Selection::Ids(found.into_iter().map(|(r, _)| r.id).collect()),
                not_dead: Vec::new(),
                dry_run,
            })
        }
        (true, true) => Ok(Resolved {
            selection: Selection::All {
                endpoint: body.endpoint,
            },
            not_dead: Vec::new(),
            dry_run,
        }),
        (false, false) => {
            let ids = body
                .ids
                .iter()
                .map(|id| parse_id(id))
                .collect::<Result<Vec<MessageId>, _>>()?;
            let mut dead = Vec::new();
            let mut not_dead = Vec::new();
            for id in ids {
                match state.store.get(id).await? {
                    Some(record) if record.stage == Stage::Dead => dead.push(id),
                    _ => not_dead.push(id.to_string()),
                }
            }
            Ok(Resolved {
                selection: Selection::Ids(dead),
                not_dead,
                dry_run,
            })
        }
        (true, false) => Err(ApiError::invalid(
            "give either \"ids\" or \"all\", not both",
        )),
        (false, true) => Err(ApiError::invalid(
            "ids: give at least one id, or \"all\": true",
        )),
    }
}

/// How many dead letters one step of a replay or purge reads and changes: each step runs on a blocking
/// thread, so the runtime's workers (lanes, other requests) go on between and beside the steps.
const BULK_CHUNK: usize = 500;

/// What a bulk step does to the dead letters it selected.
#[derive(Clone, Copy)]
enum Bulk {
    /// Back to the queue, due at this time.
    Replay(Millis),
    Purge,
}

/// Replays or purges `selection` in steps of up to [`BULK_CHUNK`] dead letters, each on a blocking thread.
/// Returns how many changed and the endpoints of the replayed ones.
async fn in_chunks(
    state: &AppState,
    selection: Selection,
    bulk: Bulk,
) -> Result<(usize, std::collections::BTreeSet<String>), ApiError> {
    let mut changed = 0;
    let mut endpoints = std::collections::BTreeSet::new();
    let mut ids = match &selection {
        Selection::Ids(ids) => Some(ids.clone().into_iter()),
        Selection::All { .. } => None,
    };
    let all_of = match selection {
        Selection::All { endpoint } => Some(endpoint),
        Selection::Ids(_) => None,
    };
    let mut cursor: Option<MessageId> = None;
    loop {
        let chunk: Option<Vec<MessageId>> = ids
            .as_mut()
            .map(|ids| ids.by_ref().take(BULK_CHUNK).collect());
        if chunk.as_ref().is_some_and(Vec::is_empty) {
            break;
        }
        let endpoint = all_of.clone().flatten();
        // Every dead letter: the next page after the last one seen (those changed left the queue).
        let (chunk, next) = match chunk {
            Some(chunk) => (chunk, None),
            None => {
                let page = state
                    .store
                    .list_dead(endpoint.as_deref(), cursor, BULK_CHUNK)
                    .await?;
                let next = page.next;
                (page.items.into_iter().map(|r| r.id).collect(), next)
            }
        };
        // Each step runs on a blocking thread (the store's long verbs do), so other work goes on between.
        let selected = Selection::Ids(chunk);
        let (count, touched) = match bulk {
            Bulk::Replay(now) => {
                let replayed = state.store.replay(&selected, now).await?;
                (replayed.len(), replayed)
            }
            Bulk::Purge => (state.store.purge(&selected).await?, Vec::new()),
        };
        changed += count;
        endpoints.extend(touched);
        if all_of.is_some() {
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok((changed, endpoints))
}

/// How many dead letters each endpoint has (all of them, or those of `endpoint`), from the live counts.
fn dead_counts(
    state: &AppState,
    endpoint: Option<&str>,
) -> Result<std::collections::BTreeMap<String, u64>, ApiError> {
    Ok(state
        .store
        .counts()?
        .by_endpoint
        .into_iter()
        .filter(|(name, c)| c.dead > 0 && endpoint.is_none_or(|e| e == name))
        .map(|(name, c)| (name, c.dead))
        .collect())
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
