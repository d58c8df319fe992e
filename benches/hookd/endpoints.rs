//! The endpoint-scale phase: endpoints created through the API (`POST /v1/endpoints`) by the thousand, and
//! what they cost: memory per idle endpoint, the creation rate, start-up with them all in the store, and
//! delivery spread over many endpoints against the same messages to one.
//!
//! One daemon with no `[[endpoints]]` and a `[defaults.json]` table (`concurrency = 4`), so every created
//! endpoint is a `json` endpoint sending to the counting receiver with 4 requests in flight at most.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;

use crate::daemon::{BenchDaemon, CpuUse, ENDPOINT_CONCURRENCY};
use crate::names::*;
use crate::phases::{
    BATCH_CLIENTS, BATCH_SIZE, Bench, CLIENTS, MIB, delivery_deadline, enqueue_batches, stop,
};
use crate::report::{Figure, Target};
use crate::socket::SocketClient;

/// Requests in flight per created endpoint (`[defaults.json] concurrency`).
pub const SPREAD_CONCURRENCY: usize = 4;
const KIB: f64 = 1024.0;

/// The name of the `i`-th created endpoint.
fn name(i: usize) -> String {
    format!("ep-{i:06}")
}

impl Bench {
    pub async fn endpoints(&mut self) -> Result<()> {
        let n = self.sizes.endpoints;
        let creates = self.sizes.endpoint_creates.min(n);
        let spread = self.sizes.spread_endpoints.min(n);
        let per = self.sizes.messages_per_endpoint;
        let defaults = format!("[defaults.json]\nconcurrency = {SPREAD_CONCURRENCY}\n");
        let (mut daemon, _) = BenchDaemon::start_with(&self.work_dir, &[], &defaults).await?;

        // The baselines: an empty store's restart, and its memory right after it.
        restart_check(&mut daemon).await?;
        let empty_start = daemon.spawn_until_healthy().await?;
        let idle = daemon.memory()?;
        self.report.push(
            Figure::new(EP_EMPTY_START, empty_start.as_secs_f64(), "s").note(
                "SIGTERM, spawn again on the same (empty) data dir, until GET /v1/health answers 200",
            ),
        );

        // The creation rate over the first `creates`, then the rest untimed.
        let url = self.receiver.url();
        let took = create_endpoints(&daemon, &url, 0..creates).await?;
        let rate = creates as f64 / took.as_secs_f64();
        create_endpoints(&daemon, &url, creates..n).await?;
        let (single, single_note) = match self.report.value(ENQ_SINGLE) {
            Some(single) => (Some(single), "the enqueue phase's single-enqueue rate"),
            None => (None, "none, the enqueue phase did not run"),
        };
        self.report.push(
            Figure::new(EP_CREATE, rate, "/s")
                .against("single enqueue", single)
                .target(Target::AtLeast(2_000.0))
                .note(format!(
                    "{creates} POST /v1/endpoints by {CLIENTS} clients (each a 201 after its commit) into a daemon \
                     with 0 endpoints; baseline: {single_note}"
                )),
        );

        // Memory with every endpoint registered and idle (no lane: nothing queued).
        let loaded = daemon.memory()?;
        let per_endpoint = |rss: u64, base: u64| (rss as f64 - base as f64) / KIB / n as f64;
        self.report.push(
            Figure::new(EP_RSS, loaded.rss as f64 / MIB, "MiB")
                .against("VmRSS, 0 endpoints", Some(idle.rss as f64 / MIB))
                .note(format!(
                    "{n} idle endpoints created through the API; VmHWM {:.1} MiB",
                    loaded.hwm as f64 / MIB
                )),
        );
        self.report.push(
            Figure::new(EP_MEM, per_endpoint(loaded.rss, idle.rss), "KiB")
                .target(Target::AtMost(2.0))
                .note(format!(
                    "(VmRSS with {n} endpoints - VmRSS with 0, {:.1} MiB, same daemon) / {n}",
                    idle.rss as f64 / MIB
                )),
        );

        // Start-up with every endpoint in the store.
        restart_check(&mut daemon).await?;
        let loaded_start = daemon.spawn_until_healthy().await?;
        let restarted = daemon.memory()?;
        self.report.push(
            Figure::new(EP_START, loaded_start.as_secs_f64(), "s")
                .against("empty start", Some(empty_start.as_secs_f64()))
                .target(Target::Below(5.0))
                .note(format!(
                    "SIGTERM, spawn again with {n} endpoints in the store, until GET /v1/health answers 200"
                )),
        );
        self.report.push(
            Figure::new(
                EP_MEM_RESTARTED,
                per_endpoint(restarted.rss, idle.rss),
                "KiB",
            )
            .against(
                "after creating them",
                Some(per_endpoint(loaded.rss, idle.rss)),
            )
            .note(format!(
                "(VmRSS after the restart, {:.1} MiB - VmRSS with 0) / {n}; no target",
                restarted.rss as f64 / MIB
            )),
        );

        // Delivery: the same messages to one endpoint (the baseline), then spread over `spread` endpoints.
        let total = spread * per;
        let mut client = SocketClient::connect(&daemon.socket).await?;
        client
            .create_endpoint(Bytes::from(format!(
                r#"{{"name":"one","format":"json","url":{url:?},"concurrency":{ENDPOINT_CONCURRENCY}}}"#
            )))
            .await?;
        self.receiver.reset();
        let cpu_before = CpuUse::now(&daemon);
        let started = Instant::now();
        enqueue_batches(&daemon, &self.bodies, "one", total, BATCH_CLIENTS).await?;
        let done = self
            .receiver
            .wait_distinct(total, delivery_deadline(total))
            .await?;
        let one = total as f64 / done.saturating_duration_since(started).as_secs_f64();
        let (one_daemon_us, one_bench_us) =
            CpuUse::now(&daemon).per_message_since(cpu_before, total);

        let names: Vec<String> = (0..spread).map(name).collect();
        let order: Vec<String> = (0..total).map(|i| names[i % spread].clone()).collect();
        let bodies: Vec<Bytes> = order
            .chunks(BATCH_SIZE)
            .map(|chunk| self.bodies.spread(chunk))
            .collect();
        self.receiver.reset();
        let cpu_before = CpuUse::now(&daemon);
        let started = Instant::now();
        send_batches(&daemon, bodies, BATCH_CLIENTS).await?;
        let done = self
            .receiver
            .wait_distinct(total, delivery_deadline(total))
            .await?;
        let many = total as f64 / done.saturating_duration_since(started).as_secs_f64();
        let (many_daemon_us, many_bench_us) =
            CpuUse::now(&daemon).per_message_since(cpu_before, total);
        self.report
            .push(Figure::new(EP_ONE, one, "/s").note(format!(
                "{total} messages to one endpoint (concurrency {ENDPOINT_CONCURRENCY}), batches of \
                 {BATCH_SIZE} by {BATCH_CLIENTS} clients; first send to the last new webhook-id; CPU per \
                 message: hookd {one_daemon_us:.0} µs, bench clients+receiver {one_bench_us:.0} µs"
            )));
        self.report.push(
            Figure::new(EP_SPREAD, many, "/s")
                .against("one endpoint", Some(one))
                .target(Target::RatioAtLeast(0.7))
                .note(format!(
                    "{per} messages to each of {spread} endpoints (concurrency {SPREAD_CONCURRENCY} each), \
                     round robin in batches of {BATCH_SIZE} by {BATCH_CLIENTS} clients, {n} registered; CPU \
                     per message: hookd {many_daemon_us:.0} µs ({:.2} × one endpoint's), bench \
                     clients+receiver {many_bench_us:.0} µs ({:.2} ×)",
                    many_daemon_us / one_daemon_us.max(f64::MIN_POSITIVE),
                    many_bench_us / one_bench_us.max(f64::MIN_POSITIVE),
                )),
        );
        let now = daemon.memory()?;
        self.peak_rss("endpoints", idle, now);
        stop(daemon).await
    }
}

