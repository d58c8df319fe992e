//! The socket API's client, used by the CLI (and usable by any Rust program beside the daemon).

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ErrorBody;
use super::tokens::{CreateToken, CreatedToken, Revoked, TokenList};
use super::wire::{
    DeadList, DlqSelection, EndpointList, EndpointView, EnqueueRequest, EnqueueResponse, Health,
    MessageView, PurgeResponse, ReplayResponse, Stats,
};
use crate::config::EndpointSettings;

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

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
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
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("{e}")))
        } else {
            match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => Err(ClientError::Api {
                    status: status.as_u16(),
                    code: body.error.code,
                    message: body.error.message,
                }),
                Err(_) => Err(ClientError::Protocol(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ))),
            }
        }
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, "/v1/health", None::<&()>).await
    }

    pub async fn enqueue(&self, request: &EnqueueRequest) -> Result<EnqueueResponse, ClientError> {
        self.call(Method::POST, "/v1/messages", Some(request)).await
    }

    pub async fn message(&self, id: &str) -> Result<MessageView, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/messages/{}", encode(id)),
            None::<&()>,
        )
        .await
    }

    pub async fn dlq_list(
        &self,
        endpoint: Option<&str>,
        limit: Option<usize>,
        after: Option<&str>,
    ) -> Result<DeadList, ClientError> {
        let mut query = Vec::new();
        if let Some(e) = endpoint {
            query.push(format!("endpoint={}", encode(e)));
        }
        if let Some(l) = limit {
            query.push(format!("limit={l}"));
        }
        if let Some(a) = after {
            query.push(format!("after={}", encode(a)));
        }
        let path = if query.is_empty() {
            "/v1/dlq".to_owned()
        } else {
            format!("/v1/dlq?{}", query.join("&"))
        };
        self.call(Method::GET, &path, None::<&()>).await
    }

    pub async fn dlq_show(&self, id: &str) -> Result<MessageView, ClientError> {
        self.call(Method::GET, &format!("/v1/dlq/{}", encode(id)), None::<&()>)
            .await
    }

    pub async fn dlq_replay(
        &self,
        selection: &DlqSelection,
    ) -> Result<ReplayResponse, ClientError> {
        self.call(Method::POST, "/v1/dlq/replay", Some(selection))
            .await
    }

    pub async fn dlq_purge(&self, selection: &DlqSelection) -> Result<PurgeResponse, ClientError> {
        self.call(Method::POST, "/v1/dlq/purge", Some(selection))
            .await
    }

    pub async fn endpoints(&self) -> Result<EndpointList, ClientError> {
        self.call(Method::GET, "/v1/endpoints", None::<&()>).await
    }

    pub async fn endpoint(&self, name: &str) -> Result<EndpointView, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/endpoints/{}", encode(name)),
            None::<&()>,
        )
        .await
    }

    pub async fn update_endpoint(
        &self,
        name: &str,
        settings: &EndpointSettings,
    ) -> Result<EndpointView, ClientError> {
        let path = format!("/v1/endpoints/{}", encode(name));
        self.call(Method::PUT, &path, Some(settings)).await
    }

    pub async fn verify_endpoint(&self, name: &str) -> Result<EndpointView, ClientError> {
        let path = format!("/v1/endpoints/{}/verify", encode(name));
        self.call(Method::POST, &path, None::<&()>).await
    }

    pub async fn create_token(&self, name: &str) -> Result<CreatedToken, ClientError> {
        let body = CreateToken {
            name: name.to_owned(),
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
