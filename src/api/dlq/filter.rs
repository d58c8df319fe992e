//! Finding dead letters: the filter that narrows a listing, a replay or a purge beyond its endpoint, and the
//! scan that reads the store in chunks until a page of matches is full. Apart from the handlers because
//! listing and the bulk verbs share it.

use super::MAX_PAGE;
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::model::{MessageId, MessageRecord, Millis};

/// How many dead letters one store read takes while a filter looks for matches.
const SCAN_CHUNK: usize = 500;

/// What narrows a listing, a replay or a purge beyond its endpoint.
#[derive(Debug, Default)]
pub(super) struct DeadFilter {
    /// Dead at or after (Unix ms).
    pub(super) since: Option<Millis>,
    /// Dead before (Unix ms).
    pub(super) until: Option<Millis>,
    /// The message type.
    pub(super) kind: Option<String>,
    /// Lower-cased text the reason must contain.
    pub(super) reason: Option<String>,
    /// The last attempt's HTTP status.
    pub(super) status: Option<u16>,
}

impl DeadFilter {
    pub(super) fn new(
        since: Option<Millis>,
        reason: Option<&str>,
        status: Option<u16>,
    ) -> DeadFilter {
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
pub(super) async fn scan(
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
