//! `hookd tokens ...`: create, list and revoke the API access tokens.

use super::CliError;
use super::args::{Connection, TokensVerb};
use super::connect::connect;
use super::output::{output, print_table, row, time};

/// `hookd tokens ...`.
pub(super) async fn run_tokens(verb: TokensVerb, connection: &Connection) -> Result<(), CliError> {
    let client = connect(connection)?;
    match verb {
        TokensVerb::Create { name } => {
            let created = client.create_token(&name).await?;
            output(connection, &created, |c| outln!("{}", c.token));
        }
        TokensVerb::List => {
            let list = client.tokens().await?;
            output(connection, &list, |l| {
                let mut rows = vec![row(["NAME", "CREATED"])];
                for t in &l.tokens {
                    rows.push(vec![t.name.clone(), time(t.created_at)]);
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
