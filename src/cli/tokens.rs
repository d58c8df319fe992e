//! `hookd tokens ...`: create, list and revoke the API access tokens.

use std::path::PathBuf;

use super::CliError;
use super::args::{Connection, DEFAULT_CONFIG, TokensVerb};
use super::connect::connect;
use super::output::{output, print_table, row, time};
use crate::api::tokens::{CreatedToken, mint};
use crate::config::{Config, validate_endpoint_name};
use crate::store::StoreError;

/// `hookd tokens ...`.
pub(super) async fn run_tokens(verb: TokensVerb, connection: &Connection) -> Result<(), CliError> {
    if let TokensVerb::Create {
        name,
        endpoint,
        offline: true,
    } = verb
    {
        return create_offline(name, endpoint, connection).await;
    }
    let client = connect(connection)?;
    match verb {
        TokensVerb::Create { name, endpoint, .. } => {
            let created = client.create_token(&name, endpoint.as_deref()).await?;
            output(connection, &created, |c| {
                outln!("{}", c.token);
                match &c.endpoint {
                    Some(endpoint) => errln!(
                        "token `{}` is scoped to endpoint `{endpoint}`; every request to the API now needs a token (--token or HOOKD_TOKEN)",
                        c.name
                    ),
                    None => errln!(
                        "token `{}` created; every request to the API now needs a token (--token or HOOKD_TOKEN)",
                        c.name
                    ),
                }
            });
        }
        TokensVerb::List => {
            let list = client.tokens().await?;
            output(connection, &list, |l| {
                let mut rows = vec![row(["NAME", "CREATED", "ENDPOINT"])];
                for t in &l.tokens {
                    rows.push(vec![
                        t.name.clone(),
                        time(t.created_at),
                        t.endpoint.clone().unwrap_or_else(|| "(admin)".into()),
                    ]);
                }
                print_table(&rows);
            });
        }
        TokensVerb::Revoke { name } => {
            let revoked = client.revoke_token(&name).await?;
            output(connection, &revoked, |_| outln!("revoked {name}"));
        }
    }
    Ok(())
}

/// `hookd tokens create NAME --offline`: the token goes straight into the config's data dir, which only a
/// stopped daemon leaves free (sled's lock). The daemon loads it at its next start.
async fn create_offline(
    name: String,
    endpoint: Option<String>,
    connection: &Connection,
) -> Result<(), CliError> {
    let config_path = connection
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let config = Config::load(&config_path)?;
    validate_endpoint_name(&name).map_err(|r| CliError::Usage(format!("name: {r}")))?;
    let data_dir = &config.data_dir;
    let store = crate::cluster::open_store(&config).await.map_err(|e| match e {
        StoreError::Locked(dir) => CliError::Offline(format!(
            "data dir {} is in use by a running hookd: stop the daemon to create a token --offline, or \
             create it through the daemon's API (`hookd tokens create {name}` without --offline)",
            dir.display()
        )),
        other => CliError::Offline(other.to_string()),
    })?;
    if let Some(endpoint) = &endpoint {
        let declared = config.endpoint(endpoint).is_some();
        let created = store
            .endpoint_state(endpoint)
            .map_err(|e| CliError::Offline(e.to_string()))?
            .definition
            .is_some();
        if !declared && !created {
            return Err(CliError::Usage(format!(
                "no endpoint named `{endpoint}` (neither in {} nor created through the API)",
                config_path.display()
            )));
        }
    }
    let (token, record) = mint(&name, endpoint.clone());
    store
        .create_token(&record)
        .await
        .map_err(|e| CliError::Offline(e.to_string()))?;
    drop(store);
    let created = CreatedToken {
        name,
        token,
        endpoint,
    };
    output(connection, &created, |c| {
        outln!("{}", c.token);
        errln!(
            "token `{}` written to {} (shown only this once); from the daemon's next start every API request needs a token (--token or HOOKD_TOKEN)",
            c.name,
            match &config.store {
                crate::store_config::StoreChoice::Sled => data_dir.display().to_string(),
                crate::store_config::StoreChoice::Postgres { .. } => "the database".to_owned(),
            }
        );
    });
    Ok(())
}
