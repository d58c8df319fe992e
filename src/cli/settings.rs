//! Endpoint settings from the command line: `--set KEY=VALUE` pairs and the `--auth-*` flags, turned into a
//! table of config-file keys (the same JSON the API takes). Secrets can come from stdin (`-`) or a file
//! (`@PATH`), so they appear in neither the shell history nor the process list.

use std::io::Read;

use serde_json::{Map, Value};

use super::CliError;
use super::args::AuthArgs;

/// A table of endpoint keys.
pub(super) type Table = Map<String, Value>;

/// Reads a secret given as `-` (stdin, one value, trailing newline dropped), `@PATH` (the file) or itself.
fn secret(given: &str, stdin_used: &mut bool) -> Result<String, CliError> {
    if given == "-" {
        if *stdin_used {
            return Err(CliError::Usage(
                "only one value can be read from stdin (`-`)".into(),
            ));
        }
        *stdin_used = true;
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
        return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
    }
    if let Some(path) = given.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read {path}: {e}")))?;
        return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
    }
    Ok(given.to_owned())
}

/// `KEY=VALUE` pairs and auth flags as a table. A dotted key sets a key inside a table
/// (`retry.jitter=0.1`); a value that parses as JSON is that JSON, anything else a string.
pub(super) fn table(pairs: &[String], auth: &AuthArgs) -> Result<Table, CliError> {
    let mut stdin_used = false;
    let mut table = Table::new();
    for pair in pairs {
        let (key, raw) = pair
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--set {pair}: expected KEY=VALUE")))?;
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(CliError::Usage(format!("--set {pair}: empty key")));
        }
        let raw = secret(raw, &mut stdin_used)?;
        let value = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
        insert(&mut table, key, value, pair)?;
    }
    if let Some(basic) = &auth.auth_basic {
        let (username, password) = basic
            .split_once(':')
            .ok_or_else(|| CliError::Usage("--auth-basic: expected USER:PASSWORD".into()))?;
        let password = secret(password, &mut stdin_used)?;
        let mut object = Map::new();
        object.insert("type".into(), "basic".into());
        object.insert("username".into(), username.into());
        object.insert("password".into(), password.into());
        table.insert("auth".into(), Value::Object(object));
    }
    if let Some(token) = &auth.auth_bearer {
        let token = secret(token, &mut stdin_used)?;
        let mut object = Map::new();
        object.insert("type".into(), "bearer".into());
        object.insert("token".into(), token.into());
        table.insert("auth".into(), Value::Object(object));
    }
    Ok(table)
}

/// Sets `key` (dotted for nested tables) to `value`.
fn insert(table: &mut Table, key: &str, value: Value, pair: &str) -> Result<(), CliError> {
    match key.split_once('.') {
        None => {
            table.insert(key.to_owned(), value);
            Ok(())
        }
        Some((head, rest)) => {
            let inner = table
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            match inner {
                Value::Object(inner) => insert(inner, rest, value, pair),
                _ => Err(CliError::Usage(format!(
                    "--set {pair}: `{head}` was given a value and cannot also hold keys"
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_become_json_values_and_dotted_keys_nest() {
        let pairs = [
            "timeout_ms=5000".to_owned(),
            "max_age=2h".to_owned(),
            "retry.jitter=0.1".to_owned(),
            "retry.initial_ms=50".to_owned(),
            "rate_limit=null".to_owned(),
        ];
        let table = table(&pairs, &AuthArgs::default()).expect("valid pairs");
        assert_eq!(
            Value::Object(table),
            serde_json::json!({"timeout_ms": 5000, "max_age": "2h",
                "retry": {"jitter": 0.1, "initial_ms": 50}, "rate_limit": null})
        );
    }

    #[test]
    fn auth_flags_become_the_config_files_auth_table() {
        let auth = AuthArgs {
            auth_basic: Some("user:pa:ss".into()),
            auth_bearer: None,
        };
        let table = table(&[], &auth).expect("valid");
        assert_eq!(
            Value::Object(table),
            serde_json::json!({"auth": {"type": "basic", "username": "user", "password": "pa:ss"}})
        );
    }

    #[test]
    fn a_pair_without_a_value_is_refused() {
        assert!(table(&["timeout_ms".to_owned()], &AuthArgs::default()).is_err());
        assert!(table(&["a..b=1".to_owned()], &AuthArgs::default()).is_err());
    }
}
