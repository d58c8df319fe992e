//! The `msg` and `dlq` verbs: their arguments, the dead-letter selection that `replay` and `purge` share, and
//! the `--since`/`--until` parser. Apart from the top of the command line because the two groups
//! share their dead-letter filters and time parser.

use clap::{Args, Subcommand};

use crate::model::Millis;

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
