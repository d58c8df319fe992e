//! One attempt: render, send, classify, record. The only place the dispatcher talks to a receiver.
//!
//! An attempt never strands its messages: a failed outcome write is tried again, and whatever is still
//! leased when the attempt ends (its write failed for good, or its task panicked) is given back, due now
//! with no attempt counted, by a guard that runs on every exit ([`LeaseGuard`]).

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt as _;
use tokio::sync::Notify;

use super::health::Health;
use super::places::AttemptPlaces;
use super::{DispatchContext, LaneShared};
use crate::config::EndpointConfig;
use crate::faults;
use crate::formats::{Answer, TransportKind};
use crate::model::{AttemptRecord, AttemptResult, MessageRecord, now_millis};
use crate::model::{MessageId, Millis};
use crate::retry::{CycleFacts, Decision, Verdict, decide};
use crate::store::{AttemptOutcome, StoreError};

/// How often a failed outcome write is tried again, and how long before each try.
const OUTCOME_RETRIES: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(2),
];

/// How long a give back that found the database unreachable waits before trying again (doubling each time,
/// up to [`GIVE_BACK_RETRY_MAX`]).
const GIVE_BACK_RETRY: std::time::Duration = std::time::Duration::from_millis(250);
const GIVE_BACK_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);

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
    let guard = LeaseGuard {
        context: Arc::clone(&context),
        endpoint: endpoint.name.clone(),
        ids: ids.clone(),
        wake: Arc::clone(&wake),
        lane: Arc::clone(&lane),
        health_noted: false,
    };
    if faults::hit(faults::ATTEMPT_PANIC) {
        panic!("injected fault: an attempt's task panics (HOOKD_FAULTS)");
    }
    // The messages of one request share their type: every format but `json`, `notification` and
    // `gateway-json` carries one type, and those three send one message per request.
    let kind = messages.first().map(|m| m.kind.as_str());
    let url = kind.map_or(&endpoint.url, |kind| endpoint.url_for(kind));
    let answer = match endpoint.format.render(&messages) {
        Ok(request) => {
            context
                .sender
                .send(&endpoint, url, &ids, kind, request)
                .await
        }
        Err(error) => Answer::Transport {
            kind: TransportKind::Request,
            message: error.to_string(),
        },
    };
    let duration_ms = clock.elapsed().as_millis() as u64;
    lane.record_health(Health::of(&answer), now_millis());
    if let Some(wait) = throttle_for(&answer, context.max_retry_after) {
        // Noted before the sending place is given up, so the lane's next request already waits.
        let now = now_millis();
        // Up to 10% more, so that many senders told the same time do not all come back at once.
        let jitter = wait.mul_f64(0.1 * rand::random::<f64>());
        lane.throttle(now + (wait + jitter).as_millis() as u64, now);
    }
    let mut guard = guard;
    guard.health_noted = true;
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
            // Handed back, so that the store need not read the record again (the sled backend: store/sled/leases.rs).
            leased: Some(message),
        });
    }
    // One request's outcomes are recorded together (and with other attempts' outcomes: store/sled/combine.rs).
    record(&context, &endpoint.name, outcomes).await;
    drop(guard);
    if retry_scheduled {
        wake.notify_one();
    }
}

/// Writes the outcomes; a failed write is tried again for those not written (still leased), a few times. What
/// is still leased after the last try is given back by the attempt's [`LeaseGuard`].
async fn record(context: &DispatchContext, endpoint: &str, outcomes: Vec<AttemptOutcome>) {
    // What a retry needs, kept before the first write consumes the outcomes (the leased records are not:
    // a retry lets the store read them again).
    let kept: Vec<(MessageId, AttemptRecord, Decision, Millis)> = outcomes
        .iter()
        .map(|o| (o.id, o.attempt.clone(), o.decision.clone(), o.now))
        .collect();
    let mut result = if faults::hit(faults::OUTCOME_WRITE) {
        Err(crate::store::StoreError::Combined(
            "injected fault: outcome write (HOOKD_FAULTS)".into(),
        ))
    } else {
        context.store.record_attempts(outcomes).await
    };
    for wait in OUTCOME_RETRIES {
        let Err(error) = &result else { return };
        tracing::warn!(endpoint, %error, retry_in_ms = wait.as_millis() as u64, "cannot record attempts; trying again");
        tokio::time::sleep(wait).await;
        let unwritten: Vec<AttemptOutcome> = kept
            .iter()
            .filter(|(id, ..)| context.store.is_leased(*id))
            .map(|(id, attempt, decision, now)| AttemptOutcome {
                id: *id,
                attempt: attempt.clone(),
                decision: decision.clone(),
                now: *now,
                leased: None,
            })
            .collect();
        result = if faults::hit(faults::OUTCOME_WRITE) {
            Err(crate::store::StoreError::Combined(
                "injected fault: outcome write (HOOKD_FAULTS)".into(),
            ))
        } else {
            context.store.record_attempts(unwritten).await
        };
    }
    if let Err(error) = result {
        tracing::error!(endpoint, %error, "cannot record attempts; their messages are given back, due now");
    }
}

