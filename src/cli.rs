//! The `hookd` command: `serve` runs the daemon; every other verb talks to it over the socket.
//!
//! Output is a human-readable table by default and JSON with `--json`. Failures return a [`CliError`] whose
//! one-line text `main` prints on stderr with a non-zero exit code.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, Parser, Subcommand};
use serde::Serialize;

use crate::api::client::{Client, ClientError, DlqQuery, EventsQuery};
use crate::api::wire::{
    AttemptEvent, DlqSelection, EndpointView, EnqueueRequest, EventLine, MessageView, Outcome,
    SinceStart,
};
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
    /// A stream (`hookd tail`) ended from the daemon's side.
    #[error("{0}")]
    Ended(String),
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
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
        Command::Demo { keep } => Ok(crate::demo::run(keep).await?),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hookd", &mut script);
            print_bytes(&script);
            Ok(())
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| CliError::Usage(format!("cannot render the man page: {e}")))?;
            print_bytes(&page);
            Ok(())
        }
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
                EndpointsVerb::Pause { name } => {
                    let endpoint = client.control_endpoint(&name, "pause").await?;
                    output(&connection, &endpoint, print_endpoint);
                }
                EndpointsVerb::Resume { name } => {
                    let endpoint = client.control_endpoint(&name, "resume").await?;
                    output(&connection, &endpoint, print_endpoint);
                }
                EndpointsVerb::Enable { name } => {
                    let endpoint = client.control_endpoint(&name, "enable").await?;
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
        Command::Status { connection } => run_status(&connection).await,
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
            run_tail(&query, &connection).await
        }
    }
}

async fn run_status(connection: &Connection) -> Result<(), CliError> {
    let report = connect(connection)?.status().await?;
    output(connection, &report, |r| {
        let mut rows = vec![row([
            "ENDPOINT",
            "STATE",
            "QUEUED",
            "HELD",
            "IN_FLIGHT",
            "DEAD",
            "DELIVERED",
            "OLDEST",
            "DELIVERED/MIN",
            "RETRIES/MIN",
            "DEAD/MIN",
        ])];
        let mut total = [0u64; 8];
        for (name, e) in &r.endpoints {
            let numbers = [
                e.queued,
                e.held,
                e.in_flight,
                e.dead,
                e.delivered,
                e.last_minute.delivered,
                e.last_minute.retry,
                e.last_minute.dead,
            ];
            for (sum, n) in total.iter_mut().zip(numbers) {
                *sum += n;
            }
            let mut cells = vec![name.clone(), e.state.clone()];
            cells.extend(numbers[..5].iter().map(u64::to_string));
            cells.push(e.oldest_queued_age_ms.map_or_else(|| "-".into(), age));
            cells.extend(numbers[5..].iter().map(u64::to_string));
            rows.push(cells);
        }
        let mut cells = vec!["(total)".to_owned(), String::new()];
        cells.extend(total[..5].iter().map(u64::to_string));
        cells.push(String::new());
        cells.extend(total[5..].iter().map(u64::to_string));
        rows.push(cells);
        print_table(&rows);
        for (name, e) in &r.endpoints {
            if let Some(detail) = &e.state_detail {
                outln!("{name}: {} ({detail})", e.state);
            }
        }
        let since: SinceStart = r.endpoints.values().fold(SinceStart::default(), |a, e| {
            let s = e.since_start;
            SinceStart {
                enqueued: a.enqueued + s.enqueued,
                attempts: a.attempts + s.attempts,
                delivered: a.delivered + s.delivered,
                retries: a.retries + s.retries,
                dead: a.dead + s.dead,
            }
        });
        outln!(
            "up {}; since start: {} enqueued, {} attempts, {} delivered, {} retries, {} dead",
            age(r.uptime_ms),
            since.enqueued,
            since.attempts,
            since.delivered,
            since.retries,
            since.dead
        );
        outln!("store size on disk: {} bytes", r.stats.size_on_disk);
    });
    Ok(())
}

