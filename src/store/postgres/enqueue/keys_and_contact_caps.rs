//! Enqueues with idempotency keys or contact caps: one transaction finds the keys known already, takes an
//! advisory lock per contact, counts its pending messages, decides each message, then inserts.

use std::collections::HashMap;

use uuid::Uuid;

use super::{Fate, rows_to_insert};
use crate::store::postgres::PgStore;
use crate::store::postgres::row;
use crate::store::{Enqueued, StoreError};

impl PgStore {
    /// Messages with idempotency keys or contact caps: a transaction that decides each, then inserts.
    pub(super) async fn insert_checked(
        &self,
        fates: &mut [Vec<Fate>],
        limits: &[Vec<Option<usize>>],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(|e| self.failed_with(e))?;
        // Keys known already, and keys repeated inside the batch.
        let mut known: HashMap<(String, String), Uuid> = HashMap::new();
        let keyed: Vec<(String, String)> = fates
            .iter()
            .flatten()
            .filter_map(|fate| match fate {
                Fate::Insert(r) => r.idempotency_key.clone().map(|k| (r.endpoint.clone(), k)),
                Fate::Answered(_) => None,
            })
            .collect();
        if !keyed.is_empty() {
            known.extend(self.known_keys(&keyed, &mut tx).await?);
        }
        // Contacts: an advisory lock each (in one order), then their pending counts.
        let contacts: Vec<(String, String)> =
            distinct_pairs(fates.iter().flatten().filter_map(|fate| match fate {
                Fate::Insert(r) => r.contact.clone().map(|c| (r.endpoint.clone(), c)),
                Fate::Answered(_) => None,
            }));
        let mut pending: HashMap<(String, String), usize> = HashMap::new();
        if !contacts.is_empty() {
            let (endpoints, names): (Vec<String>, Vec<String>) = contacts.iter().cloned().unzip();
            sqlx::query(
                "SELECT pg_advisory_xact_lock(k) FROM (
                     SELECT DISTINCT hashtextextended(e || chr(31) || c, 7) AS k
                     FROM UNNEST($1::text[], $2::text[]) AS u(e, c) ORDER BY k) AS keys",
            )
            .bind(&endpoints)
            .bind(&names)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.failed_with(e))?;
            let counted: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT m.endpoint, m.contact, count(*) FROM hookd_messages m
                 JOIN UNNEST($1::text[], $2::text[]) AS u(e, c) ON m.endpoint = u.e AND m.contact = u.c
                 WHERE m.stage IN ('queued', 'in_flight') GROUP BY 1, 2",
            )
            .bind(&endpoints)
            .bind(&names)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.failed_with(e))?;
            pending.extend(counted.into_iter().map(|(e, c, n)| ((e, c), n as usize)));
        }
        // Decide each message in order.
        for (fates, limits) in fates.iter_mut().zip(limits) {
            for (fate, limit) in fates.iter_mut().zip(limits) {
                let Fate::Insert(record) = fate else { continue };
                if let Some(key) = &record.idempotency_key {
                    let known_key = (record.endpoint.clone(), key.clone());
                    if let Some(first) = known.get(&known_key) {
                        *fate = Fate::Answered(Ok(Enqueued {
                            id: row::message_id(*first),
                            duplicate: true,
                        }));
                        continue;
                    }
                    known.insert(known_key, row::uuid(record.id));
                }
                if let (Some(contact), Some(max)) = (&record.contact, limit) {
                    let place = pending
                        .entry((record.endpoint.clone(), contact.clone()))
                        .or_default();
                    if *place >= *max {
                        *fate = Fate::Answered(Err(StoreError::ContactFull {
                            endpoint: record.endpoint.clone(),
                            contact: contact.clone(),
                            max: *max,
                        }));
                        continue;
                    }
                    *place += 1;
                }
            }
        }
        let rows = rows_to_insert(fates)?;
        let inserted = self.insert(&rows, &mut *tx).await?;
        if inserted.len() < rows.len() {
            // Another node inserted one of these keys since we looked: those messages are its duplicates.
            let lost = self.settle_raced_keys(fates, &inserted, &mut tx).await?;
            if lost > 0 {
                tracing::debug!(lost, "idempotency keys raced with another node");
            }
        }
        tx.commit().await.map_err(|e| self.failed_with(e))?;
        self.count_inserted(&rows, &inserted);
        Ok(())
    }

    async fn known_keys(
        &self,
        keyed: &[(String, String)],
        tx: &mut sqlx::PgConnection,
    ) -> Result<Vec<((String, String), Uuid)>, StoreError> {
        let (endpoints, keys): (Vec<String>, Vec<String>) = keyed.iter().cloned().unzip();
        let rows: Vec<(String, String, Uuid)> = sqlx::query_as(
            "SELECT m.endpoint, m.idempotency_key, m.id FROM hookd_messages m
             JOIN UNNEST($1::text[], $2::text[]) AS u(e, k)
               ON m.endpoint = u.e AND m.idempotency_key = u.k",
        )
        .bind(&endpoints)
        .bind(&keys)
        .fetch_all(tx)
        .await
        .map_err(|e| self.failed_with(e))?;
        Ok(rows.into_iter().map(|(e, k, id)| ((e, k), id)).collect())
    }

    /// Answers the messages whose insert was skipped (their key was inserted by another node meanwhile) as
    /// duplicates of the stored message. Returns how many.
    async fn settle_raced_keys(
        &self,
        fates: &mut [Vec<Fate>],
        inserted: &[Uuid],
        tx: &mut sqlx::PgConnection,
    ) -> Result<usize, StoreError> {
        let inserted: std::collections::HashSet<Uuid> = inserted.iter().copied().collect();
        let raced: Vec<(String, String)> = fates
            .iter()
            .flatten()
            .filter_map(|fate| match fate {
                Fate::Insert(r) if !inserted.contains(&row::uuid(r.id)) => {
                    r.idempotency_key.clone().map(|k| (r.endpoint.clone(), k))
                }
                _ => None,
            })
            .collect();
        let stored: HashMap<(String, String), Uuid> =
            self.known_keys(&raced, tx).await?.into_iter().collect();
        let mut settled = 0;
        for fate in fates.iter_mut().flatten() {
            let Fate::Insert(record) = fate else { continue };
            if inserted.contains(&row::uuid(record.id)) {
                continue;
            }
            let key = (
                record.endpoint.clone(),
                record.idempotency_key.clone().unwrap_or_default(),
            );
            let Some(first) = stored.get(&key) else {
                return Err(StoreError::Corrupt(format!(
                    "message {} was neither inserted nor found by its idempotency key",
                    record.id
                )));
            };
            *fate = Fate::Answered(Ok(Enqueued {
                id: row::message_id(*first),
                duplicate: true,
            }));
            settled += 1;
        }
        Ok(settled)
    }
}

fn distinct_pairs(pairs: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let set: std::collections::BTreeSet<(String, String)> = pairs.collect();
    set.into_iter().collect()
}
