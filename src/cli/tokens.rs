//! `hookd tokens ...`: create, list and revoke the API access tokens.

use super::CliError;
use super::args::{Connection, TokensVerb};
use super::connect::connect;
use super::output::{output, print_table, row, time};

/// `hookd tokens ...`.
pub(super) async fn run_tokens(verb: TokensVerb, connection: &Connection) -> Result<(), CliError> {
    let client = connect(connection)?;
    match verb {
        TokensVerb::Create { name, endpoint } => {
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
