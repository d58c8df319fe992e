//! What the demo prints about its messages while they settle: each message it tracks, the lines for its
//! changes, the summary and the commands to try. Apart from `demo` so the flow there reads in one screen.

use std::path::Path;

use crate::api::client::{Client, ClientError};
use crate::api::wire::MessageView;
use crate::model::{State, now_millis};

use super::say;

/// One message the demo sent, and what it last printed about it.
pub(super) struct Tracked {
    pub(super) id: String,
    /// `endpoint/type`.
    pub(super) label: String,
    /// The state and attempt count last seen (in flight is never recorded: it is too short to show).
    last: Option<(State, usize)>,
    /// The message was purged (the API no longer knows it).
    gone: bool,
    attempts: usize,
}

impl Tracked {
    pub(super) fn new(id: String, label: String) -> Tracked {
        Tracked {
            id,
            label,
            last: None,
            gone: false,
            attempts: 0,
        }
    }

    fn state(&self) -> Option<State> {
        self.last.map(|(state, _)| state)
    }

    pub(super) fn settled(&self) -> bool {
        self.gone || matches!(self.state(), Some(State::Delivered | State::Dead))
    }
}

/// Reads every tracked message once and prints what changed since the last read.
pub(super) async fn poll(client: &Client, tracked: &mut [Tracked]) -> Result<(), ClientError> {
    for message in tracked.iter_mut().filter(|t| !t.gone) {
        let view = match client.message(&message.id).await {
            Ok(view) => view,
            Err(ClientError::Api { status: 404, .. }) => {
                message.gone = true;
                say(format!("gone       {}  {}", message.id, message.label));
                continue;
            }
            Err(error) => return Err(error),
        };
        let seen = (view.state, view.attempts.len());
        if view.state == State::InFlight || message.last == Some(seen) {
            continue;
        }
        for line in change_lines(message, &view) {
            say(line);
        }
        message.last = Some(seen);
        message.attempts = view.attempts.len();
    }
    Ok(())
}

/// The lines for a message that reached a new state or made a new attempt (none for a first sighting while
/// queued: its "sent" line said it).
fn change_lines(message: &Tracked, view: &MessageView) -> Vec<String> {
    let head = format!("{}  {:<28}", message.id, message.label);
    let attempts = view.attempts.len();
    let last_reason = view.attempts.last().map_or("", |a| a.reason.as_str());
    let tried = |n: usize| format!("{n} attempt{}", if n == 1 { "" } else { "s" });
    let mut lines = Vec::new();
    // A replay may have been attempted, even have died again, between two reads.
    if message.state() == Some(State::Dead)
        && (view.state != State::Dead || attempts > message.attempts)
    {
        lines.push(format!("replayed   {head}  queued again"));
    }
    let line = match view.state {
        State::Delivered => Some(format!(
            "delivered  {head}  after {} ({last_reason})",
            tried(attempts)
        )),
        State::Dead => Some(format!(
            "dead       {head}  after {}: {}",
            tried(attempts),
            view.dead_reason.as_deref().unwrap_or(last_reason)
        )),
        State::Queued if attempts > message.attempts => {
            let wait = view
                .next_attempt_at
                .map_or(0, |at| at.saturating_sub(now_millis()));
            Some(format!(
                "retry      {head}  attempt {attempts} failed ({last_reason}); next in {wait} ms"
            ))
        }
        State::Held => Some(format!("held       {head}  its endpoint is not active")),
        State::Queued | State::InFlight => None,
    };
    lines.extend(line);
    lines
}

pub(super) fn print_summary(tracked: &[Tracked]) {
    let count = |state: State| tracked.iter().filter(|t| t.state() == Some(state)).count();
    let dead = count(State::Dead);
    let attempts: usize = tracked.iter().map(|t| t.attempts).sum();
    say(format!(
        "summary: {} delivered, {dead} dead letter{} ({} messages, {attempts} attempts)",
        count(State::Delivered),
        if dead == 1 { "" } else { "s" },
        tracked.len(),
    ));
}

pub(super) fn print_commands(socket: &Path, tracked: &[Tracked]) {
    let program = std::env::args_os()
        .next()
        .map_or_else(|| "hookd".to_owned(), |p| p.to_string_lossy().into_owned());
    let program = shell_word(&program);
    let socket = shell_word(&socket.to_string_lossy());
    let dead = tracked.iter().find(|t| t.state() == Some(State::Dead));
    let any = dead.or(tracked.first());
    say("try:".into());
    say(format!("  {program} status --socket {socket}"));
    say(format!("  {program} dlq list --socket {socket}"));
    if let Some(message) = any {
        say(format!(
            "  {program} msg show {} --socket {socket}",
            message.id
        ));
    }
    match dead {
        Some(message) => {
            say(format!(
                "  {program} dlq show {} --socket {socket}",
                message.id
            ));
            say(format!(
                "  {program} dlq replay {} --socket {socket}",
                message.id
            ));
        }
        None => say(format!("  {program} dlq replay --all --socket {socket}")),
    }
    say(format!("  {program} dlq purge --all --socket {socket}"));
}

/// `text` as one shell word: quoted when it holds anything but plain path characters.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+');
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
