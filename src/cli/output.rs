//! How every verb prints: a table or lines for people by default, pretty JSON with `--json`; tables fitted
//! to the terminal; times, and stderr notes. The verbs choose what to show, this module how it looks.

use serde::Serialize;

use super::args::Connection;
use crate::model::Millis;

/// Prints `value` as JSON with `--json`, else the way `human` shows it.
pub(super) fn output<T: Serialize>(connection: &Connection, value: &T, human: impl FnOnce(&T)) {
    if connection.json {
        print_json(value);
    } else {
        human(value);
    }
}

/// Writes generated text (completions, man page) to stdout; a closed stdout ends the process quietly.
pub(super) fn print_bytes(bytes: &[u8]) {
    use std::io::Write as _;
    if std::io::stdout().write_all(bytes).is_err() {
        std::process::exit(0);
    }
}

/// Prints `value` as pretty JSON on stdout.
pub(super) fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(e) => eprintln!("hookd: cannot print JSON: {e}"),
    }
}

/// A Unix-ms time as RFC 3339 with milliseconds.
pub(super) fn time(millis: Millis) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
    humantime::format_rfc3339_millis(at).to_string()
}

/// A row of fixed cells (a table's header).
pub(super) fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Prints rows as left-aligned columns; the last column is not padded. When the width is known (`COLUMNS`,
/// else the terminal's when stdout is one), a line too long for it has its last column (a reason, a URL, an
/// answer) cut to fit, ending in `…`; piped output is never cut.
pub(super) fn print_table(rows: &[Vec<String>]) {
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

/// Prints a page of a listing (`dlq list`, `msg list`) as a table, then `more: --after ID` when a next page
/// follows.
pub(super) fn print_page(rows: &[Vec<String>], next: Option<&str>) {
    print_table(rows);
    if let Some(next) = next {
        outln!("more: --after {next}");
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

/// What an attempt got back: the receiver's HTTP status, else the transport error, else `-`.
pub(super) fn answer_status(status: Option<u16>, error: Option<&str>) -> String {
    match (status, error) {
        (Some(status), _) => status.to_string(),
        (None, Some(error)) => error.to_owned(),
        (None, None) => "-".into(),
    }
}

/// A line for people on stderr (`hookd: ...`); a closed stderr is not worth failing for.
pub(super) fn note(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "hookd: {text}");
}
