//! The `hookd` binary: parse the command line, set up logging, run, map failures to an exit code.

use std::io::{BufWriter, IsTerminal};
use std::process::ExitCode;

use clap::Parser;
use hookd::cli::{Cli, Command, exit, run_client};
use hookd::config::{Config, ConfigError, LogFormat};
use hookd::daemon::DaemonError;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

/// jemalloc, not the C library's malloc: the daemon allocates and frees a few dozen small buffers per message
/// (records, requests, sled nodes), and glibc's malloc took about 14% of its CPU in the end-to-end profile.
/// jemalloc delivered 15% more per second (docs/performance/design-notes.md, "Why the store and the
/// dispatcher are laid out as they are": "jemalloc, one arena per CPU"). Its arenas: `.cargo/config.toml`.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hookd: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let (message, code) = match cli.command {
        Command::Serve { config } => {
            let mut log_writer = None;
            let served = runtime.block_on(serve(&config, &mut log_writer));
            // Tasks still running log while the runtime stops: it stops first, and only then is the log
            // writer dropped, which writes out every line queued (a line logged after it would be lost).
            runtime.shutdown_timeout(RUNTIME_STOP);
            drop(log_writer);
            match served {
                Ok(()) => return ExitCode::SUCCESS,
                Err(ServeError::Config(error)) => (one_line(&error), exit::INVALID),
                Err(ServeError::Daemon(error)) => {
                    (format!("hookd serve: {}", one_line(&error)), exit::FAILURE)
                }
            }
        }
        command => match runtime.block_on(run_client(command)) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(error) => (one_line(&error), error.exit_code()),
        },
    };
    eprintln!("hookd: {message}");
    ExitCode::from(code)
}

/// Why `serve` did not run or stop cleanly: its config (exit 2) or the daemon (exit 1).
enum ServeError {
    Config(ConfigError),
    Daemon(DaemonError),
}

/// How long the runtime's blocking threads (a store pass under way) may delay the exit once `serve` returned.
const RUNTIME_STOP: std::time::Duration = std::time::Duration::from_secs(5);

/// Loads the config, starts logging (its guard goes to `log_writer`, for `main` to drop after the runtime)
/// and runs the daemon.
async fn serve(
    config_path: &std::path::Path,
    log_writer: &mut Option<WorkerGuard>,
) -> Result<(), ServeError> {
    // The config chooses the log format, so it is read first; an error reading it is `main`'s one line.
    let config = Config::load(config_path).map_err(ServeError::Config)?;
    *log_writer = Some(init_logging(config.log_format));
    hookd::daemon::run(config, hookd::daemon::shutdown_signal())
        .await
        .map_err(ServeError::Daemon)
}

/// An error and its causes on one line, each cause only when the text so far does not already say it (most
/// errors here put their source in their own message, e.g. `cannot read config file X: No such file ...`).
fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = next.source();
    }
    line
}

/// Log lines start with the time as RFC 3339 in UTC with milliseconds, as the CLI prints times.
struct Rfc3339Millis;

impl tracing_subscriber::fmt::time::FormatTime for Rfc3339Millis {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(
            w,
            "{}",
            humantime::format_rfc3339_millis(std::time::SystemTime::now())
        )
    }
}

/// Logs go to stderr at the level of `HOOKD_LOG` (default `info`): one line of text per event, or one JSON
/// object per event with its fields at the top level (`message_id`, `endpoint`, ...) for log collectors.
/// Times, the line's own and those in fields (`retry_at`), are RFC 3339 in UTC.
///
/// A delivery logs a line, so a busy daemon logs thousands a second. They are written by a thread of their
/// own, which takes every line waiting and writes them through an 8 KiB `BufWriter`, flushed when none is
/// left: a `write` per 8 KiB instead of one per line from the thread that delivered. No line is dropped: when
/// 128,000 lines wait, a thread that logs waits until the writer catches up. The returned guard writes out
/// what is still queued when it is dropped.
fn init_logging(format: LogFormat) -> WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOOKD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("hookd-log")
        .finish(BufWriter::new(std::io::stderr()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(Rfc3339Millis)
        .with_writer(writer);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    guard
}
