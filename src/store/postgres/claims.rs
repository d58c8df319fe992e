//! Claims: a lane's due messages taken with `FOR UPDATE SKIP LOCKED`, each under a claim (id, owner, expiry);
//! claims given back, renewed and reaped (outcomes, written only while their claim holds: `outcomes.rs`).
//!
//! A claim lasts until the lane's deadline for the attempt or one lease TTL, whichever is sooner; the
//! heartbeat renews the node's claims up to that deadline. So a claim of a node that died runs out within the
//! TTL, and the reaper ([`PgStore::release_expired`], any node's) makes the message due again with no attempt
//! counted. An outcome's `UPDATE` matches the claim id: if the claim was reaped and the message claimed anew,
//! the late outcome changes nothing.
//!
//! Leasing (`lease.rs`) claims more than a lane asks for when the lane welcomes it; the extra messages wait
//! in the node's read-ahead, still under this node's claims, so every verb here that gives claims back
//! gives them back too.

use std::collections::HashMap;
use std::sync::Mutex;

use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::row::{self, COLUMNS};
use super::{PgStore, distinct, lock, sql_millis};
use crate::model::{MessageId, MessageRecord, Millis, Stage};
use crate::store::{CORRUPT_KIND, StoreError};

/// The `hookd_changes` notice of a node that gave up lanes and claims: `node released a,b`.
pub const RELEASED: &str = "released";

/// This node's claims, by message.
#[derive(Default)]
pub struct Claims {
    held: Mutex<HashMap<MessageId, Held>>,
}

#[derive(Clone)]
struct Held {
    claim: Uuid,
    endpoint: String,
    /// The lane's deadline for the attempt: renewals stop there.
    until: Millis,
}

impl Claims {
    pub(super) fn claim_of(&self, id: MessageId) -> Option<Uuid> {
        lock(&self.held).get(&id).map(|held| held.claim)
    }

    /// Forgets these claims, each only while it is still the one held on its message: a message given back
    /// and claimed again since keeps its newer claim, whose outcome must still match.
    fn drop_claims(&self, claims: &[(MessageId, Uuid)]) {
        let mut held = lock(&self.held);
        for (id, claim) in claims {
            if held.get(id).is_some_and(|now| now.claim == *claim) {
                held.remove(id);
            }
        }
    }

    pub(super) fn drop_ids(&self, ids: impl IntoIterator<Item = MessageId>) {
        let mut held = lock(&self.held);
        for id in ids {
            held.remove(&id);
        }
    }

    /// The claim held on `id` and the deadline its renewals stop at.
    pub(super) fn held(&self, id: MessageId) -> Option<(Uuid, Millis)> {
        lock(&self.held)
            .get(&id)
            .map(|held| (held.claim, held.until))
    }

    /// Moves the deadline of the claim on `id` to `until` (a read-ahead message handed to its lane).
    pub(super) fn extend(&self, id: MessageId, until: Millis) {
        if let Some(held) = lock(&self.held).get_mut(&id) {
            held.until = until;
        }
    }

    pub(super) fn of_endpoint(&self, endpoint: &str) -> Vec<(MessageId, Uuid)> {
        lock(&self.held)
            .iter()
            .filter(|(_, held)| held.endpoint == endpoint)
            .map(|(id, held)| (*id, held.claim))
            .collect()
    }

    pub(super) fn all(&self) -> Vec<(MessageId, Uuid, Millis)> {
        lock(&self.held)
            .iter()
            .map(|(id, held)| (*id, held.claim, held.until))
            .collect()
    }
}

impl PgStore {
    /// Claims up to `max` due messages of `endpoint` in one statement, each held until `lease_until` (renewed
    /// by the heartbeat up to then), in due order.
    pub(super) async fn claim(
        &self,
        endpoint: &str,
        now: Millis,
        max: usize,
        lease_until: Millis,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let claim = Uuid::now_v7();
        let until = lease_until.min(now + self.ttl());
        let rows = sqlx::query(AssertSqlSafe(format!(
            "WITH due AS (
                 SELECT id FROM hookd_messages
                 WHERE endpoint = $1 AND stage = 'queued' AND due_at <= $2
                 ORDER BY due_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
             UPDATE hookd_messages m
             SET stage = 'in_flight', claim_id = $4, claim_owner = $5, claim_until = $6
             FROM due WHERE m.id = due.id
             RETURNING {}",
            qualified(COLUMNS)
        )))
        .bind(endpoint)
        .bind(sql_millis(now))
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .bind(claim)
        .bind(self.inner.node)
        .bind(sql_millis(until))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        self.wrote();
        let mut taken = Vec::with_capacity(rows.len());
        let mut corrupt = Vec::new();
        for found in &rows {
            match row::record_of(found) {
                Ok(record) => taken.push(record),
                Err(error) => corrupt.push((row::column::<Uuid>(found, "id")?, error)),
            }
        }
        {
            let mut held = lock(&self.inner.claims.held);
            for record in &taken {
                held.insert(
                    record.id,
                    Held {
                        claim,
                        endpoint: endpoint.to_owned(),
                        until: lease_until,
                    },
                );
            }
        }
        self.inner.tally.moved(
            endpoint,
            Some(Stage::Queued),
            Some(Stage::InFlight),
            rows.len() as u64,
        );
        for (id, error) in corrupt {
            self.quarantine(endpoint, id, &error.to_string(), now)
                .await?;
        }
        taken.sort_by_key(|record| (record.next_attempt_at, record.id));
        Ok(taken)
    }

