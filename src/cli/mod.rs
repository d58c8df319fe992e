//! The `hookd` command: `serve` runs the daemon; every other verb talks to it over the socket.
//!
//! Output is a human-readable table by default and JSON with `--json`. Failures return a [`CliError`] whose
//! one-line text `main` prints on stderr, with the exit code of its kind ([`CliError::exit_code`], listed in
//! [`EXIT_CODES`]).
//!
//! This module holds the dispatch from a parsed [`Command`] to its runner; the submodules hold one concept
//! each: `args` the command line, `connect` the socket and token, `output` tables and JSON, then one
//! module per group of verbs.

use clap::CommandFactory;

use crate::api::client::{ClientError, EventsQuery};
use crate::config::ConfigError;

/// `println!` that ends the process quietly when stdout is closed (`hookd dlq list | head`), instead of
/// panicking on the broken pipe. Defined before the `mod` lines below so that every submodule can use it.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// `eprintln!` for hints beside the output (they stay out of pipes); a closed stderr is ignored.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod args;
mod config_check;
mod confirm;
mod connect;
mod dlq;
mod endpoints;
mod man;
mod messages;
mod output;
mod settings;
mod status;
mod tail;
mod tokens;

pub use args::{
    Cli, Command, ConfigVerb, Connection, DEFAULT_CONFIG, DlqVerb, ENVIRONMENT, EXIT_CODES,
    EndpointsVerb, MsgVerb, PurgeArgs, SelectionArgs, TokensVerb,
};

/// The exit codes by kind of failure (the table is [`EXIT_CODES`]).
pub mod exit {
    /// Anything not listed below.
    pub const FAILURE: u8 = 1;
    /// Invalid input: usage, config, payload, a request refused as invalid, a missing --yes.
    pub const INVALID: u8 = 2;
    /// The daemon cannot be reached.
    pub const NOT_RUNNING: u8 = 3;
    /// No such message, endpoint or token.
    pub const NOT_FOUND: u8 = 4;
    /// No valid access token, or the token may not do this.
    pub const UNAUTHORIZED: u8 = 5;
}

/// A CLI failure, printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Partial(String),
    /// `hookd tokens create --offline` could not write to the data dir (a daemon holds it, ...).
    #[error("{0}")]
    Offline(String),
    /// A stream (`hookd tail`) ended from the daemon's side.
    #[error("{0}")]
    Ended(String),
    /// A destructive verb was not confirmed at its prompt.
    #[error("{0}")]
    Declined(String),
    /// A local file could not be written (`hookd man --dir`).
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
}

impl CliError {
    /// The process's exit code for this failure: see [`EXIT_CODES`].
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Client(ClientError::NotRunning { .. }) => exit::NOT_RUNNING,
            CliError::Client(ClientError::Api { status, .. }) => match status {
                401 | 403 => exit::UNAUTHORIZED,
                404 => exit::NOT_FOUND,
                400 | 409 | 413 | 422 => exit::INVALID,
                _ => exit::FAILURE,
            },
            CliError::Config(_) | CliError::Usage(_) => exit::INVALID,
            CliError::Client(_)
            | CliError::Partial(_)
            | CliError::Offline(_)
            | CliError::Ended(_)
            | CliError::Declined(_)
            | CliError::Io(_)
            | CliError::Demo(_) => exit::FAILURE,
        }
    }

    /// A 401 told the way a CLI user can act on: how to pass a token, or that the one passed is not valid.
    fn with_token_hint(self, token_given: bool) -> CliError {
        match self {
            CliError::Client(ClientError::Api {
                status: 401,
                code,
                message: _,
            }) => CliError::Client(ClientError::Api {
                status: 401,
                code,
                message: if token_given {
                    "the access token given (--token or HOOKD_TOKEN) is not valid: it is mistyped or was \
                     revoked; pass a valid one with --token TOKEN or the HOOKD_TOKEN environment variable"
                        .into()
                } else {
                    "the daemon requires an access token: pass one with --token TOKEN or the HOOKD_TOKEN \
                     environment variable"
                        .into()
                },
            }),
            other => other,
        }
    }
}

/// Runs a client verb (everything but `serve`) and prints its output.
pub async fn run_client(command: Command) -> Result<(), CliError> {
    let token_given = command.connection().is_some_and(|c| c.token.is_some());
    run_verb(command)
        .await
        .map_err(|e| e.with_token_hint(token_given))
}

impl Command {
    /// The connection options of a client verb (`None` for `serve`, `demo`, `man`, ...).
    pub fn connection(&self) -> Option<&Connection> {
        match self {
            Command::Send { connection, .. }
            | Command::Msg { connection, .. }
            | Command::Dlq { connection, .. }
            | Command::Endpoints { connection, .. }
            | Command::Tokens { connection, .. }
            | Command::Status { connection }
            | Command::Tail { connection, .. } => Some(connection),
            Command::Serve { .. }
            | Command::Migrate { .. }
            | Command::Demo { .. }
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Config { .. } => None,
        }
    }
}

async fn run_verb(command: Command) -> Result<(), CliError> {
    match command {
        Command::Serve { .. } => Err(CliError::Usage("serve is not a client verb".into())),
        Command::Demo { keep } => Ok(crate::demo::run(keep).await?),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hookd", &mut script);
            output::print_bytes(&script);
            Ok(())
        }
        Command::Man { dir } => man::run_man(dir.as_deref()),
        Command::Migrate { config } => config_check::run_migrate(&config).await,
        Command::Config {
            verb: ConfigVerb::Check { config },
        } => config_check::run_check(&config).await,
        Command::Send {
            endpoint,
            kind,
            idempotency_key,
            payload,
            connection,
        } => messages::run_send(endpoint, kind, idempotency_key, payload, &connection).await,
        Command::Msg { verb, connection } => messages::run_msg(verb, &connection).await,
        Command::Dlq { verb, connection } => dlq::run_dlq(verb, &connection).await,
        Command::Tokens { verb, connection } => tokens::run_tokens(verb, &connection).await,
        Command::Endpoints { verb, connection } => {
            endpoints::run_endpoints(verb, &connection).await
        }
        Command::Status { connection } => status::run_status(&connection).await,
        Command::Tail {
            endpoint,
            result,
            message,
            connection,
        } => {
            let query = EventsQuery {
                endpoint,
                result,
                message,
            };
            tail::run_tail(&query, &connection).await
        }
    }
}
