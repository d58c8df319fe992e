//! Endpoint and token records: written to the database (and notified to the other nodes) before their verb
//! answers, read from this node's copy in memory, which its own writes and the other nodes' notifications
//! (`listen.rs`) keep current.

use super::listen::CHANGES;
use super::{PgStore, lock, pg_error, read, write};
use crate::store::{EndpointState, StoreError, TokenRecord};

impl PgStore {
    pub fn endpoint_state(&self, name: &str) -> Result<EndpointState, StoreError> {
        Ok(read(&self.inner.endpoints)
            .get(name)
            .cloned()
            .unwrap_or_default())
    }

    pub fn endpoint_states(&self) -> Result<Vec<(String, EndpointState)>, StoreError> {
        Ok(read(&self.inner.endpoints)
            .iter()
            .map(|(name, state)| (name.clone(), state.clone()))
            .collect())
    }

    pub(super) fn endpoint_names(&self) -> Vec<String> {
        read(&self.inner.endpoints).keys().cloned().collect()
    }

    pub async fn set_endpoint_state(
        &self,
        name: &str,
        state: &EndpointState,
    ) -> Result<(), StoreError> {
        let json = encode(state)?;
        let version: i64 = sqlx::query_scalar(
            "WITH written AS (
                 INSERT INTO hookd_endpoints (name, state) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state,
                     version = hookd_endpoints.version + 1
                 RETURNING version)
             SELECT version FROM written, LATERAL (SELECT pg_notify($3, $4)) AS sent",
        )
        .bind(name)
        .bind(&json)
        .bind(CHANGES)
        .bind(self.notice(&format!("endpoint {name}")))
        .fetch_one(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        self.wrote();
        self.cache_endpoint(name, state.clone(), version);
        Ok(())
    }

