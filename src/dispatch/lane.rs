//! A lane: the loop that feeds one endpoint's attempts, within that endpoint's concurrency limit.
//!
//! An attempt takes two places *before* its messages are leased ([`Places`], `places.rs`): a sending place for its HTTP
//! exchange, of which there are `concurrency`, and a leased place until its outcome is recorded, of which
//! there are twice as many. So at most `concurrency` requests are in flight, the next request goes out while
//! the last one's outcome is still being written, and a lane never holds the messages of more than
//! `2 × concurrency` requests leased. With no place free (a hanging receiver) the lane simply waits; other
//! lanes are unaffected. When several places are free at once (the lane fell behind its attempts), one scan
//! of the due index leases a message for each.
//!
//! Such a lane also lets the store read ahead (the `ahead` of `Store::lease_for_lane`): the PostgreSQL store
//! claims more than asked in the same statement, since a claim costs the database about as much for thirty
//! messages as for three, and serves the lane's next leases from them. Read-ahead messages count as in flight, so the
//! lane gives them back (`Store::give_back_ahead`) whenever it would not send them soon: before it waits in
//! `clear_to_send` (`clearance.rs`), when its settings change, when it stops, and when no place has freed up
//! for [`READ_AHEAD_IDLE`] (a slow or hanging receiver; it then reads nothing ahead until places come
//! quickly).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::attempt::run_attempt;
use super::clearance::Cleared;
use super::health::RateLimiter;
use super::lane_wait::{Woken, note_ended};
use super::places::{AttemptPlaces, Places};
use super::{Control, DispatchContext, LaneShared, lock};
use crate::config::EndpointConfig;
use crate::model::{MessageRecord, now_millis};
use crate::store::{Lease, Remaining};

/// Extra lease time beyond the request timeout; leases only matter to a restart, which releases them all.
const LEASE_MARGIN_MS: u64 = 30_000;
/// How long a lane with nothing queued or in flight lingers before it stops. An endpoint that gets a message
/// every second or so (a customer's steady trickle, or one of ten thousand endpoints taking turns) keeps its
/// lane instead of paying a start and a stop per message; an endpoint idle for longer holds no task.
pub(super) const IDLE_GRACE: Duration = Duration::from_secs(2);
/// How long a lane waits before asking a failing store again.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// A lane that fills its places as they free up lets the store claim this many due messages per sending
/// place beyond what it asked for, kept for its next asks (`Store::lease_due_ahead`)...
const READ_AHEAD_PER_PLACE: usize = 4;
/// ...and never more than this many...
const READ_AHEAD_MAX: usize = 256;
/// ...and only while its places free up within this long: a lane that waits longer for a place gives back
/// what was read ahead for it and reads none ahead until its places come quickly again.
const READ_AHEAD_IDLE: Duration = Duration::from_millis(250);

pub(super) struct Lane {
    pub context: Arc<DispatchContext>,
    pub name: String,
    /// The endpoint's live settings; `PUT /v1/endpoints/{name}` replaces them while the lane runs.
    pub settings: watch::Receiver<Arc<EndpointConfig>>,
    /// Paused / disabled, as the operator (or a 410 Gone) left it.
    pub control: watch::Receiver<Control>,
    /// Nudged by enqueues, replays and this lane's own retries, so the lane re-reads its next due time.
    pub wake: Arc<Notify>,
    /// Nudged when an operator ran the verification handshake.
    pub recheck: Arc<Notify>,
    /// The circuit breaker and status, shared with this lane's attempts and the API.
    pub shared: Arc<LaneShared>,
    /// Stops this lane (the daemon's shutdown, or its endpoint's deletion).
    pub shutdown: CancellationToken,
    /// Cancelled once the lane has stopped.
    pub stopped: CancellationToken,
    /// The registry, which this lane leaves when its endpoint has nothing queued.
    pub lanes: super::Lanes,
}

