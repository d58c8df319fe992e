//! Leasing a lane's due messages, with read-ahead.
//!
//! Why read ahead: a claim is the costliest statement of a busy node (an index walk and a commit whatever
//! it takes), and a lane asks whenever a few of its places free up, so without read-ahead a statement took
//! about three messages. A lane that welcomes it ([`PgStore::lease_due_ahead`]: one message per request, no
//! rate limit, not a probe) has its claim take up to `ahead` more due messages than it asked for; they wait
//! here, under this node's claims, and the lane's next asks are served from them without a statement.
//!
//! What keeps that invisible: read-ahead messages are claimed (`in_flight`) only while their lane is
//! sending. The lane gives them back ([`PgStore::give_back_ahead`], due now, no attempt counted) as soon as
//! it would wait for anything but a free place (paused, disabled, unverified, throttled, circuit open),
//! when its settings change and when it stops; this node gives them back when it finds it no longer owns the
//! endpoint, and with every other claim at shutdown or when the endpoint is deleted. A read-ahead message is
//! handed out only while its claim holds for at least one lease TTL more (its claim-time deadline, up to
//! which the heartbeat renews it): an older one is given back and claimed afresh, so a message never goes
//! out under a claim that may run out before its attempt's deadline is renewed in.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use uuid::Uuid;

use super::{PgStore, lock, millis_of};
use crate::model::{MessageId, MessageRecord, Millis};
use crate::store::{Lease, StoreError};

/// The messages claimed ahead of their lanes' asking, per endpoint, in due order.
#[derive(Default)]
pub struct ReadAhead {
    kept: Mutex<HashMap<String, VecDeque<Ahead>>>,
}

struct Ahead {
    record: MessageRecord,
    claim: Uuid,
}

impl ReadAhead {
    fn keep(&self, endpoint: &str, kept: Vec<Ahead>) {
        if kept.is_empty() {
            return;
        }
        lock(&self.kept)
            .entry(endpoint.to_owned())
            .or_default()
            .extend(kept);
    }

    /// Takes up to `max` of `endpoint`'s read-ahead messages, oldest first.
    fn take(&self, endpoint: &str, max: usize) -> Vec<Ahead> {
        let mut kept = lock(&self.kept);
        let Some(queue) = kept.get_mut(endpoint) else {
            return Vec::new();
        };
        let taken: Vec<Ahead> = queue.drain(..max.min(queue.len())).collect();
        if queue.is_empty() {
            kept.remove(endpoint);
        }
        taken
    }

    /// Puts `taken` back in front of `endpoint`'s read-ahead (a give-back that did not reach the database).
    fn put_back(&self, endpoint: &str, taken: Vec<Ahead>) {
        let mut kept = lock(&self.kept);
        let queue = kept.entry(endpoint.to_owned()).or_default();
        for ahead in taken.into_iter().rev() {
            queue.push_front(ahead);
        }
    }

    fn take_all(&self, endpoint: &str) -> Vec<Ahead> {
        lock(&self.kept)
            .remove(endpoint)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// Drops `endpoint`'s read-ahead from memory (its claims are being given back with the node's others).
    pub(super) fn forget(&self, endpoint: &str) {
        lock(&self.kept).remove(endpoint);
    }

    /// Drops every read-ahead message from memory (all of this node's claims are being given back).
    pub(super) fn forget_all(&self) {
        lock(&self.kept).clear();
    }

    fn endpoints(&self) -> Vec<String> {
        lock(&self.kept).keys().cloned().collect()
    }
}

impl PgStore {
    /// Leases up to `max` due messages of `endpoint` (`Store::lease_due`); a claim statement, when one is
    /// needed, also takes up to `ahead` more, kept for this lane's next asks (module docs).
    pub async fn lease_due_ahead(
        &self,
        endpoint: &str,
        now: Millis,
        max: usize,
        ahead: usize,
        lease_until: Millis,
    ) -> Result<Lease, StoreError> {
        if !self.own(endpoint).await? {
            // Another node runs the lane now: what this node read ahead is not for it to send.
            self.give_back_ahead(endpoint, now).await?;
            return Ok(Lease::Idle);
        }
        if max > 0 {
            let mut taken = self.take_ahead(endpoint, now, max, lease_until).await;
            let wanted = max - taken.len();
            if wanted > 0 {
                let mut claimed = match self
                    .claim(endpoint, now, wanted.saturating_add(ahead), lease_until)
                    .await
                {
                    Ok(claimed) => claimed,
                    // What was read ahead is the lane's already: it goes out rather than wait for the reaper.
                    Err(_) if !taken.is_empty() => return Ok(Lease::Taken(taken)),
                    Err(error) => return Err(error),
                };
                if claimed.len() > wanted {
                    let extra = claimed.split_off(wanted);
                    self.keep_ahead(endpoint, extra);
                }
                taken.extend(claimed);
            }
            if !taken.is_empty() {
                return Ok(Lease::Taken(taken));
            }
        }
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT min(due_at) FROM hookd_messages WHERE endpoint = $1 AND stage = 'queued'",
        )
        .bind(endpoint)
        .fetch_one(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        match next {
            // Due now but locked by another statement (a replay, a retire): look again shortly.
            Some(due_at) => Ok(Lease::NextDueAt(millis_of(due_at).max(now + 1))),
            None => {
                if self.inner.claims.of_endpoint(endpoint).is_empty() {
                    self.disown(endpoint).await?;
                }
                Ok(Lease::Idle)
            }
        }
    }

