//! The socket API's client, used by the CLI (and usable by any Rust program beside the daemon).

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ErrorBody;
use super::tokens::{CreateToken, CreatedToken, Revoked, TokenList};
use super::wire::{
    DeadList, DlqSelection, EndpointDeleted, EndpointList, EndpointView, EnqueueRequest,
    EnqueueResponse, EventLine, Health, MessageList, MessageView, Nudged, PurgeResponse,
    ReplayResponse, Stats, StatusReport,
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

    /// Opens `GET /v1/events`: attempt events from now on, one JSON object per line. Once this answers, every
    /// later event that passes the filters reaches the stream.
    pub async fn events(&self, query: &EventsQuery) -> Result<EventStream, ClientError> {
        let mut pairs = Vec::new();
        if let Some(e) = &query.endpoint {
            pairs.push(format!("endpoint={}", encode(e)));
        }
        if let Some(r) = &query.result {
            pairs.push(format!("result={}", encode(r)));
        }
        if let Some(m) = &query.message {
            pairs.push(format!("message={}", encode(m)));
        }
        let path = with_query("/v1/events", &pairs);
        let response = self.send(Method::GET, &path, None::<&()>).await?;
        Ok(EventStream {
            response,
            buffer: Vec::new(),
        })
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, "/v1/health", None::<&()>).await
    }

    pub async fn enqueue(&self, request: &EnqueueRequest) -> Result<EnqueueResponse, ClientError> {
        self.call(Method::POST, "/v1/messages", Some(request)).await
    }

    /// `GET /v1/messages` with its filters.
    pub async fn messages(&self, query: &MessagesQuery) -> Result<MessageList, ClientError> {
        let mut pairs = Vec::new();
        for (name, value) in [
            ("endpoint", &query.endpoint),
            ("state", &query.state),
            ("type", &query.kind),
            ("after", &query.after),
        ] {
            if let Some(v) = value {
                pairs.push(format!("{name}={}", encode(v)));
            }
        }
        if let Some(s) = query.since {
            pairs.push(format!("since={s}"));
        }
        if let Some(u) = query.until {
            pairs.push(format!("until={u}"));
        }
        if let Some(l) = query.limit {
            pairs.push(format!("limit={l}"));
        }
        let path = with_query("/v1/messages", &pairs);
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/messages/{id}/retry`.
    pub async fn message_retry(&self, id: &str) -> Result<Nudged, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/messages/{}/retry", encode(id)),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/messages/{id}/resend`.
    pub async fn message_resend(&self, id: &str) -> Result<Nudged, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/messages/{}/resend", encode(id)),
            None::<&()>,
        )
        .await
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
        self.dlq_list_filtered(&DlqQuery {
            endpoint: endpoint.map(str::to_owned),
            limit,
            after: after.map(str::to_owned),
            ..DlqQuery::default()
        })
        .await
    }

    /// `GET /v1/dlq` with every filter.
    pub async fn dlq_list_filtered(&self, query: &DlqQuery) -> Result<DeadList, ClientError> {
        let mut pairs = Vec::new();
        if let Some(e) = &query.endpoint {
            pairs.push(format!("endpoint={}", encode(e)));
        }
        if let Some(l) = query.limit {
            pairs.push(format!("limit={l}"));
        }
        if let Some(a) = &query.after {
            pairs.push(format!("after={}", encode(a)));
        }
        if let Some(s) = query.since {
            pairs.push(format!("since={s}"));
        }
        if let Some(u) = query.until {
            pairs.push(format!("until={u}"));
        }
        if let Some(k) = &query.kind {
            pairs.push(format!("type={}", encode(k)));
        }
        if let Some(r) = &query.reason {
            pairs.push(format!("reason={}", encode(r)));
        }
        if let Some(s) = query.status {
            pairs.push(format!("status={s}"));
        }
        let path = with_query("/v1/dlq", &pairs);
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

    /// One page of `GET /v1/endpoints`; `query` is the query string (already encoded), or empty.
    pub async fn endpoints(&self, query: &str) -> Result<EndpointList, ClientError> {
        let path = if query.is_empty() {
            "/v1/endpoints".to_owned()
        } else {
            format!("/v1/endpoints?{query}")
        };
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/endpoints`: `table` holds name, format, url and any other endpoint key.
    pub async fn create_endpoint(
        &self,
        table: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<EndpointView, ClientError> {
        self.call(Method::POST, "/v1/endpoints", Some(table)).await
    }

    /// `PATCH /v1/endpoints/{name}`.
    pub async fn patch_endpoint(
        &self,
        name: &str,
        patch: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<EndpointView, ClientError> {
        let path = format!("/v1/endpoints/{}", encode(name));
        self.call(Method::PATCH, &path, Some(patch)).await
    }

    /// `POST /v1/endpoints/{name}/reset`.
    pub async fn reset_endpoint(&self, name: &str) -> Result<EndpointView, ClientError> {
        let path = format!("/v1/endpoints/{}/reset", encode(name));
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// `DELETE /v1/endpoints/{name}`; `messages` is `dead-letter` or `purge` when it has messages.
    pub async fn delete_endpoint(
        &self,
        name: &str,
        messages: Option<&str>,
    ) -> Result<EndpointDeleted, ClientError> {
        let mut path = format!("/v1/endpoints/{}", encode(name));
        if let Some(messages) = messages {
            path.push_str(&format!("?messages={}", encode(messages)));
        }
        self.call(Method::DELETE, &path, None::<&()>).await
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

    /// Pauses, resumes or enables an endpoint (`verb` is `pause`, `resume` or `enable`).
    pub async fn control_endpoint(
        &self,
        name: &str,
        verb: &str,
    ) -> Result<EndpointView, ClientError> {
        let path = format!("/v1/endpoints/{}/{verb}", encode(name));
        self.call(Method::POST, &path, None::<&()>).await
    }

    pub async fn verify_endpoint(&self, name: &str) -> Result<EndpointView, ClientError> {
        let path = format!("/v1/endpoints/{}/verify", encode(name));
        self.call(Method::POST, &path, None::<&()>).await
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

/// `GET /v1/dlq`'s query: every field optional.
#[derive(Debug, Clone, Default)]
pub struct DlqQuery {
    pub endpoint: Option<String>,
    pub limit: Option<usize>,
    pub after: Option<String>,
    /// Dead at or after (Unix ms).
    pub since: Option<u64>,
    /// Dead before (Unix ms).
    pub until: Option<u64>,
    /// The message type.
    pub kind: Option<String>,
    pub reason: Option<String>,
    pub status: Option<u16>,
}

/// `GET /v1/messages`'s query: every field optional.
#[derive(Debug, Clone, Default)]
pub struct MessagesQuery {
    pub endpoint: Option<String>,
    /// `queued`, `held`, `in_flight`, `delivered` or `dead`.
    pub state: Option<String>,
    pub kind: Option<String>,
    /// Enqueued at or after (Unix ms).
    pub since: Option<u64>,
    /// Enqueued before (Unix ms).
    pub until: Option<u64>,
    pub limit: Option<usize>,
    pub after: Option<String>,
}

/// `GET /v1/events`'s filters.
#[derive(Debug, Clone, Default)]
pub struct EventsQuery {
    pub endpoint: Option<String>,
    /// `delivered`, `retry` or `dead`.
    pub result: Option<String>,
    pub message: Option<String>,
}

/// An open `GET /v1/events` answer, read line by line.
#[derive(Debug)]
pub struct EventStream {
    response: reqwest::Response,
    /// Bytes received after the last complete line.
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next line (without its line feed); `None` once the daemon ended the stream.
    pub async fn next_line(&mut self) -> Result<Option<String>, ClientError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).take(end).collect();
                return String::from_utf8(line)
                    .map(Some)
                    .map_err(|e| ClientError::Protocol(e.to_string()));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => return Ok(None),
                Err(e) => return Err(ClientError::Protocol(root_cause(&e))),
            }
        }
    }

    /// The next line decoded: an event, or how many events were missed.
    pub async fn next(&mut self) -> Result<Option<EventLine>, ClientError> {
        match self.next_line().await? {
            None => Ok(None),
            Some(line) => serde_json::from_str(&line)
                .map(Some)
                .map_err(|e| ClientError::Protocol(format!("{e}: {line}"))),
        }
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
