//! The calls on messages and dead letters: enqueue, list, show, retry and resend a message; list, show,
//! replay and purge dead letters; and the queries of the two listings. Apart from the client's core because
//! they are the largest group of calls.

use reqwest::Method;

use super::{Client, ClientError, encode, with_query};
use crate::api::wire::{
    DeadList, DlqSelection, EnqueueRequest, EnqueueResponse, MessageList, MessageView, Nudged,
    PurgeResponse, ReplayResponse,
};

impl Client {
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
