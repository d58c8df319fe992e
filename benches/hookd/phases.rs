//! The phases that run the real daemon: enqueue throughput, end-to-end delivery, latency at half that rate,
//! a large backlog for a paused endpoint (memory, disk, restart), and a hanging neighbour's cost.
//!
//! Every phase starts a fresh daemon (fresh data dir), so each peak RSS (VmHWM) belongs to one phase.
//! Backlogs are built while their endpoint is paused (`POST /v1/endpoints/{name}/pause`): enqueue figures
//! then do not share the machine with deliveries, and delivery figures are timed from the resume.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;

use crate::ceilings::percentile;
use crate::daemon::{BenchDaemon, ENDPOINT_CONCURRENCY, EndpointSpec, Memory, SLED_CACHE_BYTES};
use crate::names::*;
use crate::receiver::Receiver;
use crate::report::{Figure, Report, Target};
use crate::socket::{Bodies, SocketClient};

/// Clients enqueueing single messages at once (as many as an endpoint sends at once).
pub const CLIENTS: usize = 32;
/// Clients enqueueing batches at once, and messages per batch.
pub const BATCH_CLIENTS: usize = 4;
/// Connections of the latency phase. Each waits for its answer (a group commit, a few milliseconds) before it
/// sends again, so 32 of them top out near 32 / 3.5 ms = 9,000 enqueues a second, below half of today's
/// end-to-end rate: the pace, not the connections, must set the rate.
pub const LATENCY_CLIENTS: usize = 128;
pub const BATCH_SIZE: usize = 250;
/// An attempt to the hanging receiver outlasts every phase.
const HANG_TIMEOUT_MS: u64 = 600_000;
pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// How many messages each phase moves.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub ceiling_requests: usize,
    pub durability_single: usize,
    pub durability_batched: usize,
    pub single_enqueues: usize,
    pub batch_enqueues: usize,
    pub e2e: usize,
    pub pipeline: usize,
    pub latency_max: usize,
    pub latency_secs: f64,
    pub queued: usize,
    pub healthy: usize,
    pub stuck: usize,
    /// Endpoints registered for the memory and start-up figures of the endpoints phase.
    pub endpoints: usize,
    /// Of those, how many are created for the timed creation rate (the first ones).
    pub endpoint_creates: usize,
    /// Endpoints that each get `messages_per_endpoint` messages in the many-endpoint delivery figure.
    pub spread_endpoints: usize,
    pub messages_per_endpoint: usize,
    /// The isolation phase's bulk batch (then as many dead letters replayed and purged).
    pub bulk: usize,
    /// How long the isolation phase measures the healthy endpoint alone first.
    pub isolation_quiet_secs: f64,
    /// The backlog phase: the other endpoint's backlog, and how long each of its two windows (the healthy
    /// endpoint alone, then beside that backlog) lasts.
    pub neighbour_backlog: usize,
    pub backlog_window_secs: f64,
    /// Messages of each PostgreSQL delivery run (one node, two nodes).
    pub pg_messages: usize,
    /// Single enqueues of the PostgreSQL enqueue-and-deliver peak.
    pub pg_pipeline: usize,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            ceiling_requests: 100_000,
            durability_single: 50_000,
            durability_batched: 200_000,
            single_enqueues: 50_000,
            batch_enqueues: 200_000,
            e2e: 100_000,
            pipeline: 50_000,
            latency_max: 30_000,
            latency_secs: 10.0,
            queued: 1_000_000,
            healthy: 50_000,
            stuck: 1_000,
            endpoints: 100_000,
            endpoint_creates: 10_000,
            spread_endpoints: 10_000,
            messages_per_endpoint: 5,
            bulk: 50_000,
            isolation_quiet_secs: 10.0,
            neighbour_backlog: 100_000,
            backlog_window_secs: 10.0,
            pg_messages: 100_000,
            pg_pipeline: 30_000,
        }
    }

    pub fn smoke() -> Sizes {
        Sizes {
            ceiling_requests: 5_000,
            durability_single: 2_000,
            durability_batched: 20_000,
            single_enqueues: 2_000,
            batch_enqueues: 20_000,
            e2e: 2_000,
            pipeline: 2_000,
            latency_max: 1_000,
            latency_secs: 2.0,
            queued: 20_000,
            healthy: 2_000,
            stuck: 200,
            endpoints: 2_000,
            endpoint_creates: 1_000,
            spread_endpoints: 500,
            messages_per_endpoint: 5,
            bulk: 2_000,
            isolation_quiet_secs: 3.0,
            neighbour_backlog: 5_000,
            backlog_window_secs: 3.0,
            pg_messages: 400,
            pg_pipeline: 200,
        }
    }
}

