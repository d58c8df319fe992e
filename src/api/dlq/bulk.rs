//! Replay and purge in bulk: a request's selection checked and resolved into what the store changes, and
//! the change applied in steps on blocking threads. Apart from the handlers because it is the part of the
//! dead-letter queue that may touch every record.

use super::filter::{DeadFilter, scan};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::messages::parse_id;
use crate::api::wire::DlqSelection;
use crate::model::{MessageId, Millis, Stage};
use crate::store::Selection;

/// A replay or purge request, checked: what to apply it to, and the requested ids that are not dead letters.
pub(super) struct Resolved {
    pub(super) selection: Selection,
    pub(super) not_dead: Vec<String>,
    pub(super) dry_run: bool,
}

impl Resolved {
    /// The ids the selection covers now (for a dry run).
    pub(super) async fn ids(&self, state: &AppState) -> Result<Vec<String>, ApiError> {
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
pub(super) async fn selection(state: &AppState, body: DlqSelection) -> Result<Resolved, ApiError> {
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
pub(super) enum Bulk {
    /// Back to the queue, due at this time.
    Replay(Millis),
    Purge,
}

/// Replays or purges `selection` in steps of up to [`BULK_CHUNK`] dead letters, each on a blocking thread.
/// Returns how many changed and the endpoints of the replayed ones.
pub(super) async fn in_chunks(
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
pub(super) fn dead_counts(
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
