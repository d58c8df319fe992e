//! `hookd dlq ...`: the dead-letter queue. `list` and `show` look; `replay` and `purge` act on a selection
//! (ids, or `--all` narrowed by filters), both through `run_bulk` since they differ only in the API call
//! and their words. `purge` deletes for good, so it asks first (`confirm`): on a terminal it shows what a
//! dry run selects and purges exactly those ids once told yes; without a terminal it needs `--yes`.

use serde::Serialize;

use super::CliError;
use super::args::{Connection, DlqVerb, PurgeArgs, SelectionArgs};
use super::confirm;
use super::connect::connect;
use super::messages::print_message;
use super::output::{output, print_page, row, time};
use crate::api::client::{ClientError, DlqQuery};
use crate::api::wire::{DlqSelection, PurgeResponse, ReplayResponse};

/// `hookd dlq ...`.
pub(super) async fn run_dlq(verb: DlqVerb, connection: &Connection) -> Result<(), CliError> {
    let client = connect(connection)?;
    match verb {
        DlqVerb::List {
            endpoint,
            limit,
            after,
            since,
            until,
            kind,
            reason,
            status,
        } => {
            let query = DlqQuery {
                endpoint,
                limit,
                after,
                since,
                until,
                kind,
                reason,
                status,
            };
            let list = client.dlq_list_filtered(&query).await?;
            output(connection, &list, |l| {
                let mut rows = vec![row([
                    "ID", "ENDPOINT", "TYPE", "ATTEMPTS", "STATUS", "DEAD_AT", "REASON",
                ])];
                for item in &l.items {
                    rows.push(vec![
                        item.id.clone(),
                        item.endpoint.clone(),
                        item.kind.clone(),
                        item.attempts.to_string(),
                        item.last_status
                            .map_or_else(|| "-".into(), |s| s.to_string()),
                        item.dead_at.map(time).unwrap_or_default(),
                        item.reason.clone(),
                    ]);
                }
                print_page(&rows, l.next.as_deref());
            });
        }
        DlqVerb::Show { id } => {
            let message = client.dlq_show(&id).await?;
            output(connection, &message, print_message);
        }
        DlqVerb::Replay(args) => {
            run_bulk(args, connection, async |s| client.dlq_replay(s).await).await?
        }
        DlqVerb::Purge(PurgeArgs { selection, yes }) => {
            let ask = !selection.dry_run
                && confirm::needs_asking(yes, "dlq purge deletes dead letters for good")?;
            if ask {
                purge_after_asking(selection, connection, &client).await?
            } else {
                run_bulk(selection, connection, async |s| client.dlq_purge(s).await).await?
            }
        }
    }
    Ok(())
}

