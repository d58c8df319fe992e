//! The bench's client of the daemon's socket API: one raw hyper HTTP/1.1 connection per client task.
//!
//! Chosen over `hookd::api::client::Client` (reqwest) for lower client overhead: no connection pool lookup,
//! no URL parsing, no per-call JSON encoding (bodies are encoded once and shared as `Bytes`).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hookd::api::wire::{BatchResponse, BatchResult, EnqueueResponse};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// The longest any one API call may take (a batch waits for a group commit behind others).
const CALL_DEADLINE: Duration = Duration::from_secs(60);

/// The event type of every bench message.
pub const KIND: &str = "bench.event";

/// A payload of about 300 bytes, like a small order event.
pub fn payload() -> String {
    let mut text = String::from(
        r#"{"order_id":"ord_8f2c1e7a9b","customer":{"id":"cus_4f9a1b2c3d","email":"buyer@example.com"},"amount_cents":129900,"currency":"EUR","items":[{"sku":"SKU-000123","qty":2,"price_cents":49950},{"sku":"SKU-000456","qty":1,"price_cents":30000}],"note":""#,
    );
    while text.len() < 298 {
        text.push('x');
    }
    text.push_str(r#""}"#);
    text
}

/// Request bodies, encoded once.
#[derive(Clone)]
pub struct Bodies {
    pub payload: String,
}

impl Bodies {
    /// `POST /v1/messages` for `endpoint`.
    pub fn single(&self, endpoint: &str) -> Bytes {
        Bytes::from(self.item(endpoint))
    }

    /// `POST /v1/messages/batch` with `n` messages for `endpoint`.
    pub fn batch(&self, endpoint: &str, n: usize) -> Bytes {
        let item = self.item(endpoint);
        let mut body = String::with_capacity(16 + n * (item.len() + 1));
        body.push_str(r#"{"messages":["#);
        for i in 0..n {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&item);
        }
        body.push_str("]}");
        Bytes::from(body)
    }

    /// `POST /v1/messages/batch` with one message for each of `endpoints`, in order.
    pub fn spread(&self, endpoints: &[String]) -> Bytes {
        let mut body = String::from(r#"{"messages":["#);
        for (i, endpoint) in endpoints.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&self.item(endpoint));
        }
        body.push_str("]}");
        Bytes::from(body)
    }

    fn item(&self, endpoint: &str) -> String {
        format!(
            r#"{{"endpoint":{endpoint:?},"type":"{KIND}","payload":{}}}"#,
            self.payload
        )
    }
}

/// One HTTP/1.1 connection to the daemon's socket.
pub struct SocketClient {
    sender: SendRequest<Full<Bytes>>,
}

impl SocketClient {
    pub async fn connect(socket: &Path) -> Result<SocketClient> {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to {}", socket.display()))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the daemon closes the socket.
            let _ = connection.await;
        });
        Ok(SocketClient { sender })
    }

    /// Opens `n` connections.
    pub async fn connect_many(socket: &Path, n: usize) -> Result<Vec<SocketClient>> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            clients.push(SocketClient::connect(socket).await?);
        }
        Ok(clients)
    }

    /// One call; answers the status and the body.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes)> {
        let exchange = async {
            self.sender.ready().await?;
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, "hookd")
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body))?;
            let response = self.sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        tokio::time::timeout(CALL_DEADLINE, exchange)
            .await
            .with_context(|| format!("{path} did not answer within {CALL_DEADLINE:?}"))?
    }

    /// `POST /v1/messages`; answers the new message's id.
    pub async fn enqueue(&mut self, body: Bytes) -> Result<u128> {
        let (status, answer) = self.call(Method::POST, "/v1/messages", body).await?;
        if status != StatusCode::ACCEPTED {
            bail!(
                "enqueue answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        let answer: EnqueueResponse = serde_json::from_slice(&answer)?;
        Ok(uuid::Uuid::parse_str(&answer.id)?.as_u128())
    }

    /// `POST /v1/messages/batch`; answers how many were queued, failing when any item was refused.
    pub async fn enqueue_batch(&mut self, body: Bytes) -> Result<usize> {
        let (status, answer) = self.call(Method::POST, "/v1/messages/batch", body).await?;
        if status != StatusCode::ACCEPTED {
            bail!(
                "batch enqueue answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        let answer: BatchResponse = serde_json::from_slice(&answer)?;
        if let Some(BatchResult::Error { error }) = answer
            .results
            .iter()
            .find(|r| matches!(r, BatchResult::Error { .. }))
        {
            bail!("a batch item was refused: {error:?}");
        }
        Ok(answer.results.len())
    }

    /// `POST /v1/endpoints` with `body` (a JSON object of endpoint keys); fails unless it answers 201.
    pub async fn create_endpoint(&mut self, body: Bytes) -> Result<()> {
        let (status, answer) = self.call(Method::POST, "/v1/endpoints", body).await?;
        if status != StatusCode::CREATED {
            bail!(
                "endpoint create answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        Ok(())
    }

    /// `POST /v1/endpoints/{name}/pause` or `/resume`. Answers false when the daemon has no such route
    /// (the pause API is not built yet), true when the change was made.
    pub async fn control(&mut self, endpoint: &str, verb: &str) -> Result<bool> {
        let path = format!("/v1/endpoints/{endpoint}/{verb}");
        let (status, answer) = self.call(Method::POST, &path, Bytes::new()).await?;
        let text = String::from_utf8_lossy(&answer);
        if status.is_success() {
            Ok(true)
        } else if (status == StatusCode::NOT_FOUND && text.contains(r#""not_found""#))
            || status == StatusCode::METHOD_NOT_ALLOWED
        {
            Ok(false)
        } else {
            bail!("{verb} of `{endpoint}` answered {status}: {text}")
        }
    }
}

/// Whether the daemon at `socket` answers `GET /v1/health` with 200 now (a fresh connection; false while
/// the socket is missing or refuses).
pub async fn health(socket: &Path) -> bool {
    let probe = async {
        let mut client = SocketClient::connect(socket).await?;
        let (status, _) = client.call(Method::GET, "/v1/health", Bytes::new()).await?;
        anyhow::Ok(status == StatusCode::OK)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), probe).await,
        Ok(Ok(true))
    )
}