/// What the daemon phases share.
pub struct Bench {
    pub sizes: Sizes,
    /// Where temp dirs (data dirs, sled) are made: must be a real disk for the fsync costs to count.
    pub work_dir: PathBuf,
    /// Where the latency phase writes one line per message (`--latency-trace`), if anywhere.
    pub latency_trace: Option<PathBuf>,
    pub receiver: Receiver,
    pub hanging: Receiver,
    /// Answers every request 400: each message sent to it is dead at once (the isolation phase's bulk).
    pub refusing: Receiver,
    /// Answers 200 after a delay: the backlog phase's slow neighbour.
    pub slow: Receiver,
    pub bodies: Bodies,
    pub report: Report,
    /// How long the PostgreSQL soak runs (`--soak-secs`), and its pace (`--soak-rate`) when given.
    pub soak_secs: f64,
    pub soak_rate: Option<f64>,
}

/// Generous time for `n` messages to be delivered, even on a loaded machine.
pub(crate) fn delivery_deadline(n: usize) -> Duration {
    Duration::from_secs(120) + Duration::from_millis(n as u64 * 2)
}

impl Bench {
    /// Starts an empty daemon: its spawn-to-serving time is the restart baseline. Also checks that the
    /// daemon has the pause API that every backlog needs.
    pub async fn probe(&mut self) -> Result<()> {
        let (daemon, started_in) =
            BenchDaemon::start(&self.work_dir, &[self.endpoint("bench")]).await?;
        control(&daemon, "bench", "pause").await?;
        stop(daemon).await?;
        self.report.push(
            Figure::new(FRESH_START, started_in.as_secs_f64(), "s")
                .note("spawn to \"hookd is serving\" with an empty data dir"),
        );
        Ok(())
    }

    /// An endpoint sending to the counting receiver.
    fn endpoint(&self, name: &'static str) -> EndpointSpec {
        EndpointSpec::new(name, self.receiver.url())
    }

    pub(crate) fn peak_rss(&mut self, phase: &str, idle: Memory, now: Memory) {
        self.report.push(
            Figure::new(format!("{PEAK_RSS}: {phase}"), now.hwm as f64 / MIB, "MiB")
                .against("idle RSS", Some(idle.rss as f64 / MIB)),
        );
    }

    /// Single and batch enqueues to a paused endpoint.
    pub async fn enqueue(&mut self) -> Result<()> {
        let (daemon, _) = BenchDaemon::start(&self.work_dir, &[self.endpoint("bench")]).await?;
        let idle = daemon.memory()?;
        control(&daemon, "bench", "pause").await?;
        self.receiver.reset();
        let n = self.sizes.single_enqueues;
        let took = enqueue_singles(&daemon, self.bodies.single("bench"), n, CLIENTS).await?;
        self.report.push(
            Figure::new(ENQ_SINGLE, n as f64 / took.as_secs_f64(), "/s")
                .against("sled, 1/wait", self.report.value(DUR_SINGLE))
                .target(Target::AtLeast(10_000.0))
                .note(format!(
                    "{n} messages, {CLIENTS} clients, one raw hyper connection each"
                )),
        );
        let n = self.sizes.batch_enqueues;
        let took = enqueue_batches(&daemon, &self.bodies, "bench", n, BATCH_CLIENTS).await?;
        self.report.push(
            Figure::new(ENQ_BATCH, n as f64 / took.as_secs_f64(), "/s")
                .against("sled, 250/wait", self.report.value(DUR_BATCH))
                .target(Target::RatioAtLeast(0.5))
                .note(format!(
                    "{n} messages, {BATCH_CLIENTS} clients, {BATCH_SIZE} per batch"
                )),
        );
        if self.receiver.requests() > 0 {
            bail!("the paused endpoint delivered");
        }
        let now = daemon.memory()?;
        self.peak_rss("enqueue", idle, now);
        stop(daemon).await
    }

