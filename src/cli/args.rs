//! The command line: clap's definitions of every verb, flag and argument, and the parsers they need.
//!
//! Kept apart from the runners so that the whole surface of `hookd` (what `--help`, the completions and the
//! man page show) reads in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::model::Millis;

/// Where the CLI looks for a config when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "config/hookd.toml";

#[derive(Debug, Parser)]
#[command(
    name = "hookd",
    version,
    about = "A reliable outbound webhook dispatcher"
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
    /// Enqueue one message; prints its id.
    Send {
        #[arg(long)]
        endpoint: String,
        #[arg(long = "type")]
        kind: String,
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
    /// Follow attempt outcomes as they happen (`--json`: one JSON object per line), until Ctrl-C.
    Tail {
        /// Only this endpoint's attempts.
        #[arg(long)]
        endpoint: Option<String>,
        /// Only attempts whose message was delivered, queued again (retry) or dead-lettered.
        #[arg(long, value_parser = ["delivered", "retry", "dead"])]
        result: Option<String>,
        /// Only this message's attempts.
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
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
}

#[derive(Debug, Subcommand)]
pub enum MsgVerb {
    /// State, next attempt and every attempt of a message.
    Show { id: String },
}

#[derive(Debug, Subcommand)]
pub enum DlqVerb {
    /// Dead letters, in enqueue order.
    List {
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this id (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Only dead letters dead since this long ago ("2h") or this time ("2026-11-21T09:00:00Z").
        #[arg(long, value_parser = parse_since)]
        since: Option<Millis>,
        /// Only dead letters whose reason contains this text (case-insensitive).
        #[arg(long)]
        reason: Option<String>,
        /// Only dead letters whose last attempt got this HTTP status.
        #[arg(long)]
        status: Option<u16>,
    },
    /// One dead letter with its whole attempt history and reason.
    Show { id: String },
    /// Queue dead letters again (history kept, attempts counted anew).
    Replay(SelectionArgs),
    /// Delete dead letters for good.
    Purge(SelectionArgs),
}

#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Message ids.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<String>,
    /// Every dead letter (of `--endpoint`, if given).
    #[arg(long)]
    pub all: bool,
    #[arg(long, conflicts_with = "ids")]
    pub endpoint: Option<String>,
    /// With --all: only dead letters dead since this long ago ("2h") or this time (RFC 3339).
    #[arg(long, conflicts_with = "ids", value_parser = parse_since)]
    pub since: Option<Millis>,
    /// With --all: only dead letters whose reason contains this text (case-insensitive).
    #[arg(long, conflicts_with = "ids")]
    pub reason: Option<String>,
    /// With --all: only dead letters whose last attempt got this HTTP status.
    #[arg(long, conflicts_with = "ids")]
    pub status: Option<u16>,
    /// Change nothing: print how many dead letters would be affected, and their ids.
    #[arg(long)]
    pub dry_run: bool,
}

/// `--since`: a duration back from now ("90m", "2h", "1day") or a time ("2026-11-21T09:00:00Z"), in Unix ms.
fn parse_since(text: &str) -> Result<Millis, String> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(crate::model::now_millis().saturating_sub(ago.as_millis() as u64));
    }
    match humantime::parse_rfc3339_weak(text) {
        Ok(at) => Ok(at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)),
        Err(_) => Err(format!(
            "`{text}` is neither a duration (\"2h\") nor a time (\"2026-11-21T09:00:00Z\")"
        )),
    }
}

#[derive(Debug, Subcommand)]
pub enum TokensVerb {
    /// Create a token and print it (it is shown only this once).
    Create {
        name: String,
    },
    List,
    Revoke {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EndpointsVerb {
    List,
    Show {
        name: String,
    },
    /// Run the verification handshake now (endpoints with `verification`).
    Verify {
        name: String,
    },
    /// Stop sending to an endpoint; its messages stay queued with their attempts untouched.
    Pause {
        name: String,
    },
    /// Send again to a paused endpoint.
    Resume {
        name: String,
    },
    /// Send again to an endpoint disabled by a 410 Gone (also closes its circuit breaker).
    Enable {
        name: String,
    },
    /// Change settings at run time (kept across restarts, laid over the config file).
    Set {
        name: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[arg(long)]
        max_attempts: Option<u32>,
        /// e.g. "24h"
        #[arg(long)]
        max_age: Option<String>,
    },
}
