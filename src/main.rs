//! The `hookd` binary: parse the command line, set up logging, run, map failures to an exit code.

use std::io::{BufWriter, IsTerminal};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use hookd::cli::{Cli, Command, run_client};
use hookd::config::{Config, LogFormat};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

/// jemalloc, not the C library's malloc: the daemon allocates and frees a few dozen small buffers per message
/// (records, requests, sled nodes), and glibc's malloc took about 14% of its CPU in the end-to-end profile.
/// jemalloc delivered 15% more per second (docs/PERFORMANCE.md, change 12). Its arenas: `.cargo/config.toml`.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hookd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve { config } => runtime.block_on(serve(&config)),
        command => runtime
            .block_on(run_client(command))
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hookd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config_path: &std::path::Path) -> anyhow::Result<()> {
    // The config chooses the log format, so it is read first; an error reading it is `main`'s one line.
    let config = Config::load(config_path)?;
    // Dropped when `serve` returns, which writes out the lines still buffered.
    let _log_writer = init_logging(config.log_format);
    hookd::daemon::run(config, hookd::daemon::shutdown_signal())
        .await
        .context("hookd serve")
}

/// Logs go to stderr at the level of `HOOKD_LOG` (default `info`): one line of text per event, or one JSON
/// object per event with its fields at the top level (`message_id`, `endpoint`, ...) for log collectors.
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
