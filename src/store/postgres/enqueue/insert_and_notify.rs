//! The one statement that writes a batch: `INSERT ... SELECT FROM UNNEST` with the `NOTIFY` that wakes the
//! batch's endpoints on other nodes.

use uuid::Uuid;

use crate::store::StoreError;
use crate::store::postgres::row::Rows;
use crate::store::postgres::{PgStore, distinct};

/// A notification's payload stays under PostgreSQL's 8,000-byte limit.
const NOTIFY_MAX: usize = 7_000;

impl PgStore {
    /// Inserts the rows (skipping any whose idempotency key exists), notifies their endpoints; answers the
    /// ids inserted.
    pub(super) async fn insert<'e>(
        &self,
        rows: &Rows,
        executor: impl sqlx::PgExecutor<'e>,
    ) -> Result<Vec<Uuid>, StoreError> {
        if rows.len() == 0 {
            return Ok(Vec::new());
        }
        let notices = notices(self.inner.node, distinct(rows.endpoints.iter().cloned()));
        let ids: Vec<Option<Uuid>> = sqlx::query_scalar(
            "WITH inserted AS (
                 INSERT INTO hookd_messages
                     (id, endpoint, kind, stage, due_at, contact, idempotency_key, record, payload)
                 SELECT id, endpoint, kind, 'queued', due_at, contact, key, record, payload
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
                             $7::text[], $8::text[]) AS u(id, endpoint, kind, due_at, contact, key, record, payload)
                 ON CONFLICT (endpoint, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                 RETURNING id),
             woken AS (SELECT pg_notify('hookd_work', notice) FROM UNNEST($9::text[]) AS notice)
             SELECT id FROM inserted
             UNION ALL SELECT NULL FROM woken",
        )
        .bind(&rows.ids)
        .bind(&rows.endpoints)
        .bind(&rows.kinds)
        .bind(&rows.due_ats)
        .bind(&rows.contacts)
        .bind(&rows.keys)
        .bind(&rows.records)
        .bind(&rows.payloads)
        .bind(&notices)
        .fetch_all(executor)
        .await
        .map_err(|e| self.failed_with(e))?;
        Ok(ids.into_iter().flatten().collect())
    }
}

/// The `hookd_work` notifications for these endpoints: `node-id endpoint,endpoint,...`, each under the
/// payload limit.
pub fn notices(node: Uuid, endpoints: Vec<String>) -> Vec<String> {
    let mut notices = Vec::new();
    let mut current = format!("{node} ");
    let start = current.len();
    for endpoint in endpoints {
        if current.len() + endpoint.len() + 1 > NOTIFY_MAX && current.len() > start {
            notices.push(std::mem::replace(&mut current, format!("{node} ")));
        }
        if current.len() > start {
            current.push(',');
        }
        current.push_str(&endpoint);
    }
    if current.len() > start {
        notices.push(current);
    }
    notices
}
