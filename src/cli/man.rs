//! `hookd man`: the man pages, generated from the command line's definition. `hookd(1)` also lists the
//! environment variables and the exit status; every verb has a page of its own (`hookd-send(1)`,
//! `hookd-dlq(1)`, `hookd-dlq-purge(1)`, ...).

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use super::args::{Cli, ENVIRONMENT, EXIT_CODES};
use super::{CliError, output};

/// `hookd man [--dir DIR]`: the top page on stdout, or every page written into `DIR` (their paths printed).
pub(super) fn run_man(dir: Option<&Path>) -> Result<(), CliError> {
    match dir {
        None => {
            let mut page = Vec::new();
            render_top(&command(), &mut page)
                .map_err(|e| CliError::Io(format!("cannot render the man page: {e}")))?;
            output::print_bytes(&page);
        }
        Some(dir) => {
            for path in write_pages(dir)? {
                outln!("{}", path.display());
            }
        }
    }
    Ok(())
}

/// The command line as the pages show it: built (so every verb knows its full name, `hookd-dlq-purge`),
/// without clap's `help` verb.
fn command() -> clap::Command {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    command
}

/// Writes `hookd.1` and one page per verb, nested verbs included, into `dir`; returns the files written.
pub(super) fn write_pages(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let fail = |path: &Path, e: std::io::Error| {
        CliError::Io(format!("cannot write man pages to {}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    let top = command();
    let mut written = Vec::new();
    let path = dir.join("hookd.1");
    let mut page = Vec::new();
    render_top(&top, &mut page).map_err(|e| fail(&path, e))?;
    std::fs::write(&path, page).map_err(|e| fail(&path, e))?;
    written.push(path);
    let mut pending: Vec<clap::Command> = top.get_subcommands().cloned().collect();
    while let Some(verb) = pending.pop() {
        if verb.is_hide_set() {
            continue;
        }
        pending.extend(verb.get_subcommands().cloned());
        let man = Man::new(verb);
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        man.render(&mut page).map_err(|e| fail(&path, e))?;
        std::fs::write(&path, page).map_err(|e| fail(&path, e))?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

/// hookd(1): clap_mangen's sections, then ENVIRONMENT and EXIT STATUS from the tables `--help` shows too.
fn render_top(command: &clap::Command, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let man = Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    let mut roff = Roff::default();
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, meaning) in ENVIRONMENT {
        roff.control("TP", []);
        roff.text([bold(name)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_CODES {
        roff.control("TP", []);
        roff.text([bold(code.to_string())]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "Each verb has its page: hookd-send(1), hookd-dlq(1), hookd-dlq-purge(1), ... \
         The socket API, the CLI and the config file are described in the docs/ directory of hookd's sources \
         (API.md, OPERATIONS.md).",
    )]);
    roff.to_writer(out)?;
    man.render_version_section(out)
}
