//! An endpoint's settings as data: one table of config-file keys, whether it comes from an `[[endpoints]]`
//! table, a `POST /v1/endpoints` body or a stored record.
//!
//! A TOML table and a JSON body say the same thing, so every source is read into one [`Table`] (JSON), laid
//! over the config file's defaults (`[defaults]`, then `[defaults.<format>]`) and validated by the one set of
//! rules in `config/endpoint.rs` ([`crate::config::RawEndpoint`]). Changes are tables too: a key given replaces
//! that key's whole value, a key given as `null` drops it (back to the default). Views show a table with every
//! secret masked.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::{EndpointConfig, RawEndpoint, masked_url};
use crate::formats::FormatKind;

/// An endpoint's keys and values, in config-file names and shapes.
pub type Table = serde_json::Map<String, Value>;

/// Why a table is not a valid endpoint: the key (dotted, e.g. `retry.jitter`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    pub field: String,
    pub reason: String,
}

impl From<(&'static str, String)> for SpecError {
    fn from((field, reason): (&'static str, String)) -> SpecError {
        SpecError::new(field, reason)
    }
}

impl SpecError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
        SpecError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The config file's `[defaults]` (every format) and `[defaults.<format>]` tables. `Debug` masks secrets.
#[derive(Clone, Default)]
pub struct Defaults {
    all: Table,
    by_format: BTreeMap<&'static str, Table>,
}

impl std::fmt::Debug for Defaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let by_format: BTreeMap<_, _> =
            self.by_format.iter().map(|(k, t)| (k, masked(t))).collect();
        f.debug_struct("Defaults")
            .field("all", &masked(&self.all))
            .field("by_format", &by_format)
            .finish()
    }
}

/// Endpoint tables by name (the config file's declarations). `Debug` masks secrets.
#[derive(Clone, Default)]
pub struct Tables(pub std::collections::HashMap<String, Table>);

impl Tables {
    pub fn get(&self, name: &str) -> Option<&Table> {
        self.0.get(name)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, table)| (name, masked(table))))
            .finish()
    }
}

/// A stand-in URL for checking a defaults table on its own.
const PROBE_URL: &str = "http://defaults.invalid/";

impl Defaults {
    /// Splits `[defaults]` into its own keys and its per-format tables, and checks each as an endpoint of
    /// that format would read it. An error names the key as `defaults.<key>` or `defaults.<format>.<key>`.
    pub fn from_table(mut raw: Table) -> Result<Defaults, SpecError> {
        let mut by_format = BTreeMap::new();
        for &name in FormatKind::NAMES.iter() {
            match raw.remove(name) {
                None => {}
                Some(Value::Object(table)) => {
                    by_format.insert(name, table);
                }
                Some(_) => {
                    return Err(SpecError::new(
                        format!("defaults.{name}"),
                        "must be a table of endpoint keys",
                    ));
                }
            }
        }
        for key in ["name", "url", "format"] {
            if raw.contains_key(key) {
                return Err(SpecError::new(
                    format!("defaults.{key}"),
                    "is set per endpoint, not as a default",
                ));
            }
        }
        let defaults = Defaults {
            all: raw,
            by_format,
        };
        let probe = |format: &str| {
            let mut table = Table::new();
            table.insert("name".into(), Value::from("defaults"));
            table.insert("url".into(), Value::from(PROBE_URL));
            table.insert("format".into(), Value::from(format));
            // A format that requires `verification` per endpoint: the defaults may give it, need not.
            let verifies = FormatKind::from_name(format).is_some_and(FormatKind::verifies);
            if verifies && !defaults.apply(&table).contains_key("verification") {
                table.insert("verification".into(), Value::from("none"));
            }
            table
        };
        // The shared keys must suit every format; a format's own keys only that format.
        for &format in FormatKind::NAMES.iter() {
            let scope = if defaults.by_format.contains_key(format) {
                format!("defaults.{format}")
            } else {
                "defaults".to_owned()
            };
            if let Err(e) = defaults.validate(&probe(format)) {
                let own = defaults
                    .by_format
                    .get(format)
                    .is_some_and(|t| t.contains_key(top_key(&e.field)));
                let scope = if own { scope } else { "defaults".to_owned() };
                return Err(SpecError::new(format!("{scope}.{}", e.field), e.reason));
            }
        }
        Ok(defaults)
    }