impl Lane {
    pub async fn run(mut self) {
        let mut places = Places::new(self.current().concurrency);
        let mut rate_limit = self.current().rate_limit.map(RateLimiter::new);
        let clock = tokio::time::Instant::now();
        let mut attempts = JoinSet::new();
        let mut changes = self.settings.clone();
        let mut settings_dirty = false;
        tracing::debug!(endpoint = %self.name, "lane started");
        // New settings (a new URL or key): no sending until verified again.
        let mut reverify = false;
        // Since when the lane waits for a place, and whether the store may hold messages it read ahead.
        let mut waiting_since = None;
        let mut holds_ahead = false;
        // Set while the lane has found nothing to do: it stops at that time unless work comes first.
        let mut idle_until: Option<tokio::time::Instant> = None;
        loop {
            while let Some(ended) = attempts.try_join_next() {
                note_ended(&self.name, ended);
            }
            if settings_dirty || changes.has_changed().unwrap_or(false) {
                changes.borrow_and_update();
                settings_dirty = false;
                reverify = true;
                // What was read ahead under the old settings goes back; the next lease reads afresh.
                self.give_back_ahead().await;
                // Run-time changes of the lane's own limits apply from the next request on; attempts in
                // flight keep their places in the old limit until they end.
                let endpoint = self.current();
                if endpoint.concurrency != places.concurrency {
                    places = Places::new(endpoint.concurrency);
                }
                if rate_limit.as_ref().map(RateLimiter::rate) != endpoint.rate_limit {
                    rate_limit = endpoint.rate_limit.map(RateLimiter::new);
                }
                lock(&self.shared.circuit).reconfigure(endpoint.circuit_breaker);
            }
            let since = *waiting_since.get_or_insert_with(tokio::time::Instant::now);
            let taken = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                changed = changes.changed() => match changed {
                    // New settings may bring new places: look again.
                    Ok(()) => {
                        settings_dirty = true;
                        continue;
                    }
                    Err(_) => break,
                },
                taken = places.take() => match taken {
                    Ok(taken) => taken,
                    Err(_) => break,
                },
                // No place freed up for a while (a slow or hanging receiver, or the lane is paused meanwhile):
                // what the store read ahead would wait with the lane, counted in flight, so it goes back.
                _ = tokio::time::sleep_until(since + READ_AHEAD_IDLE), if holds_ahead => {
                    self.give_back_ahead().await;
                    holds_ahead = false;
                    continue;
                }
            };
            // Read ahead only for a lane whose places free up quickly: it will send what it reads soon.
            let places_quick = since.elapsed() < READ_AHEAD_IDLE;
            waiting_since = None;
            let settings_changed = std::mem::take(&mut reverify);
            let (batch_max, probe) = match self.clear_to_send(settings_changed).await {
                Cleared::Send { batch_max, probe } => (batch_max, probe),
                Cleared::Shutdown => break,
            };
            if let Some(limiter) = &rate_limit {
                let wait = limiter.wait(clock.elapsed().as_micros() as u64);
                if wait > 0 {
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_micros(wait)) => {}
                    }
                }
            }
            let endpoint = self.current();
            // One message per request, no rate limit: every free place is filled from the same scan of the
            // due index (one scan steps over everything this lane holds in flight), and the store may read
            // ahead for the places that free up next.
            let fills_places = batch_max == 1 && !probe && rate_limit.is_none();
            let spare = if fills_places {
                places.spare()
            } else {
                Vec::new()
            };
            let ahead = if fills_places && places_quick {
                places
                    .concurrency
                    .saturating_mul(READ_AHEAD_PER_PLACE)
                    .min(READ_AHEAD_MAX)
            } else {
                0
            };
            let now = now_millis();
            let lease_until = now + endpoint.timeout.as_millis() as u64 + LEASE_MARGIN_MS;
            let (leased, remaining) = match self
                .context
                .store
                .lease_for_lane(
                    &self.name,
                    now,
                    batch_max * (1 + spare.len()),
                    ahead,
                    lease_until,
                )
                .await
            {
                Ok((lease, remaining)) => (Ok(lease), remaining),
                Err(error) => (Err(error), Remaining::Unknown),
            };
            if !matches!(leased, Ok(Lease::Idle)) {
                idle_until = None;
            }
            // The lease took the last of the endpoint's queue: once these are sent, another lease would find
            // nothing until something wakes the lane, so the lane waits for that instead.
            let drained = fills_places && remaining == Remaining::Nothing;
            let sleep_for = match leased {
                Ok(Lease::Taken(mut messages)) => {
                    holds_ahead |= ahead > 0;
                    if spare.is_empty() {
                        if let Some(limiter) = &mut rate_limit {
                            limiter.take(clock.elapsed().as_micros() as u64);
                        }
                        if messages.len() < batch_max {
                            self.fill_batch(&endpoint, batch_max, &mut messages).await;
                        }
                        attempts.spawn(self.attempt(&endpoint, messages, taken));
                    } else {
                        // Unused spare places go back as the iterator drops them.
                        let taken = std::iter::once(taken).chain(spare);
                        for (message, taken) in messages.into_iter().zip(taken) {
                            attempts.spawn(self.attempt(&endpoint, vec![message], taken));
                        }
                    }
                    if drained {
                        match self.wait_drained(&mut changes, &mut idle_until).await {
                            Woken::Shutdown => break,
                            Woken::Settings => settings_dirty = true,
                            Woken::Work => {}
                        }
                    }
                    continue;
                }
                Ok(Lease::NextDueAt(due_at)) => {
                    holds_ahead = false;
                    Some(Duration::from_millis(due_at.saturating_sub(now)))
                }
                Ok(Lease::Idle) if attempts.is_empty() => {
                    holds_ahead = false;
                    // Nothing queued or in flight: the lane stops (the next wake starts another), once it
                    // has been idle for IDLE_GRACE.
                    let now = tokio::time::Instant::now();
                    match idle_until {
                        Some(until) if now >= until => {
                            if self.lanes.retire(&self.name, &self.wake) {
                                break;
                            }
                            idle_until = None;
                            None
                        }
                        Some(until) => Some(until - now),
                        None => {
                            idle_until = Some(now + IDLE_GRACE);
                            Some(IDLE_GRACE)
                        }
                    }
                }
                Ok(Lease::Idle) => {
                    holds_ahead = false;
                    None
                }
                Err(error) => {
                    tracing::error!(endpoint = %self.name, %error, "lane cannot read the store");
                    Some(STORE_RETRY)
                }
            };
            if probe {
                lock(&self.shared.circuit).probe_not_sent(now);
            }
            drop(taken);
            match self
                .wait(sleep_for, Some(&mut attempts), &mut changes)
                .await
            {
                Woken::Shutdown => break,
                Woken::Settings => settings_dirty = true,
                Woken::Work => {}
            }
        }
        self.finish(attempts).await;
        self.stopped.cancel();
    }

    /// One request's attempt on leased `messages`, in the places `taken` for it.
    fn attempt(
        &self,
        endpoint: &Arc<EndpointConfig>,
        messages: Vec<MessageRecord>,
        taken: AttemptPlaces,
    ) -> impl Future<Output = ()> + Send + 'static {
        run_attempt(
            Arc::clone(&self.context),
            Arc::clone(endpoint),
            messages,
            Arc::clone(&self.wake),
            Arc::clone(&self.shared),
            taken,
        )
    }

    /// Gives back what the store read ahead for this lane (due now, no attempt counted): the lane is about
    /// to wait, or its settings changed, or it stops. A store that cannot be reached keeps the claims,
    /// which run out by themselves and are reaped.
    pub(super) async fn give_back_ahead(&self) {
        if let Err(error) = self
            .context
            .store
            .give_back_ahead(&self.name, now_millis())
            .await
        {
            tracing::warn!(endpoint = %self.name, %error, "could not give back the messages read ahead");
        }
    }

    /// The endpoint's settings now.
    pub(super) fn current(&self) -> Arc<EndpointConfig> {
        Arc::clone(&self.settings.borrow())
    }

    /// For batching formats: waits up to `batch_linger` for more due messages (woken by enqueues) so one
    /// request carries up to `batch_max` of them.
    async fn fill_batch(
        &self,
        endpoint: &EndpointConfig,
        batch_max: usize,
        messages: &mut Vec<MessageRecord>,
    ) {
        let deadline = tokio::time::Instant::now() + endpoint.batch_linger;
        while messages.len() < batch_max {
            let woken = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.wake.notified() => true,
                _ = tokio::time::sleep_until(deadline) => false,
            };
            let now = now_millis();
            let lease_until = now + endpoint.timeout.as_millis() as u64 + LEASE_MARGIN_MS;
            let room = batch_max - messages.len();
            match self
                .context
                .store
                .lease_due(&self.name, now, room, lease_until)
                .await
            {
                Ok(Lease::Taken(more)) => messages.extend(more),
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(endpoint = %self.name, %error, "lane cannot read the store");
                    return;
                }
            }
            if !woken {
                return;
            }
        }
    }

    /// Lets in-flight attempts finish within the grace period, then aborts the rest and releases their
    /// messages back to due (no attempt counted).
    async fn finish(&self, mut attempts: JoinSet<()>) {
        self.give_back_ahead().await;
        let name = self.name.as_str();
        let grace = self.context.shutdown_grace;
        let all_done = async { while attempts.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            tracing::warn!(
                endpoint = name,
                "grace period over; aborting attempts still in flight"
            );
            attempts.shutdown().await;
        }
        tracing::debug!(endpoint = name, "lane stopped");
    }
}
