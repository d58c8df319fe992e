//! What the store keeps about endpoints and access tokens: one record per key in the `endpoint` and `token`
//! trees, written on their own (never inside a message transaction) and each made durable before its verb
//! answers.

use super::{EndpointState, SledStore, StoreError, TokenRecord, decode, encode};

impl SledStore {
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

    /// Changes what the store remembers about an endpoint atomically: `change` is applied to the record as
    /// stored and the result swapped in only if nobody wrote the record meanwhile (else `change` runs again
    /// on the newer record), then made durable. `change` answers `None` to leave the record as it is (and
    /// no write is made). Returns the record as written (or as found) and what `change` answered.
    pub async fn update_endpoint_state<T, E>(
        &self,
        name: &str,
        mut change: impl FnMut(&mut EndpointState) -> Result<T, E>,
    ) -> Result<Result<(EndpointState, T), E>, StoreError> {
        loop {
            let before = self.trees.endpoint.get(name.as_bytes())?;
            let mut state = match &before {
                Some(bytes) => decode(bytes)?,
                None => EndpointState::default(),
            };
            let answer = match change(&mut state) {
                Ok(answer) => answer,
                Err(refused) => return Ok(Err(refused)),
            };
            let after = if state == EndpointState::default() {
                None
            } else {
                Some(encode(&state)?)
            };
            if after.as_deref() == before.as_deref() {
                return Ok(Ok((state, answer)));
            }
            if self
                .trees
                .endpoint
                .compare_and_swap(name.as_bytes(), before, after)?
                .is_ok()
            {
                self.commit().await?;
                return Ok(Ok((state, answer)));
            }
        }
    }

    /// Every endpoint record, by name: the endpoints created through the API and the run-time state of the
    /// declared ones.
    pub fn endpoint_states(&self) -> Result<Vec<(String, EndpointState)>, StoreError> {
        let mut states = Vec::new();
        for entry in self.trees.endpoint.iter() {
            let (key, value) = entry?;
            let name = String::from_utf8(key.to_vec())
                .map_err(|_| StoreError::Corrupt("an endpoint record's key is not UTF-8".into()))?;
            states.push((name, decode(&value)?));
        }
        Ok(states)
    }

    /// Forgets an endpoint's record, durably.
    pub async fn remove_endpoint_state(&self, name: &str) -> Result<(), StoreError> {
        self.trees.endpoint.remove(name.as_bytes())?;
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