    /// Builds a backlog of `n` for `endpoint` while it is paused, and times its delivery: from just before
    /// the resume until the receiver has seen every id. Answers messages per second.
    async fn delivery_run(&self, daemon: &BenchDaemon, endpoint: &str, n: usize) -> Result<f64> {
        self.receiver.reset();
        control(daemon, endpoint, "pause").await?;
        enqueue_batches(daemon, &self.bodies, endpoint, n, BATCH_CLIENTS).await?;
        if self.receiver.requests() > 0 {
            bail!("`{endpoint}` delivered while paused");
        }
        let started = Instant::now();
        control(daemon, endpoint, "resume").await?;
        let done = self.receiver.wait_distinct(n, delivery_deadline(n)).await?;
        Ok(n as f64 / done.saturating_duration_since(started).as_secs_f64())
    }

    /// End-to-end delivery throughput.
    pub async fn e2e(&mut self) -> Result<()> {
        let (daemon, _) = BenchDaemon::start(&self.work_dir, &[self.endpoint("bench")]).await?;
        let idle = daemon.memory()?;
        let n = self.sizes.e2e;
        let rate = self.delivery_run(&daemon, "bench", n).await?;
        self.report.push(
            Figure::new(E2E, rate, "/s")
                .against("HTTP ceiling", self.report.value(HTTP_CEILING))
                .target(Target::RatioAtLeast(0.6))
                .note(format!(
                    "{n} messages enqueued while paused; from the resume to the last new webhook-id"
                )),
        );
        // The peak of the path the latency phase measures: each message enqueued on its own *and*
        // delivered, both at once, on the same two CPUs.
        let n = self.sizes.pipeline;
        self.receiver.reset();
        let started = Instant::now();
        enqueue_singles(&daemon, self.bodies.single("bench"), n, CLIENTS).await?;
        let done = self.receiver.wait_distinct(n, delivery_deadline(n)).await?;
        let rate = n as f64 / done.saturating_duration_since(started).as_secs_f64();
        self.report.push(
            Figure::new(PIPELINE, rate, "/s")
                .against("single enqueue", self.report.value(ENQ_SINGLE))
                .note(format!(
                    "{n} single enqueues by {CLIENTS} clients while the endpoint delivers; from the first \
                     send to the last new webhook-id"
                )),
        );
        let now = daemon.memory()?;
        self.peak_rss("e2e", idle, now);
        stop(daemon).await
    }

