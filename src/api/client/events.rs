//! The live attempt stream: `GET /v1/events` opened with its filters and read line by line. Apart from the
//! other calls because its answer is a stream, not one JSON body.

use reqwest::Method;

use super::{Client, ClientError, encode, root_cause, with_query};
use crate::api::wire::EventLine;

impl Client {
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
