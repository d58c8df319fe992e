//! The socket API's client, used by the CLI (and usable by any Rust program beside the daemon).
//!
//! This module holds the client itself (connection, token, one request and its errors) and the daemon-wide
//! calls (health, stats, metrics, tokens); the calls per resource are in their own files: `message_calls`
//! (messages and dead letters), `endpoint_calls` and `events` (the live attempt stream).

mod endpoint_calls;
mod events;
mod message_calls;

pub use events::{EventStream, EventsQuery};
pub use message_calls::{DlqQuery, MessagesQuery};

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ErrorBody;
use super::tokens::{CreateToken, CreatedToken, Revoked, TokenList};
use super::wire::{Health, Stats, StatusReport};

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("hookd is not running (cannot connect to {socket}): {reason}")]
    NotRunning { socket: PathBuf, reason: String },
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
    #[error("cannot build the socket client: {0}")]
    Build(#[source] reqwest::Error),
}

/// A client bound to one daemon socket.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    socket: PathBuf,
    /// The access token sent as `Authorization: Bearer`, when tokens are in force.
    token: Option<String>,
}

impl Client {
    pub fn new(socket: &Path) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .unix_socket(socket)
            .no_proxy()
            .build()
            .map_err(ClientError::Build)?;
        Ok(Client {
            http,
            socket: socket.to_owned(),
            token: None,
        })
    }

    /// Sends `token` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    /// Sends one request (with the token, and `body` as JSON); a non-2xx answer becomes the API's error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, format!("http://hookd{path}"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| ClientError::NotRunning {
            socket: self.socket.clone(),
            reason: root_cause(&e),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        Err(api_error(status, &read_body(response).await?))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let bytes = read_body(self.send(method, path, body).await?).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("{e}")))
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, "/v1/health", None::<&()>).await
    }

    /// Creates a token; with `endpoint`, scoped to that endpoint.
    pub async fn create_token(
        &self,
        name: &str,
        endpoint: Option<&str>,
    ) -> Result<CreatedToken, ClientError> {
        let body = CreateToken {
            name: name.to_owned(),
            endpoint: endpoint.map(str::to_owned),
        };
        self.call(Method::POST, "/v1/tokens", Some(&body)).await
    }

    pub async fn tokens(&self) -> Result<TokenList, ClientError> {
        self.call(Method::GET, "/v1/tokens", None::<&()>).await
    }

    pub async fn revoke_token(&self, name: &str) -> Result<Revoked, ClientError> {
        let path = format!("/v1/tokens/{}", encode(name));
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    pub async fn stats(&self) -> Result<Stats, ClientError> {
        self.call(Method::GET, "/v1/stats", None::<&()>).await
    }

    /// `GET /v1/stats` read whole: the counts and, per endpoint, state, held, oldest message and rates.
    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        self.call(Method::GET, "/v1/stats", None::<&()>).await
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let response = self.send(Method::GET, "/metrics", None::<&()>).await?;
        let bytes = read_body(response).await?;
        String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

/// `path?a&b`, or `path` without pairs.
fn with_query(path: &str, pairs: &[String]) -> String {
    if pairs.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", pairs.join("&"))
    }
}

/// The error a non-2xx answer carries: the API's JSON error, or the raw text when it is not one.
async fn read_body(response: reqwest::Response) -> Result<bytes::Bytes, ClientError> {
    response
        .bytes()
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

fn api_error(status: reqwest::StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ClientError::Api {
            status: status.as_u16(),
            code: body.error.code,
            message: body.error.message,
        },
        Err(_) => {
            ClientError::Protocol(format!("HTTP {status}: {}", String::from_utf8_lossy(bytes)))
        }
    }
}

/// Percent-encodes a path or query component.
fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