    /// Enqueue-to-delivery latency of single enqueues paced at half the peak rate of their path: half the rate
    /// at which single enqueues are taken *and* delivered at once (the end-to-end phase measures it). When
    /// the lower of the two separate peaks (single enqueues alone, delivery alone) is well above that, a
    /// second run paces at half of it too; its figures are reported without a target
    /// (docs/performance/method.md, "The latency phase's rate").
    pub async fn latency(&mut self) -> Result<()> {
        let separate = match (self.report.value(ENQ_SINGLE), self.report.value(E2E)) {
            (Some(single), Some(e2e)) => Some(single.min(e2e) / 2.0),
            (single, e2e) => single.or(e2e).map(|peak| peak / 2.0),
        };
        let (rate, rate_note) = match (self.report.value(PIPELINE), separate) {
            (Some(pipeline), _) => (
                pipeline / 2.0,
                "half the rate of single enqueues taken and delivered at once",
            ),
            (None, Some(separate)) => (separate, "half the lower separate peak"),
            (None, None) => (1_000.0, "no peak was measured"),
        };
        let (daemon, _) = BenchDaemon::start(&self.work_dir, &[self.endpoint("bench")]).await?;
        let idle = daemon.memory()?;
        let body = self.bodies.single("bench");
        // Warm up: the daemon opens its connections to the receiver.
        self.receiver.reset();
        let warm_up = 2 * ENDPOINT_CONCURRENCY;
        enqueue_singles(&daemon, body.clone(), warm_up, CLIENTS).await?;
        self.receiver
            .wait_distinct(warm_up, delivery_deadline(warm_up))
            .await?;

        let run = self.paced(&daemon, rate).await?;
        if let Some(path) = &self.latency_trace {
            run.write_trace(path)?;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        self.report.push(
            Figure::new(LAT_P50, ms(run.latency(0.50)), "ms")
                .against("HTTP p50", self.report.value(HTTP_P50))
                .note(format!(
                    "{} single enqueues paced at {rate:.0}/s ({rate_note}) over {LATENCY_CLIENTS} \
                     connections; {}",
                    run.sent.len(),
                    run.achieved_note(rate)
                )),
        );
        self.report.push(
            Figure::new(LAT_P99, ms(run.latency(0.99)), "ms")
                .against("HTTP p99", self.report.value(HTTP_P99))
                .target(Target::Below(10.0)),
        );
        // The part of the latency spent before the daemon answered the enqueue (its durable commit).
        self.report.push(
            Figure::new(ACK_P50, ms(run.acknowledgement(0.50)), "ms")
                .against("delivery p50", Some(ms(run.latency(0.50)))),
        );
        self.report.push(
            Figure::new(ACK_P99, ms(run.acknowledgement(0.99)), "ms")
                .against("delivery p99", Some(ms(run.latency(0.99)))),
        );
        if let Some(separate) = separate.filter(|separate| *separate > 1.1 * rate) {
            let p99 = ms(run.latency(0.99));
            let run = self.paced(&daemon, separate).await?;
            self.report.push(
                Figure::new(LAT_P99_SEPARATE, ms(run.latency(0.99)), "ms")
                    .against("p99 at the pipeline's half", Some(p99))
                    .note(format!(
                        "{} single enqueues paced at {separate:.0}/s, half the lower of the single-enqueue \
                         and end-to-end rates measured apart; p50 {:.2} ms; {}; no target",
                        run.sent.len(),
                        ms(run.latency(0.50)),
                        run.achieved_note(separate)
                    )),
            );
        }
        let now = daemon.memory()?;
        self.peak_rss("latency", idle, now);
        stop(daemon).await
    }

    /// Single enqueues for `latency_secs` at `rate` a second (at most `latency_max` of them), each timed from
    /// its send to its arrival at the receiver.
    async fn paced(&self, daemon: &BenchDaemon, rate: f64) -> Result<PacedRun> {
        let n = ((rate * self.sizes.latency_secs) as usize).clamp(100, self.sizes.latency_max);
        let body = self.bodies.single("bench");
        self.receiver.reset();
        // Message i is sent at start + i × interval by whichever client is free (the send time is taken
        // just before the request, so a client that falls behind adds no waiting of its own).
        let clients = SocketClient::connect_many(&daemon.socket, LATENCY_CLIENTS).await?;
        let next = Arc::new(AtomicUsize::new(0));
        let interval = Duration::from_secs_f64(1.0 / rate);
        let start = tokio::time::Instant::now() + Duration::from_millis(20);
        let mut tasks = tokio::task::JoinSet::new();
        for mut client in clients {
            let (next, body) = (Arc::clone(&next), body.clone());
            tasks.spawn(async move {
                let mut sent = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return anyhow::Ok(sent);
                    }
                    tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
                    let at = Instant::now();
                    let id = client.enqueue(body.clone()).await?;
                    sent.push(Sent {
                        id,
                        at,
                        acknowledged_after: at.elapsed(),
                    });
                }
            });
        }
        let mut sent = Vec::with_capacity(n);
        while let Some(done) = tasks.join_next().await {
            sent.extend(done??);
        }
        sent.sort_by_key(|s| s.at);
        if sent.is_empty() {
            bail!("nothing was sent");
        }
        self.receiver.wait_distinct(n, delivery_deadline(n)).await?;
        let arrivals = self.receiver.arrivals();
        let mut latencies = Vec::with_capacity(n);
        for Sent { id, at, .. } in &sent {
            let arrived = arrivals
                .get(id)
                .with_context(|| format!("message {} never arrived", uuid::Uuid::from_u128(*id)))?;
            latencies.push(arrived.saturating_duration_since(*at));
        }
        Ok(PacedRun { sent, latencies })
    }
}

/// What one paced run of the latency phase saw, in send order.
struct PacedRun {
    sent: Vec<Sent>,
    /// Enqueue-to-delivery, one per message of `sent`.
    latencies: Vec<Duration>,
}

impl PacedRun {
    fn latency(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        percentile(&sorted, p)
    }

    fn acknowledgement(&self, p: f64) -> Duration {
        let mut sorted: Vec<Duration> = self.sent.iter().map(|s| s.acknowledged_after).collect();
        sorted.sort_unstable();
        percentile(&sorted, p)
    }

