//! The backlog phase: a healthy endpoint's enqueue-to-delivery latency while another endpoint of the same
//! daemon holds a large backlog and works it off through a slow receiver, against the same endpoint's
//! latency before that backlog existed.
//!
//! The backlog endpoint's receiver answers each request only [`BACKLOG_ANSWER_DELAY`] after it came, and the
//! endpoint has [`BACKLOG_CONCURRENCY`] requests in flight at most, so it delivers at most
//! 8 / 10 ms = 800 messages a second: the backlog is being drained all through the measured window but is
//! still there at its end (100,000 at full size take two minutes or more). The enqueue of the backlog is not
//! measured (the isolation phase measures a large enqueue beside the healthy endpoint): the window starts
//! once every batch was answered and `/v1/stats` counts the whole backlog.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hookd::store::StageCounts;

use crate::ceilings::percentile;
use crate::daemon::{BenchDaemon, EndpointSpec};
use crate::isolation::{ISOLATION_RATE, endpoint_counts, latencies_between, pace};
use crate::names::*;
use crate::phases::{BATCH_CLIENTS, BATCH_SIZE, Bench, delivery_deadline, enqueue_batches, stop};
use crate::report::{Figure, Target};
use crate::socket::SocketClient;

/// Requests in flight at most for the backlog endpoint.
pub const BACKLOG_CONCURRENCY: usize = 8;
/// How long the backlog endpoint's receiver waits before it answers each request.
pub const BACKLOG_ANSWER_DELAY: Duration = Duration::from_millis(10);

impl Bench {
    pub async fn backlog(&mut self) -> Result<()> {
        let n = self.sizes.neighbour_backlog;
        let window = Duration::from_secs_f64(self.sizes.backlog_window_secs);
        let endpoints = [
            EndpointSpec::new("healthy", self.receiver.url()),
            EndpointSpec {
                concurrency: BACKLOG_CONCURRENCY,
                ..EndpointSpec::new("backlog", self.slow.url())
            },
        ];
        let (daemon, _) = BenchDaemon::start(&self.work_dir, &endpoints).await?;
        let idle = daemon.memory()?;
        self.receiver.reset();
        self.slow.reset();
        let mut client = SocketClient::connect(&daemon.socket).await?;

        let stop_pacing = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let pacer = tokio::spawn(pace(
            daemon.socket.clone(),
            self.bodies.single("healthy"),
            Arc::clone(&stop_pacing),
        ));
        tokio::time::sleep(window).await;
        let quiet_until = Instant::now();

        let busy = async {
            let enqueue_took =
                enqueue_batches(&daemon, &self.bodies, "backlog", n, BATCH_CLIENTS).await?;
            let at_start = wait_counted(&mut client, n as u64).await?;
            let busy_from = Instant::now();
            tokio::time::sleep(window).await;
            let busy_until = Instant::now();
            let (at_end, _) = endpoint_counts(&mut client, "backlog").await?;
            anyhow::Ok((enqueue_took, at_start, busy_from, busy_until, at_end))
        }
        .await;
        stop_pacing.store(true, Ordering::Relaxed);
        let sent = pacer.await??;
        let (enqueue_took, at_start, busy_from, busy_until, at_end) = busy?;

        self.receiver
            .wait_distinct(sent.len(), delivery_deadline(sent.len()))
            .await?;
        let arrivals = self.receiver.arrivals();
        let quiet = latencies_between(&sent, &arrivals, started, quiet_until)?;
        let busy = latencies_between(&sent, &arrivals, busy_from, busy_until)?;
        if quiet.is_empty() || busy.is_empty() {
            bail!(
                "too few paced messages: {} quiet, {} busy",
                quiet.len(),
                busy.len()
            );
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let quiet_p99 = ms(percentile(&quiet, 0.99));
        let busy_secs = busy_until.duration_since(busy_from).as_secs_f64();
        let drained = at_end.delivered.saturating_sub(at_start.delivered);
        let left = at_end.queued + at_end.in_flight;
        let flag = if at_end.queued == 0 {
            "; DRAINED: the backlog ran out during the window"
        } else {
            ""
        };
        self.report.push(
            Figure::new(BLN_QUIET, quiet_p99, "ms").note(format!(
                "{} single enqueues to `healthy` at {ISOLATION_RATE}/s over {:.1} s, `backlog` configured but \
                 empty; p50 {:.2} ms",
                quiet.len(),
                quiet_until.duration_since(started).as_secs_f64(),
                ms(percentile(&quiet, 0.5))
            )),
        );
        self.report.push(
            Figure::new(BLN_BUSY, ms(percentile(&busy, 0.99)), "ms")
                .against("quiet", Some(quiet_p99))
                .target(Target::RatioAtMost(2.0))
                .note(format!(
                    "{} enqueues over {busy_secs:.1} s, once `backlog` held {n} messages (enqueued in batches \
                     of {BATCH_SIZE} in {:.2} s, before the window); {} queued at its start, {drained} \
                     delivered during it ({:.0}/s: {BACKLOG_CONCURRENCY} in flight to a receiver answering \
                     after {} ms), {left} left at its end{flag}; p50 {:.2} ms, max {:.2} ms",
                    busy.len(),
                    enqueue_took.as_secs_f64(),
                    at_start.queued + at_start.in_flight,
                    drained as f64 / busy_secs,
                    BACKLOG_ANSWER_DELAY.as_millis(),
                    ms(percentile(&busy, 0.5)),
                    ms(percentile(&busy, 1.0)),
                )),
        );
        let now = daemon.memory()?;
        self.peak_rss("backlog neighbour", idle, now);
        stop(daemon).await
    }
}

/// Waits until `/v1/stats` counts all `n` of the backlog endpoint's messages (queued, in flight or already
/// delivered); answers its counts then.
async fn wait_counted(client: &mut SocketClient, n: u64) -> Result<StageCounts> {
    let deadline = Instant::now() + delivery_deadline(n as usize);
    loop {
        let (own, by_endpoint) = endpoint_counts(client, "backlog").await?;
        let counted = own.queued + own.in_flight + own.delivered + own.dead;
        if own.dead > 0 {
            bail!("`backlog` has dead letters; stats: {by_endpoint}");
        }
        if counted >= n {
            return Ok(own);
        }
        if Instant::now() > deadline {
            bail!("{n} messages expected for `backlog`, {counted} counted; stats: {by_endpoint}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