/// A duration in whole seconds or coarser, the way people read an age: `42s`, `5m 3s`, `2h 10m`.
fn age(millis: u64) -> String {
    let secs = millis / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// Prints attempt events until Ctrl-C (success), a closed stdout (success), or the daemon ending the stream.
async fn run_tail(query: &EventsQuery, connection: &Connection) -> Result<(), CliError> {
    let client = connect(connection)?;
    let mut events = client.events(query).await?;
    // Said once the daemon has subscribed this listener: from here on nothing is missed.
    note("following attempt events (Ctrl-C to stop)");
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let line = tokio::select! {
            _ = &mut interrupted => return Ok(()),
            line = events.next_line() => line?,
        };
        let Some(line) = line else {
            return Err(CliError::Ended(
                "the daemon ended the event stream (it is shutting down)".into(),
            ));
        };
        if connection.json {
            outln!("{line}");
            continue;
        }
        match serde_json::from_str::<EventLine>(&line) {
            Ok(EventLine::Event(event)) => outln!("{}", event_line(&event)),
            Ok(EventLine::Lagged { lagged }) => {
                note(&format!("{lagged} events missed: this tail fell behind"))
            }
            Err(_) => outln!("{line}"),
        }
    }
}

/// One attempt as a line: time, endpoint, message, attempt number, status, reason, decision.
fn event_line(e: &AttemptEvent) -> String {
    let status = match (e.status, &e.error) {
        (Some(status), _) => status.to_string(),
        (None, Some(error)) => error.clone(),
        (None, None) => "-".into(),
    };
    let decision = match (e.result, e.retry_at, &e.dead_reason) {
        (Outcome::Retry, Some(at), _) => format!("retry at {}", time(at)),
        (Outcome::Dead, _, Some(reason)) => format!("dead: {reason}"),
        (outcome, _, _) => outcome.to_string(),
    };
    format!(
        "{}  {}  {}  #{}  {status}  {}  -> {decision}",
        time(e.at),
        e.endpoint,
        e.message_id,
        e.attempt,
        e.reason
    )
}

/// A line for people on stderr (`hookd: ...`); a closed stderr is not worth failing for.
fn note(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "hookd: {text}");
}