    /// The rate the sends reached, flagged when it fell behind the pace.
    fn achieved_note(&self, rate: f64) -> String {
        let (first, last) = (self.sent[0].at, self.sent[self.sent.len() - 1].at);
        let span = last.duration_since(first).as_secs_f64();
        let achieved = (self.sent.len() - 1) as f64 / span.max(1e-3);
        let behind = if achieved < 0.9 * rate {
            "; BEHIND: the daemon did not take single enqueues at this rate"
        } else {
            ""
        };
        format!("achieved {achieved:.0}/s{behind}")
    }

    /// Writes the run message by message, in send order: milliseconds from the first send to this one, its
    /// enqueue-to-delivery latency and its acknowledgement time. A p99 that misses shows there as a stall
    /// (many neighbours slow at once) or as a spread (docs/PERFORMANCE.md, "What limits each figure",
    /// "Latency").
    fn write_trace(&self, path: &std::path::Path) -> Result<()> {
        use std::fmt::Write as _;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let first = self.sent[0].at;
        let mut text = String::from("# sent_ms latency_ms acknowledged_ms\n");
        for (s, latency) in self.sent.iter().zip(&self.latencies) {
            let _ = writeln!(
                text,
                "{:.3} {:.3} {:.3}",
                ms(s.at.duration_since(first)),
                ms(*latency),
                ms(s.acknowledged_after)
            );
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

impl Bench {
    /// A large backlog for a paused endpoint: memory, disk, and the restart to the first delivery.
    pub async fn queued(&mut self) -> Result<()> {
        let n = self.sizes.queued;
        let (mut daemon, _) = BenchDaemon::start(&self.work_dir, &[self.endpoint("bench")]).await?;
        let idle = daemon.memory()?;
        control(&daemon, "bench", "pause").await?;
        let took = enqueue_batches(&daemon, &self.bodies, "bench", n, BATCH_CLIENTS).await?;
        let memory = daemon.memory()?;
        let (apparent, allocated) = daemon.data_size()?;
        let payloads = (n * self.bodies.payload.len()) as f64;
        self.report.push(
            Figure::new(Q_ENQ, n as f64 / took.as_secs_f64(), "/s")
                .against("batch enqueue", self.report.value(ENQ_BATCH))
                .note(format!("{n} messages queued for a paused endpoint")),
        );
        self.report.push(
            Figure::new(Q_RSS, memory.rss as f64 / MIB, "MiB")
                .against("idle RSS", Some(idle.rss as f64 / MIB))
                .target(Target::AtMost(256.0))
                .note(format!(
                    "with {n} queued; sled_cache_bytes = {} MiB",
                    SLED_CACHE_BYTES >> 20
                )),
        );
        self.report.push(
            Figure::new(Q_HWM, memory.hwm as f64 / MIB, "MiB")
                .against("idle RSS", Some(idle.rss as f64 / MIB))
                .target(Target::AtMost(256.0)),
        );
        self.report.push(
            Figure::new(Q_DISK, apparent as f64 / MIB, "MiB")
                .against("payload bytes", Some(payloads / MIB))
                .note(format!(
                    "apparent size; {:.1} MiB allocated",
                    allocated as f64 / MIB
                )),
        );

        let status = daemon.terminate().await?;
        if !status.success() {
            bail!(
                "SIGTERM: the daemon exited with {status}; log:\n{}",
                daemon.log_tail()
            );
        }
        self.receiver.reset();
        let spawned_at = Instant::now();
        let serving_in = daemon.spawn().await?;
        // The pause is stored, so it outlived the restart.
        control(&daemon, "bench", "resume").await?;
        let first = self.receiver.wait_first(Duration::from_secs(180)).await?;
        let restart = first.saturating_duration_since(spawned_at);
        self.report.push(
            Figure::new(RESTART, restart.as_secs_f64(), "s")
                .against("empty start", self.report.value(FRESH_START))
                .target(Target::Below(5.0))
                .note(format!(
                    "spawn after SIGTERM to the first request at the receiver; serving after {:.2} s, \
                     then resumed",
                    serving_in.as_secs_f64()
                )),
        );
        // The restarted daemon has read the whole backlog back (the due index is rebuilt from the records).
        let restarted = daemon.memory()?;
        self.report.push(
            Figure::new(Q_HWM_RESTARTED, restarted.hwm as f64 / MIB, "MiB")
                .against("idle RSS", Some(idle.rss as f64 / MIB))
                .target(Target::AtMost(256.0))
                .note("peak from the restart to the first delivery"),
        );
        stop(daemon).await
    }

    /// The healthy endpoint's delivery rate alone, then beside an endpoint whose receiver hangs.
    pub async fn hanging(&mut self) -> Result<()> {
        let n = self.sizes.healthy;
        let endpoints = [
            self.endpoint("healthy"),
            EndpointSpec {
                timeout_ms: HANG_TIMEOUT_MS,
                ..EndpointSpec::new("stuck", self.hanging.url())
            },
        ];
        let (daemon, _) = BenchDaemon::start(&self.work_dir, &endpoints).await?;
        let alone = self.delivery_run(&daemon, "healthy", n).await?;
        stop(daemon).await?;

        let (daemon, _) = BenchDaemon::start(&self.work_dir, &endpoints).await?;
        let idle = daemon.memory()?;
        self.hanging.reset();
        enqueue_batches(&daemon, &self.bodies, "stuck", self.sizes.stuck, 1).await?;
        // Every permit of the stuck lane is taken by a request that will not be answered.
        self.hanging
            .wait_requests(ENDPOINT_CONCURRENCY as u64, Duration::from_secs(60))
            .await?;
        let beside = self.delivery_run(&daemon, "healthy", n).await?;
        self.report
            .push(Figure::new(HEALTHY_ALONE, alone, "/s").note(format!(
                "{n} messages, timed like the end-to-end figure; `stuck` configured but idle"
            )));
        self.report.push(
            Figure::new(HEALTHY_BESIDE, beside, "/s")
                .against("alone", Some(alone))
                .target(Target::RatioAtLeast(0.9))
                .note(format!(
                    "{} messages queued for `stuck`, {ENDPOINT_CONCURRENCY} of its requests hanging",
                    self.sizes.stuck
                )),
        );
        let now = daemon.memory()?;
        self.peak_rss("hanging neighbour", idle, now);
        stop(daemon).await
    }
}

/// Stops a phase's daemon with SIGTERM (so a profiler wrapping it can write its data), expecting a clean exit.
pub(crate) async fn stop(mut daemon: BenchDaemon) -> Result<()> {
    let status = daemon.terminate().await?;
    if !status.success() {
        bail!(
            "SIGTERM: the daemon exited with {status}; log:\n{}",
            daemon.log_tail()
        );
    }
    Ok(())
}

/// `POST /v1/endpoints/{endpoint}/{verb}` (pause or resume).
pub(crate) async fn control(daemon: &BenchDaemon, endpoint: &str, verb: &str) -> Result<()> {
    let mut client = SocketClient::connect(&daemon.socket).await?;
    if !client.control(endpoint, verb).await? {
        bail!("the daemon has no POST /v1/endpoints/{{name}}/{verb}; the backlog phases need it");
    }
    Ok(())
}

/// `n` single enqueues from `clients` connections; answers how long they took.
pub(crate) async fn enqueue_singles(
    daemon: &BenchDaemon,
    body: Bytes,
    n: usize,
    clients: usize,
) -> Result<Duration> {
    let connections = SocketClient::connect_many(&daemon.socket, clients).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in connections {
        let (next, body) = (Arc::clone(&next), body.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                client.enqueue(body.clone()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// `n` messages for `endpoint` in batches of [`BATCH_SIZE`] from `clients` connections; answers how long
/// they took.
pub(crate) async fn enqueue_batches(
    daemon: &BenchDaemon,
    bodies: &Bodies,
    endpoint: &str,
    n: usize,
    clients: usize,
) -> Result<Duration> {
    let connections = SocketClient::connect_many(&daemon.socket, clients).await?;
    let full = bodies.batch(endpoint, BATCH_SIZE);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in connections {
        let (next, full, bodies, endpoint) = (
            Arc::clone(&next),
            full.clone(),
            bodies.clone(),
            endpoint.to_owned(),
        );
        tasks.spawn(async move {
            loop {
                let first = next.fetch_add(BATCH_SIZE, Ordering::Relaxed);
                if first >= n {
                    return anyhow::Ok(());
                }
                let size = BATCH_SIZE.min(n - first);
                let body = if size == BATCH_SIZE {
                    full.clone()
                } else {
                    bodies.batch(&endpoint, size)
                };
                let queued = client.enqueue_batch(body).await?;
                if queued != size {
                    bail!("a batch of {size} answered {queued} results");
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// One single enqueue of the latency phase: its message id, when it was sent, and how long the daemon took
/// to acknowledge it (durably).
struct Sent {
    id: u128,
    at: Instant,
    acknowledged_after: Duration,
}
