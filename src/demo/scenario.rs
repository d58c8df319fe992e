//! What the demo sets up: its config (one endpoint per format) and the messages it sends. Apart so that
//! the tests can check the two against each other without starting anything.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};

use crate::model::now_millis;

/// The `dlr` endpoint's verification handshake key (seed 002), which the healthy receiver echoes.
const DEMO_VALIDATION_KEY: &str = "demo-validation-key";
/// Signs the `orders` endpoint's requests (see docs/SIGNING.md); a demo value, never one for production.
const DEMO_SIGNING_SECRET: &str = "whsec_ZGVtby1zZWNyZXQtbm90LWZvci1wcm9kdWN0aW9u";

/// The demo's messages: (endpoint, type, payload), every type of every endpoint, one of them poison.
pub(super) fn messages() -> Vec<(&'static str, &'static str, Value)> {
    let inbox = |title: &str, poison: bool| {
        let mut payload = json!({
            "externalCustomerId": "cust-42",
            "id": uuid::Uuid::now_v7().to_string(),
            "createdDate": now_millis(),
            "title": title,
            "content": "Parcel 1001 is on its way",
        });
        if poison {
            payload["poison"] = json!(true);
        }
        payload
    };
    let status =
        |id_sms: u64, time: &str, sms: &str| json!({"id_sms": id_sms, "time": time, "sms": sms});
    vec![
        (
            "orders",
            "order.created",
            json!({"order_id": 1001, "amount": {"value": 25.5, "currency": "EUR"}}),
        ),
        ("orders", "order.paid", json!({"order_id": 1001})),
        (
            "orders",
            "order.shipped",
            json!({"order_id": 1001, "carrier": "DHL"}),
        ),
        (
            "notify",
            "sms",
            json!({"to": "+4915112345678", "text": "Your code is 4711"}),
        ),
        (
            "notify",
            "push",
            json!({"title": "Hello", "text": "Your order shipped"}),
        ),
        (
            "sms-status",
            "sms_status",
            status(3234, "2024-01-02 10:00:00", "deliver"),
        ),
        (
            "sms-status",
            "sms_status",
            status(3235, "2024-01-02 10:00:01", "expired"),
        ),
        ("sms-status", "sms_status", status(3236, "", "send")),
        (
            "dlr",
            "dlr",
            json!({"id": "b34e35ad:1", "mobile": "918921269000", "status": "DELIVRD", "units": 1}),
        ),
        (
            "gateway",
            "device_status",
            json!({"sms_id": 12, "status_id": 7, "device_id": 3, "status_message": "SMS delivered",
                   "sendto": "+5511999999999", "senttime": "2024-01-02 10:00:00", "sim": 0}),
        ),
        (
            "gateway",
            "incoming_sms",
            json!({"address": "+5511988887777", "body": "hi", "device_id": 3}),
        ),
        ("inbox", "app_inbox", inbox("Your order shipped", false)),
        ("inbox", "app_inbox", inbox("Rate your delivery", false)),
        ("inbox", "app_inbox", inbox("poison", true)),
        (
            "billing",
            "invoice.created",
            json!({"invoice": "INV-7", "amount": 99}),
        ),
    ]
}

/// The demo's config: one endpoint per format, fast retries, loopback allowed.
pub(super) fn config_text(dir: &Path, healthy: SocketAddr, flaky: SocketAddr) -> String {
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
    let common = "timeout_ms = 2000\nmax_attempts = 3\n\
                  retry = { initial_ms = 200, max_ms = 1000, multiplier = 2.0, jitter = 0.0 }";
    let endpoint = |name: &str, addr: SocketAddr, format: &str, extra: &str| {
        format!(
            "\n[[endpoints]]\nname = \"{name}\"\nurl = \"http://{addr}/{name}\"\n\
             format = \"{format}\"\n{common}\n{extra}"
        )
    };
    let mut text = format!(
        "# Written by `hookd demo`; removed when it stops.\n\
         data_dir = {}\nsocket = {}\nshutdown_grace_ms = 2000\n\n\
         [destinations]\nallow = [\"127.0.0.0/8\"]\n",
        quote(&dir.join("data").to_string_lossy()),
        quote(&dir.join("hookd.sock").to_string_lossy()),
    );
    text.push_str(&endpoint(
        "orders",
        healthy,
        "json",
        &format!("signing_secret = \"{DEMO_SIGNING_SECRET}\"\n"),
    ));
    text.push_str(&endpoint("notify", healthy, "notification", ""));
    text.push_str(&endpoint(
        "sms-status",
        healthy,
        "sms-status-xml",
        "batch_max = 10\nbatch_linger_ms = 200\n",
    ));
    text.push_str(&endpoint(
        "dlr",
        healthy,
        "dlr-json",
        &format!(
            "auth = {{ type = \"bearer\", token = \"demo-dlr-secret\" }}\n\
             verification = {{ validation_key = \"{DEMO_VALIDATION_KEY}\" }}\n"
        ),
    ));
    text.push_str(&endpoint(
        "gateway",
        healthy,
        "gateway-json",
        &format!("urls = {{ incoming_sms = \"http://{healthy}/gateway-incoming\" }}\n"),
    ));
    text.push_str(&endpoint("inbox", flaky, "app-inbox", ""));
    text.push_str(&endpoint("billing", flaky, "json", ""));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::demo::receivers::marked_poison;

    #[test]
    fn the_demo_config_loads_with_one_endpoint_per_format() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let text = config_text(Path::new("/tmp/hookd-demo-x"), addr, addr);
        let config = Config::from_toml(&text, Path::new("demo.toml")).unwrap();
        let mut formats: Vec<&str> = config.endpoints.iter().map(|e| e.format.name()).collect();
        formats.sort_unstable();
        formats.dedup();
        assert_eq!(formats.len(), crate::formats::FormatKind::NAMES.len());
    }

    #[test]
    fn every_demo_message_is_valid_for_its_endpoint() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let config =
            Config::from_toml(&config_text(Path::new("/d"), addr, addr), Path::new("d")).unwrap();
        for (endpoint, kind, payload) in messages() {
            let format = config.endpoint(endpoint).unwrap().format;
            let raw = serde_json::value::to_raw_value(&payload).unwrap();
            assert!(
                format.validate(kind, &raw).is_ok(),
                "{endpoint}/{kind}: {:?}",
                format.validate(kind, &raw)
            );
        }
        assert_eq!(
            messages()
                .iter()
                .filter(|(_, _, p)| marked_poison(p.to_string().as_bytes()))
                .count(),
            1
        );
    }
}