/// What `dlq replay` and `dlq purge` print, implemented by their answers: the words, and what `run_bulk`
/// reads from the answer.
trait BulkAnswer: Serialize {
    /// The verb of a dry run's line ("would replay 3 dead letters"), the word before the count when
    /// something was done ("replayed 3"), and what the spinner says while the daemon works.
    const WORDS: [&'static str; 3];

    /// How many dead letters were replayed or purged; on a dry run, the ids that would have been; the ids
    /// asked for that were not in the dead-letter queue.
    fn parts(&self) -> (usize, Option<&[String]>, &[String]);
}

impl BulkAnswer for ReplayResponse {
    const WORDS: [&'static str; 3] = ["replay", "replayed", "replaying dead letters"];
    fn parts(&self) -> (usize, Option<&[String]>, &[String]) {
        (self.replayed, self.selected.as_deref(), &self.not_dead)
    }
}

impl BulkAnswer for PurgeResponse {
    const WORDS: [&'static str; 3] = ["purge", "purged", "purging dead letters"];
    fn parts(&self) -> (usize, Option<&[String]>, &[String]) {
        (self.purged, self.selected.as_deref(), &self.not_dead)
    }
}

/// `dlq replay` or `dlq purge`, by the API `call` given: one call for the whole selection, behind a spinner
/// unless it is a dry run; prints the dry run's ids or the count done, then fails when some of the ids
/// asked for were not dead letters.
async fn run_bulk<A: BulkAnswer>(
    args: SelectionArgs,
    connection: &Connection,
    call: impl AsyncFnOnce(&DlqSelection) -> Result<A, ClientError>,
) -> Result<(), CliError> {
    let [verb, done_word, progress] = A::WORDS;
    let asked = args.ids.len();
    let selection = selection(args);
    let answer = if selection.dry_run {
        call(&selection).await?
    } else {
        with_progress(progress, call(&selection)).await?
    };
    let (done, selected, not_dead_ids) = answer.parts();
    output(connection, &answer, |_| match selected {
        Some(ids) => print_selected(verb, ids),
        None => outln!("{done_word} {done}"),
    });
    not_dead(asked, not_dead_ids)
}

/// `dlq purge` on a terminal without `--yes`: a dry run of the selection, shown on stderr, then the question;
/// once told yes, purges exactly the ids shown (dead letters that arrived meanwhile are left alone).
async fn purge_after_asking(
    args: SelectionArgs,
    connection: &Connection,
    client: &crate::api::client::Client,
) -> Result<(), CliError> {
    let asked = args.ids.len();
    let mut preview = selection(args);
    preview.dry_run = true;
    let answer = client.dlq_purge(&preview).await?;
    let ids = answer.selected.clone().unwrap_or_default();
    if ids.is_empty() {
        output(connection, &answer, |_| outln!("purged 0"));
        errln!("nothing to purge: the selection holds no dead letters");
        return not_dead(asked, &answer.not_dead);
    }
    const SHOWN: usize = 20;
    errln!(
        "this purges {} dead letter{} for good (record, attempts and idempotency key):",
        ids.len(),
        if ids.len() == 1 { "" } else { "s" }
    );
    for id in ids.iter().take(SHOWN) {
        errln!("  {id}");
    }
    if ids.len() > SHOWN {
        errln!(
            "  ... and {} more (--dry-run lists them all)",
            ids.len() - SHOWN
        );
    }
    confirm::ask("Purge them?", "nothing was purged")?;
    let exact = DlqSelection {
        ids,
        ..DlqSelection::default()
    };
    let done = with_progress("purging dead letters", client.dlq_purge(&exact)).await?;
    output(connection, &done, |d| outln!("purged {}", d.purged));
    let mut missing = answer.not_dead;
    missing.extend(done.not_dead);
    not_dead(asked.max(missing.len()), &missing)
}

/// A dry run's answer: the count, then one id per line.
fn print_selected(verb: &str, ids: &[String]) {
    let noun = if ids.len() == 1 {
        "dead letter"
    } else {
        "dead letters"
    };
    outln!(
        "would {verb} {} {noun} (dry run, nothing changed)",
        ids.len()
    );
    for id in ids {
        outln!("{id}");
    }
}

/// Fails (after the output) when some of the `asked` ids were not dead letters.
fn not_dead(asked: usize, not_dead: &[String]) -> Result<(), CliError> {
    if not_dead.is_empty() {
        return Ok(());
    }
    Err(CliError::Partial(format!(
        "{} of {asked} ids are not in the dead-letter queue: {}",
        not_dead.len(),
        not_dead.join(", ")
    )))
}

/// Awaits `work`; meanwhile, when stderr is a terminal, a spinner line says what is going on and for how long
/// (the API does a bulk replay or purge in one call, so there is no count to show until it answers).
async fn with_progress<T>(label: &str, work: impl std::future::Future<Output = T>) -> T {
    use std::io::{IsTerminal as _, Write as _};
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let started = std::time::Instant::now();
    let label = label.to_owned();
    let spinner = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(120));
        tick.tick().await;
        for frame in ['|', '/', '-', '\\'].into_iter().cycle() {
            tick.tick().await;
            let mut stderr = std::io::stderr();
            let _ = write!(
                stderr,
                "\r{frame} {label}... {}s",
                started.elapsed().as_secs()
            );
            let _ = stderr.flush();
        }
    });
    let result = work.await;
    spinner.abort();
    let _ = spinner.await;
    let _ = write!(std::io::stderr(), "\r\x1b[2K");
    result
}

/// The API's selection from the command line's.
fn selection(args: SelectionArgs) -> DlqSelection {
    DlqSelection {
        ids: args.ids,
        all: args.all,
        endpoint: args.endpoint,
        since: args.since,
        reason: args.reason,
        status: args.status,
        dry_run: args.dry_run,
    }
}