    /// Changes the record under a row lock: nodes changing one endpoint at once apply their changes one
    /// after the other, each to the record the other wrote.
    pub async fn update_endpoint_state<T, E>(
        &self,
        name: &str,
        mut change: impl FnMut(&mut EndpointState) -> Result<T, E>,
    ) -> Result<Result<(EndpointState, T), E>, StoreError> {
        let mut tx = self.pool().begin().await.map_err(|e| self.failed_with(e))?;
        // Make sure a row exists to lock (a record never written reads as the default).
        sqlx::query(
            "INSERT INTO hookd_endpoints (name, state) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(encode(&EndpointState::default())?)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.failed_with(e))?;
        let (stored, mut version): (String, i64) =
            sqlx::query_as("SELECT state, version FROM hookd_endpoints WHERE name = $1 FOR UPDATE")
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.failed_with(e))?;
        let mut state = decode(name, &stored)?;
        let before = state.clone();
        let answer = match change(&mut state) {
            Ok(answer) => answer,
            Err(refused) => return Ok(Err(refused)),
        };
        if state != before {
            version = sqlx::query_scalar(
                "WITH written AS (
                     UPDATE hookd_endpoints SET state = $2, version = version + 1 WHERE name = $1
                     RETURNING version)
                 SELECT version FROM written, LATERAL (SELECT pg_notify($3, $4)) AS sent",
            )
            .bind(name)
            .bind(encode(&state)?)
            .bind(CHANGES)
            .bind(self.notice(&format!("endpoint {name}")))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.failed_with(e))?;
        }
        tx.commit().await.map_err(|e| self.failed_with(e))?;
        self.wrote();
        self.cache_endpoint(name, state.clone(), version);
        Ok(Ok((state, answer)))
    }

    pub async fn remove_endpoint_state(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query(
            "WITH removed AS (DELETE FROM hookd_endpoints WHERE name = $1) SELECT pg_notify($2, $3)",
        )
        .bind(name)
        .bind(CHANGES)
        .bind(self.notice(&format!("endpoint {name}")))
        .execute(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        self.wrote();
        lock(&self.inner.endpoint_versions).remove(name);
        write(&self.inner.endpoints).remove(name);
        Ok(())
    }

    pub async fn create_token(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let created: Option<String> = sqlx::query_scalar(
            "WITH created AS (
                 INSERT INTO hookd_tokens (name, record) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING RETURNING name)
             SELECT name FROM created, LATERAL (SELECT pg_notify($3, $4)) AS sent",
        )
        .bind(&record.name)
        .bind(encode(record)?)
        .bind(CHANGES)
        .bind(self.notice("tokens"))
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        if created.is_none() {
            return Err(StoreError::TokenExists(record.name.clone()));
        }
        self.wrote();
        write(&self.inner.tokens).insert(record.name.clone(), record.clone());
        Ok(())
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(read(&self.inner.tokens).values().cloned().collect())
    }

    pub async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let removed: Option<String> = sqlx::query_scalar(
            "WITH removed AS (DELETE FROM hookd_tokens WHERE name = $1 RETURNING name)
             SELECT name FROM removed, LATERAL (SELECT pg_notify($2, $3)) AS sent",
        )
        .bind(name)
        .bind(CHANGES)
        .bind(self.notice("tokens"))
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        self.wrote();
        write(&self.inner.tokens).remove(name);
        Ok(removed.is_some())
    }

    /// Rereads every endpoint record.
    pub(super) async fn reload_endpoints(&self) -> Result<(), StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT name, state, version FROM hookd_endpoints")
                .fetch_all(self.pool())
                .await
                .map_err(pg_error)?;
        let mut all = std::collections::BTreeMap::new();
        let mut versions = std::collections::HashMap::new();
        for (name, state, version) in rows {
            let state = decode(&name, &state)?;
            versions.insert(name.clone(), version);
            all.insert(name, state);
        }
        let mut known = lock(&self.inner.endpoint_versions);
        *write(&self.inner.endpoints) = all;
        *known = versions;
        Ok(())
    }

    /// Rereads one endpoint record (gone: forgotten).
    pub(super) async fn reload_endpoint(&self, name: &str) -> Result<(), StoreError> {
        let stored: Option<(String, i64)> =
            sqlx::query_as("SELECT state, version FROM hookd_endpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await
                .map_err(pg_error)?;
        match stored {
            Some((state, version)) => self.cache_endpoint(name, decode(name, &state)?, version),
            None => {
                lock(&self.inner.endpoint_versions).remove(name);
                write(&self.inner.endpoints).remove(name);
            }
        }
        Ok(())
    }

    /// Puts a record read or written at `version` into the node's copy, unless the copy holds a newer one.
    fn cache_endpoint(&self, name: &str, state: EndpointState, version: i64) {
        let mut known = lock(&self.inner.endpoint_versions);
        if known.get(name).is_some_and(|newer| *newer > version) {
            return;
        }
        known.insert(name.to_owned(), version);
        write(&self.inner.endpoints).insert(name.to_owned(), state);
    }

    /// Rereads every token record.
    pub(super) async fn reload_tokens(&self) -> Result<(), StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT name, record FROM hookd_tokens")
            .fetch_all(self.pool())
            .await
            .map_err(pg_error)?;
        let mut all = std::collections::BTreeMap::new();
        for (name, record) in rows {
            let record: TokenRecord = serde_json::from_str(&record)
                .map_err(|e| StoreError::Corrupt(format!("token `{name}`: {e}")))?;
            all.insert(name, record);
        }
        *write(&self.inner.tokens) = all;
        Ok(())
    }

    /// A `hookd_changes` payload from this node.
    fn notice(&self, what: &str) -> String {
        format!("{} {what}", self.inner.node)
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))
}

fn decode(name: &str, stored: &str) -> Result<EndpointState, StoreError> {
    serde_json::from_str(stored)
        .map_err(|e| StoreError::Corrupt(format!("endpoint `{name}`'s record: {e}")))
}
