//! What the store keeps about endpoints and access tokens: one record per key in the `endpoint` and `token`
//! trees, written on their own (never inside a message transaction) and each made durable before its verb
//! answers.

use super::{Store, StoreError, decode, encode};
use crate::model::Millis;

/// Per-endpoint facts kept across runs.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointState {
    /// The fingerprint of the (url, validation key) that last passed the verification handshake.
    #[serde(default)]
    pub verified_fingerprint: Option<u64>,
    #[serde(default)]
    pub verified_at: Option<Millis>,
    /// Why the last handshake failed, while it has.
    #[serde(default)]
    pub verification_error: Option<String>,
    /// Settings changed at run time, laid over the config file's endpoint.
    #[serde(default)]
    pub settings: crate::config::EndpointSettings,
    /// An operator paused the endpoint.
    #[serde(default)]
    pub paused: bool,
    /// Why the endpoint is disabled (a 410 Gone), while it is.
    #[serde(default)]
    pub disabled: Option<String>,
}

/// An API access token as stored: never the token itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenRecord {
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub created_at: Millis,
}

impl Store {
    /// What the store remembers about an endpoint (a default record when nothing yet).
    pub fn endpoint_state(&self, name: &str) -> Result<EndpointState, StoreError> {
        match self.trees.endpoint.get(name.as_bytes())? {
            Some(bytes) => decode(&bytes),
            None => Ok(EndpointState::default()),
        }
    }

    /// Replaces what the store remembers about an endpoint, durably.
    pub async fn set_endpoint_state(
        &self,
        name: &str,
        state: &EndpointState,
    ) -> Result<(), StoreError> {
        self.trees
            .endpoint
            .insert(name.as_bytes(), encode(state)?)?;
        self.commit().await
    }

    /// Stores a new access token (its hash only), durably. Names are unique.
    pub async fn create_token(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        let inserted = self.trees.token.compare_and_swap(
            record.name.as_bytes(),
            None::<&[u8]>,
            Some(bytes),
        )?;
        if inserted.is_err() {
            return Err(StoreError::TokenExists(record.name.clone()));
        }
        self.commit().await
    }

    /// Every access token record, by name.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.trees
            .token
            .iter()
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    /// Removes a token, durably; false when no token has that name.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let removed = self.trees.token.remove(name.as_bytes())?.is_some();
        self.commit().await?;
        Ok(removed)
    }
}
