//! The calls on endpoints: list, show, create, change, reset, delete, pause, resume, enable and verify. Apart
//! from the client's core because managing endpoints at run time is a group of calls of its own.

use reqwest::Method;

use super::{Client, ClientError, encode};
use crate::api::wire::{EndpointDeleted, EndpointList, EndpointView};
use crate::config::EndpointSettings;

impl Client {
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
}
