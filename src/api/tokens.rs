//! Access tokens for the socket API (seed 000: settings are viewed and changed with an access token).
//!
//! A token is shown once, at creation; the store keeps only its SHA-256. When any token exists, or the
//! config says `[api] require_token = true`, every request must carry `Authorization: Bearer <token>`;
//! the check compares digests in constant time. The digests live in memory too, so the check reads no disk.
//!
//! A token created with an `endpoint` is scoped to it (seed 000: a customer's token for its own endpoint
//! settings): it may read and change that endpoint (`GET`, `PATCH`, `PUT`, `verify`) and read its messages
//! and dead letters, and gets 403 `forbidden` on every other route. The check lets a scoped request through
//! with a [`Scope`] extension; the message routes compare it with the message's endpoint.

use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State as AxumState};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::{ApiError, parse_json};
use super::messages::read_body;
use crate::config::validate_endpoint_name;
use crate::model::{Millis, now_millis};
use crate::store::{Store, StoreError, TokenRecord};

/// The digests of the live tokens, each with the endpoint it is scoped to; shared by the check and the
/// token routes.
#[derive(Debug, Clone, Default)]
pub struct TokenDigests(Arc<RwLock<Vec<KnownToken>>>);

/// A live token's digest and the endpoint it is scoped to (`None`: an admin token).
type KnownToken = ([u8; 32], Option<String>);

/// The endpoint a scoped token's request is limited to (absent for an admin token or no token).
#[derive(Debug, Clone)]
pub struct Scope(pub String);

impl Scope {
    /// 403 unless `endpoint` is the scope's (no scope: allowed).
    pub fn allows(scope: Option<&Scope>, endpoint: &str) -> Result<(), ApiError> {
        match scope {
            Some(Scope(own)) if own != endpoint => Err(forbidden(own)),
            _ => Ok(()),
        }
    }
}

fn forbidden(own: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "this token is scoped to endpoint `{own}`: it may read and change that endpoint and read its messages, nothing else"
        ),
    )
}

impl TokenDigests {
    /// Loads the digests of every stored token.
    pub fn load(store: &Store) -> Result<TokenDigests, StoreError> {
        let digests = store
            .tokens()?
            .iter()
            .filter_map(|t| from_hex(&t.sha256).map(|d| (d, t.endpoint.clone())))
            .collect();
        Ok(TokenDigests(Arc::new(RwLock::new(digests))))
    }

    /// Reloads the digests from the store. The store is read while the lock is held, so of two concurrent
    /// reloads the later one reads the later store: a revoked token never comes back from a stale copy.
    pub(crate) fn replace(&self, store: &Store) -> Result<(), StoreError> {
        let mut guard = match self.0.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = TokenDigests::load(store)?.snapshot();
        Ok(())
    }

    fn snapshot(&self) -> Vec<KnownToken> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A new access token and the record the store keeps of it (its SHA-256 only). Both the API
/// (`POST /v1/tokens`) and `hookd tokens create --offline` (the data dir of a stopped daemon) make tokens
/// here; the token itself is shown once, by the caller, and never stored.
pub fn mint(name: &str, endpoint: Option<String>) -> (String, TokenRecord) {
    let token = format!("hkd_{}", Alphanumeric.sample_string(&mut rand::rng(), 40));
    let record = TokenRecord {
        name: name.to_owned(),
        sha256: to_hex(&digest(&token)),
        created_at: now_millis(),
        endpoint,
    };
    (token, record)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Compares two digests without an early exit, so timing does not reveal how much matched.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses requests without a valid bearer token when tokens are in force.
pub async fn check(
    AxumState(state): AxumState<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let digests = state.tokens.snapshot();
    if digests.is_empty() && !state.config.require_token {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|token| digest(token.trim()));
    let matched = presented.and_then(|d| {
        digests
            .iter()
            .find(|(known, _)| same_digest(known, &d))
            .map(|(_, scope)| scope.clone())
    });
    match (matched, presented) {
        (Some(None), _) => next.run(request).await,
        (Some(Some(own)), _) => {
            if !scoped_route(request.method(), request.uri().path(), &own) {
                return forbidden(&own).into_response();
            }
            let mut request = request;
            request.extensions_mut().insert(Scope(own));
            next.run(request).await
        }
        (None, Some(_)) => unauthorized(
            "the access token is not valid (mistyped, or revoked): send a valid one as `Authorization: Bearer TOKEN` \
             (the hookd CLI: --token TOKEN or HOOKD_TOKEN)",
        )
        .into_response(),
        (None, None) => unauthorized(
            "an access token is required: send it as `Authorization: Bearer TOKEN` (the hookd CLI: --token TOKEN \
             or HOOKD_TOKEN)",
        )
        .into_response(),
    }
}

/// The routes a token scoped to `own` may call: its endpoint's reads and changes, and message reads (whose
/// handlers check the message's endpoint).
fn scoped_route(method: &axum::http::Method, path: &str, own: &str) -> bool {
    use axum::http::Method;
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        ["", "v1", "endpoints", name] => {
            *name == own && [Method::GET, Method::PATCH, Method::PUT].contains(method)
        }
        ["", "v1", "endpoints", name, "verify"] => *name == own && method == Method::POST,
        // Reads only: a list names its endpoint (the handler checks it is the token's), a message's handler
        // checks the message's endpoint. Retry and resend (`messages/{id}/retry`) are an operator's.
        ["", "v1", "messages"]
        | ["", "v1", "messages", _]
        | ["", "v1", "dlq"]
        | ["", "v1", "dlq", _] => method == Method::GET,
        _ => false,
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// Scope the token to this endpoint; absent: an admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// The one answer that shows a token.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedToken {
    pub name: String,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Revoked {
    pub revoked: bool,
}

pub(super) async fn create(
    AxumState(state): AxumState<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let request: CreateToken = parse_json(&read_body(body, state.config.max_batch_bytes)?)?;
    validate_endpoint_name(&request.name).map_err(|r| ApiError::invalid(format!("name: {r}")))?;
    if let Some(endpoint) = &request.endpoint {
        if state.lanes.endpoint(endpoint).is_none() {
            return Err(ApiError::unknown_endpoint(endpoint));
        }
        // The first token closes the API to every request without one: it must be able to open it again.
        if !state.store.tokens()?.iter().any(|t| t.endpoint.is_none()) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_admin_token",
                "create an admin token (without `endpoint`) first: once a token exists, only an admin token can create others",
            ));
        }
    }
    let (token, record) = mint(&request.name, request.endpoint.clone());
    state
        .store
        .create_token(&record)
        .await
        .map_err(|e| match e {
            StoreError::TokenExists(_) => {
                ApiError::new(StatusCode::CONFLICT, "exists", e.to_string())
            }
            other => other.into(),
        })?;
    state.tokens.replace(&state.store)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            name: request.name,
            token,
            endpoint: request.endpoint,
        }),
    ))
}

