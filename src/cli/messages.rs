//! One message: `send` enqueues it, `msg show` shows it with its attempts. `print_message` is also how
//! `dlq show` shows a dead letter.

use std::io::Read;

use super::CliError;
use super::args::{Connection, MsgVerb};
use super::connect::connect;
use super::output::{answer_status, output, print_page, print_table, row, time};
use crate::api::client::MessagesQuery;
use crate::api::wire::{EnqueueRequest, MessageView};

/// `hookd send`: enqueues one message (the payload given, or read from stdin for `-`) and prints its id.
pub(super) async fn run_send(
    endpoint: String,
    kind: String,
    idempotency_key: Option<String>,
    payload: String,
    connection: &Connection,
) -> Result<(), CliError> {
    let text = if payload == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Usage(format!("cannot read the payload from stdin: {e}")))?;
        text
    } else {
        payload
    };
    let payload = serde_json::value::RawValue::from_string(text)
        .map_err(|e| CliError::Usage(format!("the payload is not valid JSON: {e}")))?;
    let client = connect(connection)?;
    let answer = client
        .enqueue(&EnqueueRequest {
            endpoint,
            kind,
            payload,
            idempotency_key,
        })
        .await?;
    output(connection, &answer, |a| {
        if a.duplicate {
            outln!("{} (duplicate of an earlier message, {})", a.id, a.status);
        } else {
            outln!("{}", a.id);
        }
    });
    Ok(())
}

/// `hookd msg ...`.
pub(super) async fn run_msg(verb: MsgVerb, connection: &Connection) -> Result<(), CliError> {
    let client = connect(connection)?;
    match verb {
        MsgVerb::Show { id } => {
            let message = client.message(&id).await?;
            output(connection, &message, print_message);
        }
        MsgVerb::List {
            endpoint,
            state,
            kind,
            since,
            until,
            limit,
            after,
        } => {
            let query = MessagesQuery {
                endpoint,
                state,
                kind,
                since,
                until,
                limit,
                after,
            };
            let list = client.messages(&query).await?;
            output(connection, &list, |l| {
                let mut rows = vec![row([
                    "ID", "ENDPOINT", "TYPE", "STATE", "ATTEMPTS", "CREATED", "NEXT",
                ])];
                for item in &l.items {
                    rows.push(vec![
                        item.id.clone(),
                        item.endpoint.clone(),
                        item.kind.clone(),
                        item.state.to_string(),
                        item.attempts.to_string(),
                        time(item.created_at),
                        item.next_attempt_at.map_or_else(|| "-".into(), time),
                    ]);
                }
                print_page(&rows, l.next.as_deref());
            });
        }
        MsgVerb::Retry { id } => {
            let done = client.message_retry(&id).await?;
            output(connection, &done, |d| {
                outln!("{} due now ({}, endpoint {})", d.id, d.state, d.endpoint)
            });
        }
        MsgVerb::Resend { id } => {
            let done = client.message_resend(&id).await?;
            output(connection, &done, |d| {
                outln!(
                    "{} queued again, due now ({}, endpoint {})",
                    d.id,
                    d.state,
                    d.endpoint
                )
            });
        }
    }
    Ok(())
}

/// A message's fields, one per line, then its attempts as a table.
pub(super) fn print_message(m: &MessageView) {
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
            answer_status(a.status, a.error.as_deref()),
            format!("{:?}", a.result).to_lowercase(),
            a.reason.clone(),
            a.receipt.clone().unwrap_or_else(|| "-".into()),
            excerpt,
        ]);
    }
    print_table(&rows);
}
