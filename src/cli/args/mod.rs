//! The command line: clap's definitions of every verb, flag and argument, and the parsers they need.
//!
//! Kept apart from the runners so that the whole surface of `hookd` (what `--help`, the completions and the
//! man page show) reads in one place.
//!
//! This module holds the top: the exit codes and environment `--help` lists, the global connection flags,
//! the verbs, and the small verb groups (`config`, `tokens`); the larger groups have their own files:
//! `message_verbs` (`msg` and `dlq`) and `endpoint_verbs` (`endpoints`).

mod endpoint_verbs;
mod message_verbs;

pub use endpoint_verbs::{AuthArgs, EndpointsVerb};
pub use message_verbs::{DlqVerb, MsgVerb, PurgeArgs, SelectionArgs};

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Where the CLI looks for a config when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "config/hookd.toml";

/// The exit status of every verb, by kind of failure: `--help`, the man page and docs/api/cli.md list these.
pub const EXIT_CODES: [(u8, &str); 6] = [
    (0, "success"),
    (
        1,
        "any other failure: the daemon failed a request (HTTP 5xx, 429), some of the ids given were not \
         dead letters, a handshake failed, a confirmation was declined, `serve` could not start or stopped on \
         a store failure",
    ),
    (
        2,
        "invalid input: a usage error, an invalid or missing config file, a payload that is not JSON, a \
         destructive verb without --yes and without a terminal, or a request the daemon refused as invalid \
         (HTTP 400, 409, 413, 422)",
    ),
    (
        3,
        "the daemon cannot be reached: it is not running, or the socket cannot be opened",
    ),
    (
        4,
        "not found: no such message, dead letter, endpoint or token (HTTP 404)",
    ),
    (
        5,
        "unauthorised: an access token is needed or not valid, or the token may not do this (HTTP 401, 403)",
    ),
];

/// The environment variables hookd reads, for `--help` and the man page.
pub const ENVIRONMENT: [(&str, &str); 5] = [
    (
        "HOOKD_SOCKET",
        "the daemon's socket, as --socket (client verbs)",
    ),
    (
        "HOOKD_TOKEN",
        "the API access token, as --token (client verbs)",
    ),
    (
        "HOOKD_LOG",
        "the log level of `serve`, a tracing filter such as `info`, `warn` or `hookd=debug` (default info)",
    ),
    (
        "NOTIFY_SOCKET",
        "set by systemd for Type=notify: `serve` sends READY=1 there once its socket accepts, STOPPING=1 when \
         it begins to stop",
    ),
    (
        "COLUMNS",
        "the width tables are fitted to (default: the terminal's; piped output is never cut)",
    ),
];

/// What `hookd --help` shows after the verbs: exit status and environment.
fn after_help() -> String {
    let mut text = String::from("Exit status:\n");
    for (code, meaning) in EXIT_CODES {
        text.push_str(&format!("  {code}  {meaning}\n"));
    }
    text.push_str("\nEnvironment:\n");
    for (name, meaning) in ENVIRONMENT {
        text.push_str(&format!("  {name:<13}  {meaning}\n"));
    }
    text
}