    /// The table with the defaults for its format laid under it.
    pub fn apply(&self, spec: &Table) -> Table {
        let mut merged = self.all.clone();
        let format = spec.get("format").and_then(Value::as_str).unwrap_or("json");
        if let Some(own) = self.by_format.get(format) {
            merged.extend(own.clone());
        }
        merged.extend(spec.clone());
        merged
    }

    /// Validates a table (with the defaults laid under it) into the endpoint the daemon runs.
    pub fn validate(&self, spec: &Table) -> Result<EndpointConfig, SpecError> {
        let merged = Value::Object(self.apply(spec));
        let raw: RawEndpoint = serde_path_to_error::deserialize(merged).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            SpecError::new(field, e.into_inner().to_string())
        })?;
        raw.validate()
    }
}

/// `retry.jitter` -> `retry`.
fn top_key(field: &str) -> &str {
    field.split('.').next().unwrap_or(field)
}

/// Lays `patch` over `table`: a key given replaces that key's value, a key given as `null` is removed.
pub fn apply_patch(table: &mut Table, patch: &Table) {
    for (key, value) in patch {
        if value.is_null() {
            table.remove(key);
        } else {
            table.insert(key.clone(), value.clone());
        }
    }
}

/// The keys that hold secrets, as (key, inner key): shown as `***`, never echoed.
const SECRET_KEYS: [(&str, Option<&str>); 4] = [
    ("auth", Some("token")),
    ("auth", Some("password")),
    ("verification", Some("validation_key")),
    ("signing_secret", None),
];

