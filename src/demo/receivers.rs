//! The demo's two receivers on 127.0.0.1: a healthy one that answers in each format's own words, and a
//! flaky one that refuses each message's first attempt and every poison message. Apart because they are
//! the far side of the wire, not hookd.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::model::now_millis;

use super::DemoError;

/// How a demo receiver answers.
pub(super) enum Behaviour {
    /// 200, in the words each format expects (a `status_code` model, echoed `id_sms`).
    Healthy,
    /// 400 to a poison message, 503 to the first attempt of any other, then 200.
    Flaky {
        /// Requests seen per `webhook-id`.
        seen: Mutex<HashMap<String, u32>>,
    },
}

impl Behaviour {
    pub(super) fn flaky() -> Behaviour {
        Behaviour::Flaky {
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn answer(&self, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
        match self {
            Behaviour::Healthy => match uri.path() {
                // Seed 002's handshake: echo the validation key and the challenge.
                "/dlr" if uri.query().is_some_and(|q| q.contains("token=")) => {
                    let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                    (
                        [("content-type", "application/json")],
                        json!({"validation_key": sent["validation_key"], "challenge": sent["challenge"]})
                            .to_string(),
                    )
                        .into_response()
                }
                "/notify" => (
                    [("content-type", "application/json")],
                    json!({"status_code": "000", "status_desc": "delivered", "error_message": "",
                           "delivery_id": format!("D-{}", now_millis())})
                    .to_string(),
                )
                    .into_response(),
                "/sms-status" => (
                    [("content-type", "application/xml")],
                    format!(
                        "<?xml version=\"1.0\" encoding=\"utf-8\"?><response>{}</response>",
                        echoed_ids(body)
                    ),
                )
                    .into_response(),
                _ => StatusCode::OK.into_response(),
            },
            Behaviour::Flaky { seen } => {
                if marked_poison(body) {
                    return (StatusCode::BAD_REQUEST, "poison message: cannot process it")
                        .into_response();
                }
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let nth = {
                    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    let count = seen.entry(id).or_insert(0);
                    *count += 1;
                    *count
                };
                if nth == 1 {
                    (StatusCode::SERVICE_UNAVAILABLE, "warming up").into_response()
                } else {
                    StatusCode::OK.into_response()
                }
            }
        }
    }
}

/// `<id_sms>N</id_sms>` for every `id_sms="N"` of an sms-status-xml document.
fn echoed_ids(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .split("id_sms=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
        .map(|id| format!("<id_sms>{id}</id_sms>"))
        .collect()
}

/// A JSON body whose payload (or the `json` format's `data`) has `"poison": true`.
pub(super) fn marked_poison(body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    [&value["poison"], &value["data"]["poison"]]
        .iter()
        .any(|flag| flag.as_bool() == Some(true))
}

/// Starts a receiver on a free 127.0.0.1 port; it stops when `stop` is cancelled.
pub(super) async fn start_receiver(
    behaviour: Behaviour,
    stop: CancellationToken,
) -> Result<SocketAddr, DemoError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DemoError::Receiver)?;
    let addr = listener.local_addr().map_err(DemoError::Receiver)?;
    let behaviour = Arc::new(behaviour);
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let behaviour = Arc::clone(&behaviour);
        async move { behaviour.answer(&uri, &headers, &body) }
    });
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_healthy_receiver_echoes_every_id_sms() {
        let body = concat!(
            r#"<response><state id_sms="3234" time="">x</state>"#,
            r#"<state id_sms="7" sms="send">y</state></response>"#
        )
        .as_bytes();
        assert_eq!(echoed_ids(body), "<id_sms>3234</id_sms><id_sms>7</id_sms>");
    }
}
