//! The `hookd` command: `serve` runs the daemon; every other verb talks to it over the socket.
//!
//! Output is a human-readable table by default and JSON with `--json`. Failures return a [`CliError`] whose
//! one-line text `main` prints on stderr with a non-zero exit code.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::api::client::{Client, ClientError};
use crate::api::wire::{DlqSelection, EndpointView, EnqueueRequest, MessageView};
use crate::config::{Config, ConfigError, EndpointSettings};
use crate::model::Millis;

/// `println!` that ends the process quietly when stdout is closed (`hookd dlq list | head`), instead of
/// panicking on the broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

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
    /// Queue depth per state and endpoint.
    Status {
        #[command(flatten)]
        connection: Connection,
    },
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
    #[arg(long, requires = "all")]
    pub endpoint: Option<String>,
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
}

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
fn connect(connection: &Connection) -> Result<Client, CliError> {
    Ok(Client::new(&socket_path(connection)?)?.with_token(connection.token.clone()))
}

/// Runs a client verb (everything but `serve`) and prints its output.
pub async fn run_client(command: Command) -> Result<(), CliError> {
    match command {
        Command::Serve { .. } => Err(CliError::Usage("serve is not a client verb".into())),
        Command::Send {
            endpoint,
            kind,
            idempotency_key,
            payload,
            connection,
        } => {
            let text = if payload == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).map_err(|e| {
                    CliError::Usage(format!("cannot read the payload from stdin: {e}"))
                })?;
                text
            } else {
                payload
            };
            let payload = serde_json::value::RawValue::from_string(text)
                .map_err(|e| CliError::Usage(format!("the payload is not valid JSON: {e}")))?;
            let client = connect(&connection)?;
            let answer = client
                .enqueue(&EnqueueRequest {
                    endpoint,
                    kind,
                    payload,
                    idempotency_key,
                })
                .await?;
            if connection.json {
                print_json(&answer);
            } else if answer.duplicate {
                outln!(
                    "{} (duplicate of an earlier message, {})",
                    answer.id,
                    answer.status
                );
            } else {
                outln!("{}", answer.id);
            }
            Ok(())
        }
        Command::Msg { verb, connection } => {
            let client = connect(&connection)?;
            match verb {
                MsgVerb::Show { id } => {
                    let message = client.message(&id).await?;
                    output(&connection, &message, print_message);
                }
            }
            Ok(())
        }
        Command::Dlq { verb, connection } => run_dlq(verb, &connection).await,
        Command::Tokens { verb, connection } => {
            let client = connect(&connection)?;
            match verb {
                TokensVerb::Create { name } => {
                    let created = client.create_token(&name).await?;
                    output(&connection, &created, |c| outln!("{}", c.token));
                }
                TokensVerb::List => {
                    let list = client.tokens().await?;
                    output(&connection, &list, |l| {
                        let mut rows = vec![row(["NAME", "CREATED"])];
                        for t in &l.tokens {
                            rows.push(vec![t.name.clone(), time(t.created_at)]);
                        }
                        print_table(&rows);
                    });
                }
                TokensVerb::Revoke { name } => {
                    let revoked = client.revoke_token(&name).await?;
                    output(&connection, &revoked, |_| outln!("revoked {name}"));
                }
            }
            Ok(())
        }
        Command::Endpoints { verb, connection } => {
            let client = connect(&connection)?;
            match verb {
                EndpointsVerb::List => {
                    let list = client.endpoints().await?;
                    output(&connection, &list, |l| print_endpoints(&l.endpoints));
                }
                EndpointsVerb::Show { name } => {
                    let endpoint = client.endpoint(&name).await?;
                    output(&connection, &endpoint, print_endpoint);
                }
                EndpointsVerb::Set {
                    name,
                    url,
                    timeout_ms,
                    max_attempts,
                    max_age,
                } => {
                    let settings = EndpointSettings {
                        url,
                        timeout_ms,
                        max_attempts,
                        max_age,
                    };
                    let endpoint = client.update_endpoint(&name, &settings).await?;
                    output(&connection, &endpoint, print_endpoint);
                }
                EndpointsVerb::Verify { name } => {
                    let endpoint = client.verify_endpoint(&name).await?;
                    output(&connection, &endpoint, print_endpoint);
                    if endpoint.state != "active" {
                        return Err(CliError::Partial(format!(
                            "endpoint `{name}` is {}",
                            endpoint.state
                        )));
                    }
                }
            }
            Ok(())
        }
        Command::Status { connection } => {
            let client = connect(&connection)?;
            let stats = client.stats().await?;
            output(&connection, &stats, |s| {
                let mut rows = vec![row([
                    "ENDPOINT",
                    "QUEUED",
                    "IN_FLIGHT",
                    "DELIVERED",
                    "DEAD",
                ])];
                for (name, c) in &s.by_endpoint {
                    rows.push(vec![
                        name.clone(),
                        c.queued.to_string(),
                        c.in_flight.to_string(),
                        c.delivered.to_string(),
                        c.dead.to_string(),
                    ]);
                }
                let t = &s.totals;
                rows.push(vec![
                    "(total)".into(),
                    t.queued.to_string(),
                    t.in_flight.to_string(),
                    t.delivered.to_string(),
                    t.dead.to_string(),
                ]);
                print_table(&rows);
                if !s.held_endpoints.is_empty() {
                    outln!(
                        "held (endpoint not configured, or not verified): {}",
                        s.held_endpoints.join(", ")
                    );
                }
                outln!("store size on disk: {} bytes", s.size_on_disk);
            });
            Ok(())
        }
    }
}