/// SIGTERM, expecting a clean exit. Waits first until the socket answers: hookd installs its SIGTERM handler
/// only when `run` first polls its shutdown future, after the "hookd is serving" line, so a SIGTERM sent
/// right at that line can end it with the signal's default action (no graceful shutdown).
async fn restart_check(daemon: &mut BenchDaemon) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !crate::socket::health(&daemon.socket).await {
        if Instant::now() >= deadline {
            bail!("the daemon's socket did not answer GET /v1/health within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = daemon.terminate().await?;
    if !status.success() {
        bail!(
            "SIGTERM: the daemon exited with {status}; log:\n{}",
            daemon.log_tail()
        );
    }
    Ok(())
}

/// Creates the endpoints numbered `range` (json, to `url`) from [`CLIENTS`] connections; answers how long
/// it took. The whole run has a deadline.
async fn create_endpoints(
    daemon: &BenchDaemon,
    url: &str,
    range: std::ops::Range<usize>,
) -> Result<Duration> {
    if range.is_empty() {
        return Ok(Duration::ZERO);
    }
    let count = range.len();
    let deadline = Duration::from_secs(120) + Duration::from_millis(count as u64 * 5);
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        range
            .map(|i| {
                Bytes::from(format!(
                    r#"{{"name":"{}","format":"json","url":{url:?}}}"#,
                    name(i)
                ))
            })
            .collect(),
    );
    let connections = SocketClient::connect_many(&daemon.socket, CLIENTS).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in connections {
        let (next, bodies) = (Arc::clone(&next), Arc::clone(&bodies));
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return anyhow::Ok(());
                };
                client.create_endpoint(body.clone()).await?;
            }
        });
    }
    let joined = tokio::time::timeout(deadline, async {
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        anyhow::Ok(())
    })
    .await;
    match joined {
        Ok(outcome) => outcome?,
        Err(_) => bail!(
            "creating {count} endpoints took longer than {deadline:?} ({} started)",
            next.load(Ordering::Relaxed).min(count)
        ),
    }
    Ok(started.elapsed())
}

/// Sends prepared batch bodies from `clients` connections; fails when any item is refused.
pub(crate) async fn send_batches(
    daemon: &BenchDaemon,
    bodies: Vec<Bytes>,
    clients: usize,
) -> Result<()> {
    let bodies = Arc::new(bodies);
    let connections = SocketClient::connect_many(&daemon.socket, clients).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in connections {
        let (next, bodies) = (Arc::clone(&next), Arc::clone(&bodies));
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return anyhow::Ok(());
                };
                client.enqueue_batch(body.clone()).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done?.context("a spread batch")?;
    }
    Ok(())
}