/// Gives back what an attempt still holds leased when it ends, however it ends (its outcome not written, a
/// panic): due now, with no attempt counted, and its lane woken. A circuit probe that ended before its answer
/// was noted lets the circuit probe again.
struct LeaseGuard {
    context: Arc<DispatchContext>,
    endpoint: String,
    ids: Vec<MessageId>,
    wake: Arc<Notify>,
    lane: Arc<LaneShared>,
    health_noted: bool,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let now = now_millis();
        if !self.health_noted {
            self.lane.probe_lost(now);
        }
        let ids: Vec<MessageId> = (self.ids.iter().copied())
            .filter(|id| self.context.store.is_leased(*id))
            .collect();
        if ids.is_empty() {
            return;
        }
        let mut give_back = Box::pin(give_back(
            Arc::clone(&self.context),
            self.endpoint.clone(),
            ids,
            Arc::clone(&self.wake),
            now,
        ));
        // The sled backend gives back without waiting, so this is done before the guard is gone; what a
        // backend has to wait for goes on with a task of its own.
        if (&mut give_back).now_or_never().is_none() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(give_back)),
                Err(_) => tracing::error!(endpoint = %self.endpoint,
                    "cannot give back leased messages without a runtime; they are due again at the next start"),
            }
        }
    }
}

/// Gives back `ids`, leased by an attempt that ended without their outcome: due at `now`, no attempt counted,
/// and wakes their lane.
async fn give_back(
    context: Arc<DispatchContext>,
    endpoint: String,
    ids: Vec<MessageId>,
    wake: Arc<Notify>,
    now: Millis,
) {
    let mut given_back = 0;
    for id in ids {
        if release_when_reachable(&context, &endpoint, id, now).await {
            given_back += 1;
        }
    }
    if given_back > 0 {
        tracing::warn!(%endpoint, given_back,
            "an attempt ended without its outcome: its messages are due again, no attempt counted");
        wake.notify_one();
    }
}

/// Gives back one leased message; answers whether it did. While the store cannot be reached (PostgreSQL down
/// or restarting) it tries again, with a growing pause, as long as the message is still leased here: an
/// outcome lost to an outage is then due again as soon as the database is back, not only when its lease runs
/// out (up to the endpoint's timeout plus the lease margin later). Any other error is left to the lease sweep.
async fn release_when_reachable(
    context: &DispatchContext,
    endpoint: &str,
    id: MessageId,
    now: Millis,
) -> bool {
    let mut pause = GIVE_BACK_RETRY;
    let mut warned = false;
    loop {
        match context.store.release(id, now).await {
            Ok(()) => return true,
            Err(StoreError::Unavailable(reason)) if context.store.is_leased(id) => {
                if !warned {
                    tracing::warn!(message_id = %id, %endpoint, %reason,
                        "cannot give back a leased message while the store is unreachable; trying again");
                    warned = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(GIVE_BACK_RETRY_MAX);
            }
            Err(error) => {
                tracing::error!(message_id = %id, %endpoint, %error,
                    "cannot give back a leased message; the lease sweep will");
                return false;
            }
        }
    }
}

/// How long the whole endpoint waits after `answer`: a 429 or 503 with `Retry-After` holds back every new
/// request to the receiver (capped by `max_retry_after`), not only the messages it answered.
fn throttle_for(
    answer: &Answer,
    max_retry_after: std::time::Duration,
) -> Option<std::time::Duration> {
    match answer {
        Answer::Response {
            status: 429 | 503,
            retry_after: Some(wait),
            ..
        } if !wait.is_zero() => Some((*wait).min(max_retry_after)),
        _ => None,
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