    /// One unreadable record must not stall its endpoint: it becomes a dead letter of kind
    /// [`CORRUPT_KIND`], its stored text kept as the payload for inspection.
    async fn quarantine(
        &self,
        endpoint: &str,
        id: Uuid,
        problem: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        tracing::error!(endpoint, message = %id, problem, "an unreadable message record becomes a dead letter");
        let mut record =
            MessageRecord::new_queued(row::message_id(id), endpoint, CORRUPT_KIND, "", now);
        record.stage = Stage::Dead;
        record.dead_reason = Some(format!("corrupt record: {problem}"));
        record.dead_at = Some(now);
        sqlx::query(
            "UPDATE hookd_messages SET stage = 'dead', kind = $2, payload = record, record = $3,
                 claim_id = NULL, claim_owner = NULL, claim_until = NULL
             WHERE id = $1",
        )
        .bind(id)
        .bind(CORRUPT_KIND)
        .bind(row::record_json(&record)?)
        .execute(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        self.inner.claims.drop_ids([record.id]);
        self.inner
            .tally
            .moved(endpoint, Some(Stage::InFlight), Some(Stage::Dead), 1);
        Ok(())
    }

    pub fn is_leased(&self, id: MessageId) -> bool {
        self.inner.claims.claim_of(id).is_some()
    }

    pub async fn release(&self, id: MessageId, now: Millis) -> Result<(), StoreError> {
        let Some(claim) = self.inner.claims.claim_of(id) else {
            return Ok(());
        };
        self.release_claims(&[(id, claim)], now).await.map(|_| ())
    }

    pub async fn release_all_leases(&self, now: Millis) -> Result<usize, StoreError> {
        let all: Vec<(MessageId, Uuid)> = self
            .inner
            .claims
            .all()
            .into_iter()
            .map(|(id, claim, _)| (id, claim))
            .collect();
        // The read-ahead's messages are among this node's claims: released with them.
        self.inner.ahead.forget_all();
        let (released, mut endpoints) = self.release_claims_of(&all, now).await?;
        let given_up: Vec<String> =
            sqlx::query_scalar("DELETE FROM hookd_owners WHERE owner = $1 RETURNING endpoint")
                .bind(self.inner.node)
                .fetch_all(self.pool())
                .await
                .map_err(|e| self.failed_with(e))?;
        for endpoint in self.inner.owners.mine(self.inner.node) {
            self.inner.owners.forget(&endpoint);
        }
        endpoints.extend(given_up);
        self.announce_released(distinct(endpoints)).await?;
        Ok(released)
    }

    /// Tells the other nodes that this node gave up these endpoints' lanes and put their claimed messages
    /// back (`hookd_changes`: `node released a,b`): they forget this node as the lanes' owner and wake the
    /// lanes. Without it, a node that stops gracefully leaves its work to the next enqueue, and the others
    /// would trust the lease they last saw until it ran out; nothing would be reaped, as nothing expired.
    async fn announce_released(&self, endpoints: Vec<String>) -> Result<(), StoreError> {
        if endpoints.is_empty() {
            return Ok(());
        }
        let notices: Vec<String> = super::enqueue::notices(self.inner.node, endpoints)
            .into_iter()
            .map(|notice| match notice.split_once(' ') {
                Some((node, list)) => format!("{node} {RELEASED} {list}"),
                None => notice,
            })
            .collect();
        sqlx::query("SELECT pg_notify($1, n) FROM UNNEST($2::text[]) AS n")
            .bind(super::listen::CHANGES)
            .bind(&notices)
            .execute(self.pool())
            .await
            .map_err(|e| self.failed_with(e))?;
        Ok(())
    }

    pub async fn release_leases_of(
        &self,
        endpoint: &str,
        now: Millis,
    ) -> Result<usize, StoreError> {
        self.inner.ahead.forget(endpoint);
        let held = self.inner.claims.of_endpoint(endpoint);
        let released = self.release_claims(&held, now).await?;
        self.disown(endpoint).await?;
        Ok(released)
    }

    /// Puts these claimed messages back to due at `now`, no attempt counted; answers how many were.
    pub(super) async fn release_claims(
        &self,
        claims: &[(MessageId, Uuid)],
        now: Millis,
    ) -> Result<usize, StoreError> {
        self.release_claims_of(claims, now)
            .await
            .map(|(released, _)| released)
    }

    /// Like [`Self::release_claims`]; also answers the endpoints of the messages put back.
    async fn release_claims_of(
        &self,
        claims: &[(MessageId, Uuid)],
        now: Millis,
    ) -> Result<(usize, Vec<String>), StoreError> {
        if claims.is_empty() {
            return Ok((0, Vec::new()));
        }
        // In id order, as the renewal takes them: two statements over the same rows lock them in one order.
        let mut claims = claims.to_vec();
        claims.sort_unstable_by_key(|(id, _)| *id);
        let ids: Vec<Uuid> = claims.iter().map(|(id, _)| row::uuid(*id)).collect();
        let claim_ids: Vec<Uuid> = claims.iter().map(|(_, claim)| *claim).collect();
        let released: Vec<(Uuid, String)> = sqlx::query_as(
            "UPDATE hookd_messages m
             SET stage = 'queued', due_at = $3, claim_id = NULL, claim_owner = NULL, claim_until = NULL
             FROM UNNEST($1::uuid[], $2::uuid[]) AS u(id, claim)
             WHERE m.id = u.id AND m.claim_id IS NOT DISTINCT FROM u.claim
             RETURNING m.id, m.endpoint",
        )
        .bind(&ids)
        .bind(&claim_ids)
        .bind(sql_millis(now))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        self.wrote();
        self.inner.claims.drop_claims(&claims);
        self.count_moves(&released, Stage::InFlight, Stage::Queued);
        let endpoints = distinct(released.iter().map(|(_, endpoint)| endpoint.clone()));
        Ok((released.len(), endpoints))
    }

    /// The reaper: every claim that ran out before `now` (its node died, or its attempt was lost) is due
    /// again at `now`, no attempt counted, and every lane lease that ran out is removed. Answers the
    /// endpoints to wake.
    pub async fn release_expired(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        let reaped: Vec<(Uuid, String)> = sqlx::query_as(
            "UPDATE hookd_messages
             SET stage = 'queued', due_at = $1, claim_id = NULL, claim_owner = NULL, claim_until = NULL
             WHERE stage = 'in_flight' AND claim_until < $1
             RETURNING id, endpoint",
        )
        .bind(sql_millis(now))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        self.inner
            .claims
            .drop_ids(reaped.iter().map(|(id, _)| row::message_id(*id)));
        self.count_moves(&reaped, Stage::InFlight, Stage::Queued);
        let orphaned = self.reap_owners(now).await?;
        let endpoints = distinct(
            reaped
                .into_iter()
                .map(|(_, endpoint)| endpoint)
                .chain(orphaned),
        );
        // The caller wakes these lanes here; the node that runs one of them may be another (it took the lane
        // over on an enqueue after the lease ran out), and it learns of the messages due again from this.
        if !endpoints.is_empty() {
            sqlx::query("SELECT pg_notify($1, n) FROM UNNEST($2::text[]) AS n")
                .bind(super::listen::WORK)
                .bind(super::enqueue::notices(self.inner.node, endpoints.clone()))
                .execute(self.pool())
                .await
                .map_err(|e| self.failed_with(e))?;
        }
        Ok(endpoints)
    }

    fn count_moves(&self, moved: &[(Uuid, String)], from: Stage, to: Stage) {
        let mut per_endpoint: HashMap<&str, u64> = HashMap::new();
        for (_, endpoint) in moved {
            *per_endpoint.entry(endpoint).or_default() += 1;
        }
        for (endpoint, n) in per_endpoint {
            self.inner.tally.moved(endpoint, Some(from), Some(to), n);
        }
    }

    pub(super) fn ttl(&self) -> Millis {
        self.inner.options.lease_ttl.as_millis() as Millis
    }
}

/// `id, stage, ...` as `m.id, m.stage, ...` (for a `RETURNING` after `UPDATE ... FROM`).
fn qualified(columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("m.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
