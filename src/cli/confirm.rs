//! Asking before a destructive verb (`dlq purge`, `endpoints delete --messages ...`): on a terminal the verb
//! shows what it would do and asks; without one it needs `--yes`, so a script never deletes by accident nor
//! hangs on a prompt nobody sees.

use std::io::{BufRead, IsTerminal, Write};

use super::CliError;

/// Whether the verb may go on without asking (`--yes`), must ask (stdin is a terminal), or must refuse:
/// `Err` with a usage error telling about `--yes` and `--dry-run`, before anything was done. `action` says
/// what is refused ("dlq purge deletes dead letters for good").
pub(super) fn needs_asking(yes: bool, action: &str) -> Result<bool, CliError> {
    if yes {
        return Ok(false);
    }
    if std::io::stdin().is_terminal() {
        return Ok(true);
    }
    Err(CliError::Usage(format!(
        "{action}; without a terminal to ask on it needs --yes (or --dry-run to see what it would do); nothing was changed"
    )))
}

/// Asks `question` on stderr and reads the answer from stdin: `y` or `yes` goes on, anything else (an empty
/// line, end of input) is `CliError::Declined` saying `nothing` ("nothing was purged").
pub(super) fn ask(question: &str, nothing: &str) -> Result<(), CliError> {
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{question} [y/N] ");
    let _ = stderr.flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        answer.clear();
    }
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::Declined(format!("not confirmed: {nothing}"))),
    }
}