/// The table as an operator may see it: secrets as `***`, the URL with its password and query values masked.
pub fn masked(table: &Table) -> Table {
    let mut shown = table.clone();
    for (key, inner) in SECRET_KEYS {
        match (shown.get_mut(key), inner) {
            (Some(Value::Object(object)), Some(inner)) => {
                if let Some(secret) = object.get_mut(inner) {
                    *secret = Value::from("***");
                }
            }
            (Some(value), None) => *value = Value::from("***"),
            _ => {}
        }
    }
    if let Some(Value::String(url)) = shown.get("url")
        && let Ok(parsed) = reqwest::Url::parse(url)
    {
        shown.insert("url".into(), Value::from(masked_url(&parsed)));
    }
    if let Some(Value::Object(urls)) = shown.get_mut("urls") {
        for value in urls.values_mut() {
            if let Some(parsed) = value.as_str().and_then(|u| reqwest::Url::parse(u).ok()) {
                *value = Value::from(masked_url(&parsed));
            }
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(json: &str) -> Table {
        match serde_json::from_str(json) {
            Ok(Value::Object(table)) => table,
            other => panic!("not a table: {other:?}"),
        }
    }

    #[test]
    fn format_defaults_lie_under_the_endpoint_and_over_the_shared_ones() {
        let defaults = Defaults::from_table(table(
            r#"{"timeout_ms": 1000, "max_attempts": 3, "dlr-json": {"max_attempts": 7}}"#,
        ))
        .expect("valid defaults");
        let dlr = defaults
            .validate(&table(
                r#"{"name":"a","url":"http://x/","format":"dlr-json","verification":"none"}"#,
            ))
            .expect("valid");
        assert_eq!(dlr.retry.max_attempts, 7);
        assert_eq!(dlr.timeout.as_millis(), 1000);
        let json = defaults
            .validate(&table(r#"{"name":"b","url":"http://x/","max_attempts":2}"#))
            .expect("valid");
        assert_eq!(json.retry.max_attempts, 2);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let defaults = Defaults::default();
        let err = defaults
            .validate(&table(
                r#"{"name":"a","url":"http://x/","timeout_ms":"soon"}"#,
            ))
            .unwrap_err();
        assert_eq!(err.field, "timeout_ms");
        let err = defaults
            .validate(&table(
                r#"{"name":"a","url":"http://x/","retry":{"jitter":2.0}}"#,
            ))
            .unwrap_err();
        assert_eq!(err.field, "retry.jitter");
        let err = defaults
            .validate(&table(r#"{"name":"a","url":"ftp://x/"}"#))
            .unwrap_err();
        assert_eq!(err.field, "url");
    }

    #[test]
    fn defaults_refuse_keys_that_do_not_suit_their_scope() {
        let err = Defaults::from_table(table(r#"{"batch_max": 10}"#)).unwrap_err();
        assert_eq!(err.field, "defaults.batch_max");
        let err =
            Defaults::from_table(table(r#"{"sms-status-xml": {"batch_max": 1000}}"#)).unwrap_err();
        assert_eq!(err.field, "defaults.sms-status-xml.batch_max");
        let err = Defaults::from_table(table(r#"{"url": "http://x/"}"#)).unwrap_err();
        assert_eq!(err.field, "defaults.url");
        assert!(Defaults::from_table(table(r#"{"sms-status-xml": {"batch_max": 50}}"#)).is_ok());
    }

    #[test]
    fn a_dlr_json_body_says_how_it_is_verified() {
        let defaults = Defaults::default();
        let err = defaults
            .validate(&table(
                r#"{"name":"dlr","url":"http://x/","format":"dlr-json"}"#,
            ))
            .unwrap_err();
        assert_eq!(err.field, "verification");
        assert!(err.reason.contains("`dlr`"), "{}", err.reason);
        let none = defaults
            .validate(&table(
                r#"{"name":"dlr","url":"http://x/","format":"dlr-json","verification":"none"}"#,
            ))
            .expect("\"none\" is accepted in a JSON body");
        assert!(none.verification.is_none() && none.verification_waived);
        let keyed = defaults
            .validate(&table(
                r#"{"name":"dlr","url":"http://x/","format":"dlr-json","verification":{"validation_key":"k"}}"#,
            ))
            .expect("a handshake table");
        assert!(keyed.verification.is_some() && !keyed.verification_waived);
        let err = defaults
            .validate(&table(
                r#"{"name":"dlr","url":"http://x/","format":"dlr-json","verification":"off"}"#,
            ))
            .unwrap_err();
        assert_eq!(err.field, "verification");
        // The format's defaults may say it for every endpoint of the format.
        let defaults =
            Defaults::from_table(table(r#"{"dlr-json": {"verification": "none"}}"#)).unwrap();
        let waived = defaults
            .validate(&table(
                r#"{"name":"dlr","url":"http://x/","format":"dlr-json"}"#,
            ))
            .expect("verification from [defaults.dlr-json]");
        assert!(waived.verification_waived);
        // Defaults that say nothing about it are still sound.
        assert!(Defaults::from_table(table(r#"{"timeout_ms": 5}"#)).is_ok());
    }

    #[test]
    fn urls_name_the_type_whose_url_is_wrong() {
        let defaults = Defaults::default();
        let gateway = defaults
            .validate(&table(
                r#"{"name":"gw","url":"http://x/all","format":"gateway-json",
                    "urls":{"incoming_sms":"http://x/in"}}"#,
            ))
            .expect("valid");
        assert_eq!(gateway.url_for("incoming_sms").as_str(), "http://x/in");
        assert_eq!(gateway.url_for("device_status").as_str(), "http://x/all");
        let err = defaults
            .validate(&table(
                r#"{"name":"gw","url":"http://x/","format":"gateway-json",
                    "urls":{"incoming_sms":"ftp://x/in"}}"#,
            ))
            .unwrap_err();
        assert_eq!(err.field, "urls.incoming_sms");
        let err = defaults
            .validate(&table(
                r#"{"name":"a","url":"http://x/","urls":{"order.created":"http://x/o"}}"#,
            ))
            .unwrap_err();
        assert_eq!(err.field, "urls");
    }

    #[test]
    fn a_patch_replaces_keys_and_null_drops_them() {
        let mut spec =
            table(r#"{"url":"http://a/","timeout_ms":5,"auth":{"type":"bearer","token":"t"}}"#);
        apply_patch(
            &mut spec,
            &table(
                r#"{"url":"http://b/","timeout_ms":null,"auth":{"type":"basic","username":"u","password":"p"}}"#,
            ),
        );
        assert_eq!(
            spec,
            table(r#"{"url":"http://b/","auth":{"type":"basic","username":"u","password":"p"}}"#)
        );
    }

    #[test]
    fn views_mask_every_secret() {
        let shown = masked(&table(
            r#"{"url":"http://u:pw@x/?key=k","auth":{"type":"basic","username":"u","password":"p"},
                "signing_secret":["whsec_a"],"verification":{"validation_key":"v"}}"#,
        ));
        let text = Value::Object(shown).to_string();
        for secret in ["pw", "\"p\"", "whsec_a", "\"v\"", "key=k"] {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
        assert!(text.contains("\"username\":\"u\""), "{text}");
    }
}
