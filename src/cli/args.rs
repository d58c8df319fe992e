//! The command line: clap's definitions of every verb, flag and argument, and the parsers they need.
//!
//! Kept apart from the runners so that the whole surface of `hookd` (what `--help`, the completions and the
//! man page show) reads in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::model::Millis;

/// Where the CLI looks for a config when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "config/hookd.toml";

/// The exit status of every verb, by kind of failure: `--help`, the man page and docs/API.md list these.
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
pub enum MsgVerb {
    /// State, next attempt and every attempt of a message.
    Show {
        /// The message's id (as `hookd send` printed it).
        id: String,
    },
    /// Messages in any state, in enqueue order, narrowed by endpoint, state, type and enqueue time.
    List {
        /// Only this endpoint's messages.
        #[arg(long)]
        endpoint: Option<String>,
        /// Only messages in this state (delivered ones are kept for the `retention` window).
        #[arg(long, value_parser = ["queued", "held", "in_flight", "delivered", "dead"])]
        state: Option<String>,
        /// Only messages of this type.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only messages enqueued since this long ago ("2h") or this time ("2026-11-21T09:00:00Z").
        #[arg(long, value_parser = parse_since)]
        since: Option<Millis>,
        /// Only messages enqueued before this long ago ("30m") or this time (RFC 3339).
        #[arg(long, value_parser = parse_since)]
        until: Option<Millis>,
        /// Messages per page, 1 to 1000 (default 100); `more: --after ID` leads to the next page (a page
        /// may hold fewer when the filters match little of what it read).
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this id (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
    },
    /// Make a queued or held message due now (no attempt is counted). A delivered message: `msg resend`;
    /// a dead one: `dlq replay`.
    Retry {
        /// The message's id.
        id: String,
    },
    /// Send a delivered message again: queued, due now, with a fresh attempt count (same `webhook-id`).
    Resend {
        /// The message's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqVerb {
    /// Dead letters, in enqueue order.
    List {
        /// Only this endpoint's dead letters.
        #[arg(long)]
        endpoint: Option<String>,
        /// Dead letters per page, 1 to 1000 (default 100); `more: --after ID` leads to the next page.
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this id (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Only dead letters dead since this long ago ("2h") or this time ("2026-11-21T09:00:00Z").
        #[arg(long, value_parser = parse_since)]
        since: Option<Millis>,
        /// Only dead letters dead before this long ago ("30m") or this time (RFC 3339).
        #[arg(long, value_parser = parse_since)]
        until: Option<Millis>,
        /// Only dead letters of this message type.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only dead letters whose reason contains this text (case-insensitive).
        #[arg(long)]
        reason: Option<String>,
        /// Only dead letters whose last attempt got this HTTP status.
        #[arg(long)]
        status: Option<u16>,
    },
    /// One dead letter with its whole attempt history and reason.
    Show {
        /// The dead letter's message id.
        id: String,
    },
    /// Queue dead letters again (history kept, attempts counted anew).
    Replay(SelectionArgs),
    /// Delete dead letters for good. Shows what it would purge and asks first on a terminal; without a
    /// terminal it needs --yes.
    Purge(PurgeArgs),
}

/// `dlq purge`: the selection, and the confirmation it needs.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Purge without asking (needed when stdin is not a terminal, e.g. in scripts).
    #[arg(long, short = 'y', conflicts_with = "dry_run")]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Message ids.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<String>,
    /// Every dead letter (of `--endpoint`, if given).
    #[arg(long)]
    pub all: bool,
    /// With --all: only this endpoint's dead letters.
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

#[derive(Debug, Subcommand)]
pub enum EndpointsVerb {
    /// List endpoints in name order, a page at a time (`--after` the last name shown for the next).
    List {
        /// Only endpoints of this format.
        #[arg(long)]
        format: Option<String>,
        /// Only endpoints in this state (active, unverified, paused, disabled, circuit_open, probing).
        #[arg(long)]
        state: Option<String>,
        /// Only endpoints whose name starts with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Endpoints per page, 1 to 1000.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this endpoint name.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one endpoint: settings (secrets masked), where it is defined, run-time overrides, state, counts.
    Show {
        /// The endpoint's name.
        name: String,
    },
    /// Create an endpoint at run time (kept in the store; the config file's [defaults] fill what is not given).
    Create {
        /// The new endpoint's name (letters, digits, - _ . ; 1 to 64).
        name: String,
        /// The receiver protocol: json, notification, sms-status-xml, dlr-json, gateway-json, app-inbox.
        #[arg(long)]
        format: String,
        /// The receiver's URL (http or https).
        #[arg(long)]
        url: String,
        #[command(flatten)]
        auth: AuthArgs,
        /// Any other endpoint key, in config-file names (`retry.jitter=0.1`, `max_age=2h`, `concurrency=4`);
        /// a value that parses as JSON is taken as JSON, else as a string; `-` reads it from stdin.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Delete an endpoint created through the API (refused while it has messages, unless --messages says what
    /// becomes of them).
    Delete {
        /// The endpoint's name.
        name: String,
        /// What becomes of its queued messages: dead-letter (reason "endpoint deleted") or purge. When it
        /// has messages, shows what it would do and asks first on a terminal; without a terminal it needs
        /// --yes.
        #[arg(long, value_parser = ["dead-letter", "purge"])]
        messages: Option<String>,
        /// Delete without asking, even when --messages retires messages (needed without a terminal).
        #[arg(long, short = 'y', conflicts_with = "dry_run")]
        yes: bool,
        /// Change nothing: show the endpoint's counts and what deleting it would do.
        #[arg(long)]
        dry_run: bool,
    },
    /// Drop a declared endpoint's run-time overrides: the config file's table applies again.
    Reset {
        /// The endpoint's name.
        name: String,
    },
    /// Run the verification handshake now (endpoints with `verification`).
    Verify {
        /// The endpoint's name.
        name: String,
    },
    /// Stop sending to an endpoint; its messages stay queued with their attempts untouched.
    Pause {
        /// The endpoint's name.
        name: String,
    },
    /// Send again to a paused endpoint.
    Resume {
        /// The endpoint's name.
        name: String,
    },
    /// Send again to an endpoint disabled by a 410 Gone (also closes its circuit breaker).
    Enable {
        /// The endpoint's name.
        name: String,
    },
    /// Change settings at run time (kept across restarts; for a declared endpoint, laid over the config file
    /// until `reset`).
    Set {
        /// The endpoint's name.
        name: String,
        /// The receiver's URL.
        #[arg(long)]
        url: Option<String>,
        /// Time allowed for the whole exchange, in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Attempts before a message is dead-lettered.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// No attempt past this age, e.g. "24h".
        #[arg(long)]
        max_age: Option<String>,
        #[command(flatten)]
        auth: AuthArgs,
        /// Any endpoint key, in config-file names (`retry.jitter=0.1`, `concurrency=4`, `rate_limit=null` to
        /// drop one); a value that parses as JSON is taken as JSON, else as a string; `-` reads it from stdin.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

/// Credentials for an endpoint. A secret given as `-` is read from stdin, as `@PATH` from that file; it is
/// never echoed.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// Basic auth: USER:PASSWORD (PASSWORD may be `-` or `@PATH`).
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "auth_bearer")]
    pub auth_basic: Option<String>,
    /// Bearer auth: TOKEN (or `-` for stdin, `@PATH` for a file).
    #[arg(long, value_name = "TOKEN")]
    pub auth_bearer: Option<String>,
}
