//! The `hookd` binary: parse the command line, set up logging, run, map failures to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use hookd::cli::{Cli, Command, run_client};
use hookd::config::Config;

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOOKD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = Config::load(config_path)?;
    hookd::daemon::run(config, hookd::daemon::shutdown_signal())
        .await
        .context("hookd serve")
}
