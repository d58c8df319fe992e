//! `hookd status`: a table of every endpoint's state, queue depth, oldest queued message and outcomes in
//! the last minute, with totals, then the daemon's uptime and counts since start.

use super::CliError;
use super::args::Connection;
use super::connect::connect;
use super::output::{output, print_table, row};
use crate::api::wire::SinceStart;

/// Prints the status report: the table, a line per endpoint with a state detail, then the totals since start.
pub(super) async fn run_status(connection: &Connection) -> Result<(), CliError> {
    let report = connect(connection)?.status().await?;
    output(connection, &report, |r| {
        let mut rows = vec![row([
            "ENDPOINT",
            "STATE",
            "QUEUED",
            "HELD",
            "IN_FLIGHT",
            "DEAD",
            "DELIVERED",
            "OLDEST",
            "DELIVERED/MIN",
            "RETRIES/MIN",
            "DEAD/MIN",
        ])];
        let mut total = [0u64; 8];
        for (name, e) in &r.endpoints {
            let numbers = [
                e.queued,
                e.held,
                e.in_flight,
                e.dead,
                e.delivered,
                e.last_minute.delivered,
                e.last_minute.retry,
                e.last_minute.dead,
            ];
            for (sum, n) in total.iter_mut().zip(numbers) {
                *sum += n;
            }
            let mut cells = vec![name.clone(), e.state.clone()];
            cells.extend(numbers[..5].iter().map(u64::to_string));
            cells.push(e.oldest_queued_age_ms.map_or_else(|| "-".into(), age));
            cells.extend(numbers[5..].iter().map(u64::to_string));
            rows.push(cells);
        }
        let mut cells = vec!["(total)".to_owned(), String::new()];
        cells.extend(total[..5].iter().map(u64::to_string));
        cells.push(String::new());
        cells.extend(total[5..].iter().map(u64::to_string));
        rows.push(cells);
        print_table(&rows);
        for (name, e) in &r.endpoints {
            if let Some(detail) = &e.state_detail {
                outln!("{name}: {} ({detail})", e.state);
            }
        }
        let since: SinceStart = r.endpoints.values().fold(SinceStart::default(), |a, e| {
            let s = e.since_start;
            SinceStart {
                enqueued: a.enqueued + s.enqueued,
                attempts: a.attempts + s.attempts,
                delivered: a.delivered + s.delivered,
                retries: a.retries + s.retries,
                dead: a.dead + s.dead,
            }
        });
        outln!(
            "up {}; since start: {} enqueued, {} attempts, {} delivered, {} retries, {} dead",
            age(r.uptime_ms),
            since.enqueued,
            since.attempts,
            since.delivered,
            since.retries,
            since.dead
        );
        outln!("store size on disk: {} bytes", r.stats.size_on_disk);
    });
    Ok(())
}

/// A duration in whole seconds or coarser, the way people read an age: `42s`, `5m 3s`, `2h 10m`.
fn age(millis: u64) -> String {
    let secs = millis / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}
