//! The `hookd` command: `serve` runs the daemon; every other verb talks to it over the socket.
//!
//! Output is a human-readable table by default and JSON with `--json`. Failures return a [`CliError`] whose
//! one-line text `main` prints on stderr with a non-zero exit code.
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
mod connect;
mod dlq;
mod endpoints;
mod messages;
mod output;
mod settings;
mod status;
mod tail;
mod tokens;

pub use args::{
    Cli, Command, Connection, DEFAULT_CONFIG, DlqVerb, EndpointsVerb, MsgVerb, SelectionArgs,
    TokensVerb,
};

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
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
}

/// Runs a client verb (everything but `serve`) and prints its output.
pub async fn run_client(command: Command) -> Result<(), CliError> {
    match command {
        Command::Serve { .. } => Err(CliError::Usage("serve is not a client verb".into())),
        Command::Demo { keep } => Ok(crate::demo::run(keep).await?),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hookd", &mut script);
            output::print_bytes(&script);
            Ok(())
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| CliError::Usage(format!("cannot render the man page: {e}")))?;
            output::print_bytes(&page);
            Ok(())
        }
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
