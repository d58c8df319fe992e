//! `GET /v1/events`: attempt outcomes and changes in endpoints' lives (circuit, pause, 410, verification)
//! as they happen, one JSON object per line (NDJSON), for `hookd tail`. `result` filters attempts only.
//!
//! Each request subscribes to the telemetry's broadcast feed before its answer's headers go out, so whatever
//! happens after the client saw the headers reaches it. A listener that falls more than the feed's buffer
//! behind gets `{"lagged":N}` in place of the N events it missed; nothing waits for a slow listener. The
//! stream ends when the daemon shuts down (graceful shutdown waits for open answers, so it must end).

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State as AxumState};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::error::ApiError;
use super::messages::parse_id;
use super::wire::{AttemptEvent, EndpointEvent, EventLine, Outcome};
use crate::telemetry::FeedEvent;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    endpoint: Option<String>,
    result: Option<String>,
    message: Option<String>,
}

/// Which events a listener asked for.
#[derive(Debug, Clone)]
struct Filter {
    endpoint: Option<String>,
    result: Option<Outcome>,
    message: Option<String>,
    /// With `message`: its endpoint, whose endpoint events the listener gets (none when it is unknown).
    message_endpoint: Option<String>,
}

impl Filter {
    fn matches(&self, event: &AttemptEvent) -> bool {
        self.endpoint.as_ref().is_none_or(|e| *e == event.endpoint)
            && self.result.is_none_or(|r| r == event.result)
            && self.message.as_ref().is_none_or(|m| *m == event.message_id)
    }

    /// `result` filters attempts only; `message` keeps its own endpoint's events.
    fn matches_endpoint(&self, event: &EndpointEvent) -> bool {
        self.endpoint.as_ref().is_none_or(|e| *e == event.endpoint)
            && (self.message.is_none() || self.message_endpoint.as_ref() == Some(&event.endpoint))
    }
}

pub(super) async fn stream(
    AxumState(state): AxumState<AppState>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some(endpoint) = &query.endpoint
        && state.lanes.endpoint(endpoint).is_none()
    {
        return Err(ApiError::unknown_endpoint(endpoint));
    }
    let result = query
        .result
        .as_deref()
        .map(|r| {
            r.parse::<Outcome>()
                .map_err(|e| ApiError::bad_request(format!("result: {e}")))
        })
        .transpose()?;
    let message = query
        .message
        .as_deref()
        .map(|m| parse_id(m).map(|id| id.to_string()))
        .transpose()?;
    let message_endpoint = match &message {
        Some(id) => state
            .store
            .get(parse_id(id)?)
            .await?
            .map(|record| record.endpoint),
        None => None,
    };
    let filter = Filter {
        endpoint: query.endpoint,
        result,
        message,
        message_endpoint,
    };
    let feed = state.telemetry.subscribe();
    let lines = futures_util::stream::unfold(
        (feed, filter, state.shutdown.clone()),
        |(mut feed, filter, shutdown)| async move {
            let line = next_line(&mut feed, &filter, &shutdown).await?;
            Some((Ok::<_, Infallible>(line), (feed, filter, shutdown)))
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

/// The next line for this listener; `None` ends the stream (shutdown).
async fn next_line(
    feed: &mut Receiver<FeedEvent>,
    filter: &Filter,
    shutdown: &CancellationToken,
) -> Option<Bytes> {
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return None,
            received = feed.recv() => received,
        };
        let line = match received {
            Ok(FeedEvent::Attempt(event)) if filter.matches(&event) => EventLine::Event(event),
            Ok(FeedEvent::Endpoint(event)) if filter.matches_endpoint(&event) => {
                EventLine::Endpoint(event)
            }
            Ok(_) => continue,
            Err(RecvError::Lagged(missed)) => EventLine::Lagged { lagged: missed },
            Err(RecvError::Closed) => return None,
        };
        // Serialising these plain structs cannot fail; if it ever did, the line is skipped.
        if let Ok(mut bytes) = serde_json::to_vec(&line) {
            bytes.push(b'\n');
            return Some(Bytes::from(bytes));
        }
    }
}
