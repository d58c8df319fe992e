//! One attempt: render, send, classify, record. The only place the dispatcher talks to a receiver.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use super::health::Health;
use super::lane::AttemptPlaces;
use super::{DispatchContext, LaneShared};
use crate::config::EndpointConfig;
use crate::formats::{Answer, TransportKind};
use crate::model::{AttemptRecord, AttemptResult, MessageRecord, now_millis};
use crate::retry::{CycleFacts, Decision, Verdict, decide};
use crate::store::AttemptOutcome;

/// How much of an answer body is kept on the attempt record.
const BODY_EXCERPT_BYTES: usize = 512;

/// The status by which a receiver says the endpoint no longer exists: the lane is disabled, messages kept.
const GONE: u16 = 410;

/// Delivers leased `messages` in one request and records the outcome of each. The sending place is given up
/// once the exchange has ended and the endpoint's health is noted (so the lane's next request sees it), the
/// leased place once the outcomes are recorded (`lane.rs`).
pub(super) async fn run_attempt(
    context: Arc<DispatchContext>,
    endpoint: Arc<EndpointConfig>,
    messages: Vec<MessageRecord>,
    wake: Arc<Notify>,
    lane: Arc<LaneShared>,
    places: AttemptPlaces,
) {
    let AttemptPlaces {
        sending,
        leased: _leased,
    } = places;
    let started_at = now_millis();
    let clock = Instant::now();
    let ids: Vec<_> = messages.iter().map(|m| m.id).collect();
    let answer = match endpoint.format.render(&messages) {
        Ok(request) => {
            context
                .sender
                .send(&endpoint, &endpoint.url, &ids, request)
                .await
        }
        Err(error) => Answer::Transport {
            kind: TransportKind::Request,
            message: error.to_string(),
        },
    };
    let duration_ms = clock.elapsed().as_millis() as u64;
    lane.record_health(Health::of(&answer), now_millis());
    let gone = matches!(answer, Answer::Response { status: GONE, .. });
    if gone {
        let reason = format!("the receiver answered {GONE} Gone");
        if let Err(error) = lane.disable(reason).await {
            tracing::error!(endpoint = %endpoint.name, %error, "cannot record that the endpoint is disabled");
        }
    }
    drop(sending);
    let mut verdicts = endpoint.format.classify(&answer, &messages);
    // Every leased message must get an outcome, or it would stay in flight until a restart.
    verdicts.resize_with(messages.len(), || {
        Verdict::Retry {
            reason: "the format gave no verdict for this message".into(),
            retry_after: None,
        }
        .into()
    });
    let (status, error, excerpt) = describe(&answer);
    let now = now_millis();
    let mut retry_scheduled = false;
    let mut outcomes = Vec::with_capacity(messages.len());
    for (message, classified) in messages.into_iter().zip(verdicts) {
        let verdict = classified.verdict;
        let facts = CycleFacts {
            attempts: message.cycle_attempts + 1,
            cycle_started_at: message.cycle_started_at,
            now,
        };
        let decision = if gone {
            // Kept for when an operator enables the endpoint again; not a verdict on the message.
            Decision::RetryAt(now)
        } else {
            decide(
                &endpoint.retry,
                facts,
                &verdict,
                context.max_retry_after,
                rand::random::<f64>(),
            )
        };
        let record = AttemptRecord {
            number: message.total_attempts + 1,
            started_at,
            duration_ms,
            status,
            error: error.clone(),
            reason: verdict.reason().to_owned(),
            result: match verdict {
                Verdict::Delivered { .. } => AttemptResult::Delivered,
                Verdict::Retry { .. } => AttemptResult::Retry,
                Verdict::Final { .. } => AttemptResult::Final,
            },
            body_excerpt: excerpt.clone(),
            receipt: classified.receipt,
        };
        log_outcome(&endpoint.name, &message, &record, &decision);
        context
            .telemetry
            .attempt_recorded(&endpoint.name, &message, &record, &decision, now);
        retry_scheduled |= matches!(decision, Decision::RetryAt(_));
        outcomes.push(AttemptOutcome {
            id: message.id,
            attempt: record,
            decision,
            now,
            // Handed back, so that the store need not read the record again (store/leases.rs).
            leased: Some(message),
        });
    }
    // One request's outcomes are recorded together (and with other attempts' outcomes: store/combine.rs).
    if let Err(error) = context.store.record_attempts_async(outcomes).await {
        // The messages stay leased; the next start puts them back to due (at-least-once).
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        tracing::error!(message_ids = ?ids, endpoint = %endpoint.name, %error, "cannot record attempts");
    }
    if retry_scheduled {
        wake.notify_one();
    }
}

fn describe(answer: &Answer) -> (Option<u16>, Option<String>, String) {
    match answer {
        Answer::Response { status, body, .. } => {
            let cut = &body[..body.len().min(BODY_EXCERPT_BYTES)];
            (
                Some(*status),
                None,
                String::from_utf8_lossy(cut).into_owned(),
            )
        }
        Answer::Transport { kind, .. } => (None, Some(kind.as_str().to_owned()), String::new()),
    }
}

fn log_outcome(
    endpoint: &str,
    message: &MessageRecord,
    record: &AttemptRecord,
    decision: &Decision,
) {
    let id = &message.id;
    let attempt = record.number;
    match decision {
        Decision::Delivered => {
            tracing::info!(message_id = %id, endpoint, attempt, reason = %record.reason, "delivered")
        }
        Decision::RetryAt(at) => {
            tracing::info!(message_id = %id, endpoint, attempt, reason = %record.reason, retry_at = %crate::model::rfc3339(*at), "retry scheduled")
        }
        Decision::Dead { reason } => {
            tracing::warn!(message_id = %id, endpoint, attempt, %reason, "dead-lettered")
        }
    }
}