#[derive(Debug, Parser)]
#[command(
    name = "hookd",
    version,
    about = "A reliable outbound webhook dispatcher",
    after_help = after_help()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Connection {
    /// The daemon's socket (default: HOOKD_SOCKET, else the config's `socket`).
    #[arg(long, env = "HOOKD_SOCKET", global = true)]
    pub socket: Option<PathBuf>,
    /// The config file to read the socket path from.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// The API access token, when tokens are in force.
    #[arg(long, env = "HOOKD_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve {
        /// The config file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Apply the PostgreSQL schema's pending migrations to the database of the config's `[store] url`
    /// (`serve` also applies them at start; safe while other nodes run or start).
    Migrate {
        /// The config file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Enqueue one message; prints its id.
    Send {
        /// The endpoint to send it to (a name from `hookd endpoints list`).
        #[arg(long)]
        endpoint: String,
        /// The message type (e.g. `order.created`; the endpoint's format decides which it accepts).
        #[arg(long = "type")]
        kind: String,
        /// A key that makes a repeated send of the same message queue nothing (scoped to the endpoint).
        #[arg(long)]
        idempotency_key: Option<String>,
        /// The payload as JSON, or `-` to read it from stdin.
        payload: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Inspect messages.
    Msg {
        #[command(subcommand)]
        verb: MsgVerb,
        #[command(flatten)]
        connection: Connection,
    },
    /// The dead-letter queue.
    Dlq {
        #[command(subcommand)]
        verb: DlqVerb,
        #[command(flatten)]
        connection: Connection,
    },
    /// Endpoints and their counts.
    Endpoints {
        #[command(subcommand)]
        verb: EndpointsVerb,
        #[command(flatten)]
        connection: Connection,
    },
    /// API access tokens.
    Tokens {
        #[command(subcommand)]
        verb: TokensVerb,
        #[command(flatten)]
        connection: Connection,
    },
    /// Per endpoint: state, queue depth (queued, held, in flight, dead), oldest queued message, outcomes in
    /// the last minute.
    Status {
        #[command(flatten)]
        connection: Connection,
    },
    /// Follow attempt outcomes and endpoints' changes (circuit opened, half-open, closed; paused, resumed;
    /// disabled by 410, enabled; verification passed or failed) as they happen (`--json`: one JSON object per
    /// line; an endpoint's change has `"event"`), until Ctrl-C.
    Tail {
        /// Only this endpoint's attempts and changes.
        #[arg(long)]
        endpoint: Option<String>,
        /// Only attempts whose message was delivered, queued again (retry) or dead-lettered. Filters attempt
        /// lines only: endpoints' changes still show.
        #[arg(long, value_parser = ["delivered", "retry", "dead"])]
        result: Option<String>,
        /// Only this message's attempts (and its endpoint's changes).
        #[arg(long)]
        message: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// A first look: a throwaway daemon, two local receivers and a mix of messages, printed live.
    Demo {
        /// Keep the daemon and receivers running after everything settled, until Ctrl-C.
        #[arg(long)]
        keep: bool,
    },
    /// Print a shell completion script (e.g. `hookd completions bash > /etc/bash_completion.d/hookd`).
    Completions {
        /// The shell to write the script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page hookd(1) (roff) on stdout, or with --dir write it and one page per verb there.
    Man {
        /// Write hookd.1 and a page per verb (hookd-send.1, hookd-dlq.1, hookd-dlq-purge.1, ...) into this
        /// directory (created if missing), e.g. /usr/local/share/man/man1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Check a config file without starting the daemon.
    Config {
        #[command(subcommand)]
        verb: ConfigVerb,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigVerb {
    /// Validate the config (exit 0 and a summary, or exit 2 and the error); warn about endpoints the
    /// destination guard will refuse and about run-time overrides in the data dir that shadow the file.
    Check {
        /// The config file to check.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensVerb {
    /// Create a token and print it (it is shown only this once). Once a token exists, every request needs one.
    Create {
        /// The token's name (letters, digits, - _ . ; 1 to 64), used to list and revoke it.
        name: String,
        /// Scope the token to this endpoint: it may read and change that endpoint and read its messages, and
        /// nothing else (a customer's token). Without it: an admin token.
        #[arg(long)]
        endpoint: Option<String>,
        /// Write the token straight into the data dir of the config (`--config`) while the daemon is stopped,
        /// instead of asking the daemon: the way to create the first token before `[api] require_token`.
        #[arg(long)]
        offline: bool,
    },
    /// The tokens' names, creation times and scopes (never the tokens themselves).
    List,
    /// Revoke a token: requests carrying it are refused from now on. Revoking the last one opens the API
    /// again (unless `[api] require_token`).
    Revoke {
        /// The token's name.
        name: String,
    },
}
