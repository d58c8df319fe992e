//! The node's heartbeat: every `heartbeat` interval it marks the node alive, renews its claims and lane
//! leases (giving back what it read ahead for a lane it lost), and, while other nodes are alive, rereads the cluster's tally; now and then one node (whoever
//! takes the advisory lock) folds the tally's change rows together.
//!
//! A heartbeat that fails (the database is down) is logged and tried again at the next beat; the claims and
//! leases it could not renew may run out, and the reaper then gives their messages to a live node.

use std::sync::Weak;

use uuid::Uuid;

use super::{Inner, PgStore, pg_error, row, sql_millis};
use crate::model::{Millis, now_millis};
use crate::store::StoreError;

/// The advisory lock whoever folds the tally holds ("tally" in ASCII).
const FOLD_LOCK: i64 = 0x74_616c_6c79;
/// A node not seen for this long is taken for dead (it no longer counts as a peer).
const PEER_SILENCE_MS: Millis = 30_000;
/// Folding runs every this many beats.
const FOLD_EVERY: u64 = 10;

pub fn spawn(store: Weak<Inner>) {
    tokio::spawn(async move {
        let Some((interval, stop)) =
            PgStore::upgrade(&store).map(|s| (s.inner.options.heartbeat, s.inner.stop.clone()))
        else {
            return;
        };
        let mut beats = 0u64;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let Some(store) = PgStore::upgrade(&store) else {
                return;
            };
            beats += 1;
            if let Err(error) = store.beat(beats % FOLD_EVERY == 0).await {
                tracing::warn!(%error, "heartbeat failed; trying again at the next beat");
            }
        }
    });
}

impl PgStore {
    async fn beat(&self, fold: bool) -> Result<(), StoreError> {
        let now = now_millis();
        let peers: i64 = sqlx::query_scalar(
            "WITH seen AS (UPDATE hookd_nodes SET seen_at = $2 WHERE id = $1)
             SELECT count(*) FROM hookd_nodes WHERE id <> $1 AND seen_at > $3",
        )
        .bind(self.inner.node)
        .bind(sql_millis(now))
        .bind(sql_millis(now.saturating_sub(PEER_SILENCE_MS)))
        .fetch_one(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        self.reached();
        self.renew_claims(now).await?;
        self.renew_owned().await?;
        self.give_back_unowned_ahead(now).await?;
        if peers > 0 {
            self.reload_tally().await?;
        }
        if fold {
            self.fold_under_lock(now).await?;
        }
        Ok(())
    }

    /// Folds the tally and forgets nodes silent for a day, if no other node is doing it.
    async fn fold_under_lock(&self, now: Millis) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(pg_error)?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(FOLD_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(pg_error)?;
        if got {
            sqlx::query(
                "WITH folded AS (DELETE FROM hookd_tally RETURNING endpoint, stage, n)
                 INSERT INTO hookd_tally (endpoint, stage, n)
                 SELECT endpoint, stage, sum(n) FROM folded GROUP BY 1, 2 HAVING sum(n) <> 0",
            )
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
            sqlx::query("DELETE FROM hookd_nodes WHERE seen_at < $1")
                .bind(sql_millis(now.saturating_sub(24 * 3600 * 1000)))
                .execute(&mut *tx)
                .await
                .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(())
    }

    /// Renews this node's claims up to their lanes' deadlines.
    async fn renew_claims(&self, now: Millis) -> Result<(), StoreError> {
        let mut all = self.inner.claims.all();
        if all.is_empty() {
            return Ok(());
        }
        all.sort_unstable_by_key(|(id, _, _)| *id);
        let ids: Vec<Uuid> = all.iter().map(|(id, _, _)| row::uuid(*id)).collect();
        let claims: Vec<Uuid> = all.iter().map(|(_, claim, _)| *claim).collect();
        let untils: Vec<i64> = all
            .iter()
            .map(|(_, _, until)| sql_millis((*until).min(now + self.ttl())))
            .collect();
        // A row another statement holds (an outcome or a give-back being written, which ends the claim anyway)
        // is skipped, not waited for: the next beat renews it, well before it runs out. Waiting could deadlock
        // with those statements, which lock the same rows in another order, and stall them for the deadlock
        // check's second.
        sqlx::query(
            "WITH renewed AS (
                 SELECT m.id, u.until
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[]) AS u(id, claim, until)
                 JOIN hookd_messages m ON m.id = u.id
                 WHERE m.claim_id IS NOT DISTINCT FROM u.claim AND m.claim_until < u.until
                 FOR UPDATE OF m SKIP LOCKED)
             UPDATE hookd_messages m SET claim_until = renewed.until
             FROM renewed WHERE m.id = renewed.id",
        )
        .bind(&ids)
        .bind(&claims)
        .bind(&untils)
        .execute(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        Ok(())
    }
}