async fn run_dlq(verb: DlqVerb, connection: &Connection) -> Result<(), CliError> {
    let client = connect(connection)?;
    match verb {
        DlqVerb::List {
            endpoint,
            limit,
            after,
        } => {
            let list = client
                .dlq_list(endpoint.as_deref(), limit, after.as_deref())
                .await?;
            output(connection, &list, |l| {
                let mut rows = vec![row([
                    "ID", "ENDPOINT", "TYPE", "ATTEMPTS", "DEAD_AT", "REASON",
                ])];
                for item in &l.items {
                    rows.push(vec![
                        item.id.clone(),
                        item.endpoint.clone(),
                        item.kind.clone(),
                        item.attempts.to_string(),
                        item.dead_at.map(time).unwrap_or_default(),
                        item.reason.clone(),
                    ]);
                }
                print_table(&rows);
                if let Some(next) = &l.next {
                    outln!("more: --after {next}");
                }
            });
        }
        DlqVerb::Show { id } => {
            let message = client.dlq_show(&id).await?;
            output(connection, &message, print_message);
        }
        DlqVerb::Replay(args) => {
            let asked = args.ids.len();
            let answer = client.dlq_replay(&selection(args)).await?;
            output(connection, &answer, |a| outln!("replayed {}", a.replayed));
            if !answer.not_dead.is_empty() {
                return Err(CliError::Partial(format!(
                    "{} of {asked} ids are not in the dead-letter queue: {}",
                    answer.not_dead.len(),
                    answer.not_dead.join(", ")
                )));
            }
        }
        DlqVerb::Purge(args) => {
            let asked = args.ids.len();
            let answer = client.dlq_purge(&selection(args)).await?;
            output(connection, &answer, |a| outln!("purged {}", a.purged));
            if !answer.not_dead.is_empty() {
                return Err(CliError::Partial(format!(
                    "{} of {asked} ids are not in the dead-letter queue: {}",
                    answer.not_dead.len(),
                    answer.not_dead.join(", ")
                )));
            }
        }
    }
    Ok(())
}

fn selection(args: SelectionArgs) -> DlqSelection {
    DlqSelection {
        ids: args.ids,
        all: args.all,
        endpoint: args.endpoint,
    }
}

fn output<T: Serialize>(connection: &Connection, value: &T, human: impl FnOnce(&T)) {
    if connection.json {
        print_json(value);
    } else {
        human(value);
    }
}

fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(e) => eprintln!("hookd: cannot print JSON: {e}"),
    }
}

fn time(millis: Millis) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
    humantime::format_rfc3339_millis(at).to_string()
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Prints rows as left-aligned columns; the last column is not padded.
fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        outln!("{}", line.trim_end());
    }
}

fn print_message(m: &MessageView) {
    outln!("id:        {}", m.id);
    outln!("endpoint:  {}", m.endpoint);
    outln!("type:      {}", m.kind);
    outln!("state:     {}", m.state);
    outln!("created:   {}", time(m.created_at));
    if let Some(at) = m.next_attempt_at {
        outln!("next:      {}", time(at));
    }
    if let Some(at) = m.delivered_at {
        outln!("delivered: {}", time(at));
    }
    if let Some(reason) = &m.dead_reason {
        outln!("dead:      {reason}");
    }
    outln!(
        "attempts:  {} ({} in this cycle)",
        m.attempts.len(),
        m.cycle_attempts
    );
    let mut rows = vec![row([
        "#", "STARTED", "MS", "STATUS", "RESULT", "REASON", "RECEIPT", "ANSWER",
    ])];
    for a in &m.attempts {
        let status = match (a.status, &a.error) {
            (Some(s), _) => s.to_string(),
            (None, Some(e)) => e.clone(),
            (None, None) => "-".into(),
        };
        let excerpt: String = a
            .body_excerpt
            .chars()
            .take(60)
            .collect::<String>()
            .replace('\n', " ");
        rows.push(vec![
            a.number.to_string(),
            time(a.started_at),
            a.duration_ms.to_string(),
            status,
            format!("{:?}", a.result).to_lowercase(),
            a.reason.clone(),
            a.receipt.clone().unwrap_or_else(|| "-".into()),
            excerpt,
        ]);
    }
    print_table(&rows);
}

fn print_endpoints(endpoints: &[EndpointView]) {
    let mut rows = vec![row([
        "NAME",
        "FORMAT",
        "STATE",
        "QUEUED",
        "IN_FLIGHT",
        "DELIVERED",
        "DEAD",
        "URL",
    ])];
    for e in endpoints {
        rows.push(vec![
            e.name.clone(),
            e.format.clone(),
            e.state.clone(),
            e.counts.queued.to_string(),
            e.counts.in_flight.to_string(),
            e.counts.delivered.to_string(),
            e.counts.dead.to_string(),
            e.url.clone(),
        ]);
    }
    print_table(&rows);
}

fn print_endpoint(e: &EndpointView) {
    outln!("name:         {}", e.name);
    outln!("url:          {}", e.url);
    outln!("format:       {}", e.format);
    outln!("state:        {}", e.state);
    outln!("timeout_ms:   {}", e.timeout_ms);
    outln!("concurrency:  {}", e.concurrency);
    outln!("max_attempts: {}", e.max_attempts);
    outln!("max_age:      {}", e.max_age);
    outln!("retry:        {}", e.retry);
    outln!("auth:         {}", e.auth.as_deref().unwrap_or("none"));
    let c = &e.counts;
    outln!(
        "messages:     {} queued, {} in flight, {} delivered, {} dead",
        c.queued,
        c.in_flight,
        c.delivered,
        c.dead
    );
}
