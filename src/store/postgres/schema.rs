//! The PostgreSQL schema and its migrations.
//!
//! Each migration is one SQL script applied in one transaction and recorded in `hookd_schema`. Whoever
//! applies them (`hookd migrate`, or `serve` at start) holds a transaction-level advisory lock first, so
//! several nodes starting at once apply each migration once: the others wait, then find it applied.
//!
//! What the tables hold:
//! - `hookd_messages`: one row a message. The columns a query selects or orders by (`stage`, `due_at`, the
//!   claim) are the truth for those fields; `record` (JSON text of the record) holds the rest, written once
//!   per change of the message, and `payload` the body as the client sent it.
//! - `hookd_attempts`: every attempt but a message's latest (which is in its record), as in the sled backend.
//! - `hookd_endpoints`, `hookd_tokens`: the endpoint and token records, JSON text, `version` counting writes.
//! - `hookd_owners`: which node runs each endpoint's lane, until when (the cluster-wide lane lease).
//! - `hookd_nodes`: the nodes and when each was last seen (their heartbeat).
//! - `hookd_tally`: per endpoint and stage, signed changes in message counts, appended by statement-level
//!   triggers on `hookd_messages` and folded together now and then: the cluster's live counts, read without
//!   counting the messages.

use sqlx::PgPool;

use super::pg_error;
use crate::store::StoreError;

/// The advisory lock key migrations run under (any constant unique to hookd: "hookd" in ASCII).
const MIGRATION_LOCK: i64 = 0x68_6f6f_6b64;

/// The migrations in order; a migration's version is its index plus one. Never edit one that has shipped:
/// add the next.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE hookd_messages (
    id uuid PRIMARY KEY,
    endpoint text NOT NULL,
    kind text NOT NULL,
    stage text NOT NULL CHECK (stage IN ('queued', 'in_flight', 'delivered', 'dead')),
    due_at bigint NOT NULL,
    contact text,
    idempotency_key text,
    delivered_at bigint,
    claim_id uuid,
    claim_owner uuid,
    claim_until bigint,
    record text NOT NULL,
    payload text NOT NULL
);
CREATE INDEX hookd_messages_due ON hookd_messages (endpoint, due_at, id) WHERE stage = 'queued';
CREATE UNIQUE INDEX hookd_messages_idempotency ON hookd_messages (endpoint, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX hookd_messages_contact ON hookd_messages (endpoint, contact)
    WHERE contact IS NOT NULL AND stage IN ('queued', 'in_flight');
CREATE INDEX hookd_messages_stage ON hookd_messages (stage, endpoint, id);
CREATE INDEX hookd_messages_delivered ON hookd_messages (delivered_at) WHERE stage = 'delivered';
CREATE INDEX hookd_messages_claims ON hookd_messages (claim_until) WHERE stage = 'in_flight';

CREATE TABLE hookd_attempts (
    message_id uuid NOT NULL,
    number integer NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (message_id, number)
);

CREATE TABLE hookd_endpoints (
    name text PRIMARY KEY,
    state text NOT NULL,
    version bigint NOT NULL DEFAULT 1
);

CREATE TABLE hookd_tokens (
    name text PRIMARY KEY,
    record text NOT NULL
);

CREATE TABLE hookd_owners (
    endpoint text PRIMARY KEY,
    owner uuid NOT NULL,
    until bigint NOT NULL
);

CREATE TABLE hookd_nodes (
    id uuid PRIMARY KEY,
    label text NOT NULL,
    started_at bigint NOT NULL,
    seen_at bigint NOT NULL
);

CREATE TABLE hookd_tally (
    endpoint text NOT NULL,
    stage text NOT NULL,
    n bigint NOT NULL
);

CREATE FUNCTION hookd_tally_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hookd_tally (endpoint, stage, n)
        SELECT endpoint, stage, count(*) FROM new_rows GROUP BY 1, 2;
    RETURN NULL;
END $$;

CREATE FUNCTION hookd_tally_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hookd_tally (endpoint, stage, n)
        SELECT endpoint, stage, -count(*) FROM old_rows GROUP BY 1, 2;
    RETURN NULL;
END $$;

CREATE FUNCTION hookd_tally_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hookd_tally (endpoint, stage, n)
        SELECT endpoint, stage, sum(n) FROM (
            SELECT endpoint, stage, -1 AS n FROM old_rows
            UNION ALL
            SELECT endpoint, stage, 1 AS n FROM new_rows
        ) AS moves GROUP BY 1, 2 HAVING sum(n) <> 0;
    RETURN NULL;
END $$;

CREATE TRIGGER hookd_tally_insert AFTER INSERT ON hookd_messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hookd_tally_inserted();
CREATE TRIGGER hookd_tally_delete AFTER DELETE ON hookd_messages
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION hookd_tally_deleted();
CREATE TRIGGER hookd_tally_update AFTER UPDATE ON hookd_messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hookd_tally_updated();
"#,
    r#"
-- A queue table: each message's row is updated twice right after its insert (claimed, settled), so dead row
-- versions appear at twice the delivery rate while delivered rows stay (retention) and the table grows.
-- PostgreSQL's default trigger (20 % of the table dead) would let the dead rows grow with the table; a
-- trigger of 2 % plus 50,000 rows keeps them near flat (autovacuum_naptime, one minute by default, bounds
-- how often a worker looks at all).
ALTER TABLE hookd_messages SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 50000,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_vacuum_insert_threshold = 50000,
    autovacuum_analyze_scale_factor = 0.05
);
"#,
];

/// Applies every migration the database lacks, under the migration lock. Returns how many it applied.
pub async fn migrate(pool: &PgPool) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await.map_err(pg_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS hookd_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await
    .map_err(pg_error)?;
    let applied: Option<i32> = sqlx::query_scalar("SELECT max(version) FROM hookd_schema")
        .fetch_one(&mut *tx)
        .await
        .map_err(pg_error)?;
    let applied = applied.unwrap_or(0).max(0) as usize;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database's schema is version {applied}, newer than this hookd knows ({}): upgrade hookd",
            MIGRATIONS.len()
        )));
    }
    for (index, script) in MIGRATIONS.iter().enumerate().skip(applied) {
        sqlx::raw_sql(*script)
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
        sqlx::query("INSERT INTO hookd_schema (version) VALUES ($1)")
            .bind(index as i32 + 1)
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(MIGRATIONS.len() - applied)
}