async fn run_dlq(verb: DlqVerb, connection: &Connection) -> Result<(), CliError> {
    let client = connect(connection)?;
    match verb {
        DlqVerb::List {
            endpoint,
            limit,
            after,
            since,
            reason,
            status,
        } => {
            let query = DlqQuery {
                endpoint,
                limit,
                after,
                since,
                reason,
                status,
            };
            let list = client.dlq_list_filtered(&query).await?;
            output(connection, &list, |l| {
                let mut rows = vec![row([
                    "ID", "ENDPOINT", "TYPE", "ATTEMPTS", "STATUS", "DEAD_AT", "REASON",
                ])];
                for item in &l.items {
                    rows.push(vec![
                        item.id.clone(),
                        item.endpoint.clone(),
                        item.kind.clone(),
                        item.attempts.to_string(),
                        item.last_status
                            .map_or_else(|| "-".into(), |s| s.to_string()),
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
            let selection = selection(args);
            let answer = if selection.dry_run {
                client.dlq_replay(&selection).await?
            } else {
                with_progress("replaying dead letters", client.dlq_replay(&selection)).await?
            };
            output(connection, &answer, |a| match &a.selected {
                Some(ids) => print_selected("replay", ids),
                None => outln!("replayed {}", a.replayed),
            });
            not_dead(asked, &answer.not_dead)?;
        }
        DlqVerb::Purge(args) => {
            let asked = args.ids.len();
            let selection = selection(args);
            let answer = if selection.dry_run {
                client.dlq_purge(&selection).await?
            } else {
                with_progress("purging dead letters", client.dlq_purge(&selection)).await?
            };
            output(connection, &answer, |a| match &a.selected {
                Some(ids) => print_selected("purge", ids),
                None => outln!("purged {}", a.purged),
            });
            not_dead(asked, &answer.not_dead)?;
        }
    }
    Ok(())
}

/// A dry run's answer: the count, then one id per line.
fn print_selected(verb: &str, ids: &[String]) {
    let noun = if ids.len() == 1 {
        "dead letter"
    } else {
        "dead letters"
    };
    outln!(
        "would {verb} {} {noun} (dry run, nothing changed)",
        ids.len()
    );
    for id in ids {
        outln!("{id}");
    }
}

/// Fails (after the output) when some of the `asked` ids were not dead letters.
fn not_dead(asked: usize, not_dead: &[String]) -> Result<(), CliError> {
    if not_dead.is_empty() {
        return Ok(());
    }
    Err(CliError::Partial(format!(
        "{} of {asked} ids are not in the dead-letter queue: {}",
        not_dead.len(),
        not_dead.join(", ")
    )))
}

/// Awaits `work`; meanwhile, when stderr is a terminal, a spinner line says what is going on and for how long
/// (the API does a bulk replay or purge in one call, so there is no count to show until it answers).
async fn with_progress<T>(label: &str, work: impl std::future::Future<Output = T>) -> T {
    use std::io::{IsTerminal as _, Write as _};
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let started = std::time::Instant::now();
    let label = label.to_owned();
    let spinner = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(120));
        tick.tick().await;
        for frame in ['|', '/', '-', '\\'].into_iter().cycle() {
            tick.tick().await;
            let mut stderr = std::io::stderr();
            let _ = write!(
                stderr,
                "\r{frame} {label}... {}s",
                started.elapsed().as_secs()
            );
            let _ = stderr.flush();
        }
    });
    let result = work.await;
    spinner.abort();
    let _ = spinner.await;
    let _ = write!(std::io::stderr(), "\r\x1b[2K");
    result
}

fn selection(args: SelectionArgs) -> DlqSelection {
    DlqSelection {
        ids: args.ids,
        all: args.all,
        endpoint: args.endpoint,
        since: args.since,
        reason: args.reason,
        status: args.status,
        dry_run: args.dry_run,
    }
}

fn output<T: Serialize>(connection: &Connection, value: &T, human: impl FnOnce(&T)) {
    if connection.json {
        print_json(value);
    } else {
        human(value);
    }
}

/// Writes generated text (completions, man page) to stdout; a closed stdout ends the process quietly.
fn print_bytes(bytes: &[u8]) {
    use std::io::Write as _;
    if std::io::stdout().write_all(bytes).is_err() {
        std::process::exit(0);
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

/// Prints rows as left-aligned columns; the last column is not padded. When the width is known (`COLUMNS`,
/// else the terminal's when stdout is one), a line too long for it has its last column (a reason, a URL, an
/// answer) cut to fit, ending in `…`; piped output is never cut.
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
    let fit = output_width();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                let room = fit.map(|width| width.saturating_sub(line.chars().count()));
                line.push_str(&cut(cell, room));
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        outln!("{}", line.trim_end());
    }
}

/// The fewest characters a cut column keeps; below this, the line is left long instead.
const MIN_CUT_COLUMN: usize = 8;

/// `text` cut to `room` characters (the last one `…`), when there is room to cut it usefully.
fn cut(text: &str, room: Option<usize>) -> String {
    match room {
        Some(room) if room >= MIN_CUT_COLUMN && text.chars().count() > room => {
            let mut kept: String = text.chars().take(room - 1).collect();
            kept.push('…');
            kept
        }
        _ => text.to_owned(),
    }
}

/// The width tables are fitted to: `COLUMNS` when set, else the terminal's when stdout is a terminal.
fn output_width() -> Option<usize> {
    use std::io::IsTerminal as _;
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0);
    if columns.is_some() {
        return columns;
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    terminal_size::terminal_size().map(|(width, _)| usize::from(width.0))
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
    match &e.state_reason {
        Some(reason) => outln!("state:        {} ({reason})", e.state),
        None => outln!("state:        {}", e.state),
    }
    let circuit = &e.circuit;
    outln!(
        "circuit:      {}, {} consecutive failures (opens at {}, cooldown {} ms)",
        circuit.state,
        circuit.consecutive_failures,
        circuit.failure_threshold,
        circuit.cooldown_ms
    );
    if let Some(rate) = e.rate_limit {
        outln!("rate_limit:   {rate} requests/s");
    }
    outln!("signed:       {}", if e.signed { "yes" } else { "no" });
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