    /// Gives back `endpoint`'s read-ahead messages: due at `now`, no attempt counted. Answers how many.
    /// Should the database not answer, they stay read ahead (still claimed, still renewed): the next
    /// give-back or lease tries again, rather than leaving them claimed with nobody to send or release them.
    pub async fn give_back_ahead(&self, endpoint: &str, now: Millis) -> Result<usize, StoreError> {
        let kept = self.inner.ahead.take_all(endpoint);
        if kept.is_empty() {
            return Ok(0);
        }
        let given: Vec<(MessageId, Uuid)> = kept
            .iter()
            .map(|ahead| (ahead.record.id, ahead.claim))
            .collect();
        let released = self.release_claims(&given, now).await;
        if released.is_err() {
            self.inner.ahead.put_back(endpoint, kept);
        }
        released
    }

    /// Gives back the read-ahead of every endpoint this node no longer owns (the heartbeat found it lost).
    pub(super) async fn give_back_unowned_ahead(&self, now: Millis) -> Result<(), StoreError> {
        let mine = self.inner.owners.mine(self.inner.node);
        for endpoint in self.inner.ahead.endpoints() {
            if !mine.contains(&endpoint) {
                self.give_back_ahead(&endpoint, now).await?;
            }
        }
        Ok(())
    }

    /// Hands out up to `max` read-ahead messages whose claims still hold long enough, their deadline moved to
    /// `lease_until`; gives back those that do not.
    async fn take_ahead(
        &self,
        endpoint: &str,
        now: Millis,
        max: usize,
        lease_until: Millis,
    ) -> Vec<MessageRecord> {
        let mut served = Vec::new();
        let mut stale = Vec::new();
        while served.len() < max {
            let batch = self.inner.ahead.take(endpoint, max - served.len());
            if batch.is_empty() {
                break;
            }
            for ahead in batch {
                match self.inner.claims.held(ahead.record.id) {
                    // Released or reaped meanwhile: not this node's to send.
                    Some((claim, _)) if claim != ahead.claim => {}
                    None => {}
                    Some((_, until)) if until < now.saturating_add(self.ttl()) => {
                        stale.push((ahead.record.id, ahead.claim));
                    }
                    Some(_) => {
                        self.inner.claims.extend(ahead.record.id, lease_until);
                        served.push(ahead.record);
                    }
                }
            }
        }
        // Their claims run out soon by themselves should this fail; what was served is the lane's already.
        if !stale.is_empty()
            && let Err(error) = self.release_claims(&stale, now).await
        {
            tracing::warn!(endpoint, %error, "could not give back read-ahead messages about to run out");
        }
        served
    }

    fn keep_ahead(&self, endpoint: &str, records: Vec<MessageRecord>) {
        let kept = records
            .into_iter()
            .filter_map(|record| {
                let (claim, _) = self.inner.claims.held(record.id)?;
                Some(Ahead { record, claim })
            })
            .collect();
        self.inner.ahead.keep(endpoint, kept);
    }
}
