//! Which daemon a client verb talks to: the socket (from the flags, the environment or the config) and the
//! API token, made into a [`Client`].

use std::path::{Path, PathBuf};

use super::CliError;
use super::args::{Connection, DEFAULT_CONFIG};
use crate::api::client::Client;
use crate::config::Config;

/// Chooses the socket: `--socket`/`HOOKD_SOCKET`, else the config's `socket`, else `data/hookd.sock`.
fn socket_path(connection: &Connection) -> Result<PathBuf, CliError> {
    if let Some(socket) = &connection.socket {
        return Ok(socket.clone());
    }
    let config_path = connection
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    if connection.config.is_some() || Path::new(&config_path).exists() {
        return Ok(Config::load(&config_path)?.socket);
    }
    Ok(PathBuf::from("data/hookd.sock"))
}

/// A client for the chosen socket, with the token if one was given.
pub(super) fn connect(connection: &Connection) -> Result<Client, CliError> {
    Ok(Client::new(&socket_path(connection)?)?.with_token(connection.token.clone()))
}