pub(super) async fn list(
    AxumState(state): AxumState<AppState>,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = state
        .store
        .tokens()?
        .into_iter()
        .map(|t| TokenInfo {
            name: t.name,
            created_at: t.created_at,
            endpoint: t.endpoint,
        })
        .collect();
    Ok(Json(TokenList { tokens }))
}

pub(super) async fn revoke(
    AxumState(state): AxumState<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    if !state.store.revoke_token(&name).await? {
        return Err(ApiError::not_found(format!("no token named `{name}`")));
    }
    state.tokens.replace(&state.store)?;
    Ok(Json(Revoked { revoked: true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scoped_token_reaches_its_own_endpoint_and_message_reads_only() {
        use axum::http::Method;
        assert!(scoped_route(&Method::GET, "/v1/endpoints/acme", "acme"));
        assert!(scoped_route(&Method::PATCH, "/v1/endpoints/acme", "acme"));
        assert!(scoped_route(&Method::PUT, "/v1/endpoints/acme", "acme"));
        assert!(scoped_route(
            &Method::POST,
            "/v1/endpoints/acme/verify",
            "acme"
        ));
        assert!(scoped_route(&Method::GET, "/v1/messages/x", "acme"));
        assert!(scoped_route(&Method::GET, "/v1/dlq", "acme"));
        assert!(!scoped_route(&Method::GET, "/v1/endpoints/other", "acme"));
        assert!(!scoped_route(&Method::DELETE, "/v1/endpoints/acme", "acme"));
        assert!(!scoped_route(
            &Method::POST,
            "/v1/endpoints/acme/pause",
            "acme"
        ));
        assert!(!scoped_route(&Method::GET, "/v1/endpoints", "acme"));
        assert!(!scoped_route(&Method::POST, "/v1/messages", "acme"));
        assert!(!scoped_route(&Method::POST, "/v1/dlq/replay", "acme"));
        assert!(!scoped_route(&Method::GET, "/v1/tokens", "acme"));
        assert!(!scoped_route(&Method::GET, "/v1/stats", "acme"));
    }

    #[test]
    fn a_minted_token_is_kept_only_as_its_digest() {
        let (token, record) = mint("ops", Some("acme".into()));
        assert!(token.starts_with("hkd_") && token.len() == 44, "{token}");
        assert_eq!(record.name, "ops");
        assert_eq!(record.endpoint.as_deref(), Some("acme"));
        assert_eq!(from_hex(&record.sha256), Some(digest(&token)));
        assert!(!record.sha256.contains(&token[4..]));
        let (other, _) = mint("ops", None);
        assert_ne!(token, other, "every token is drawn anew");
    }

    #[test]
    fn digests_round_trip_through_hex_and_compare_exactly() {
        let d = digest("hkd_secret");
        assert_eq!(from_hex(&to_hex(&d)), Some(d));
        assert!(same_digest(&d, &digest("hkd_secret")));
        assert!(!same_digest(&d, &digest("hkd_secreT")));
        assert_eq!(from_hex("zz"), None);
    }
}
