//! `hookd tail`: follows the daemon's live feed of attempt outcomes and changes in endpoints' lives
//! (circuit, pause and resume, 410 disable and enable, verification), one line each (or the JSON as it
//! comes), until Ctrl-C.

use super::CliError;
use super::args::Connection;
use super::connect::connect;
use super::output::{answer_status, note, time};
use crate::api::client::EventsQuery;
use crate::api::wire::{AttemptEvent, EndpointEvent, EventLine, Outcome};

/// Prints attempt events until Ctrl-C (success), a closed stdout (success), or the daemon ending the stream.
pub(super) async fn run_tail(query: &EventsQuery, connection: &Connection) -> Result<(), CliError> {
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
            Ok(EventLine::Endpoint(event)) => outln!("{}", endpoint_line(&event)),
            Ok(EventLine::Lagged { lagged }) => {
                note(&format!("{lagged} events missed: this tail fell behind"))
            }
            Err(_) => outln!("{line}"),
        }
    }
}

/// One attempt as a line: time, endpoint, message, attempt number, status, reason, decision.
fn event_line(e: &AttemptEvent) -> String {
    let status = answer_status(e.status, e.error.as_deref());
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

/// An endpoint's change as a line: time, endpoint, what changed, and why when known.
fn endpoint_line(e: &EndpointEvent) -> String {
    let detail = e
        .detail
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    format!(
        "{}  {}  ** {}{detail}",
        time(e.at),
        e.endpoint,
        e.event.words()
    )
}
