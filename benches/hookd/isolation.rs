//! The isolation phase: a healthy endpoint's enqueue-to-delivery latency while another endpoint takes bulk
//! work (one large batch, every one of its dead letters replayed, then purged) and `/v1/stats` is polled in a
//! loop, against the same endpoint's latency with nothing else going on, in the same daemon.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hookd::store::StageCounts;
use hyper::{Method, StatusCode};

use crate::ceilings::percentile;
use crate::daemon::{BenchDaemon, EndpointSpec};
use crate::names::*;
use crate::phases::{Bench, delivery_deadline, stop};
use crate::report::{Figure, Target};
use crate::socket::SocketClient;

/// Single enqueues a second to the healthy endpoint, steady.
pub const ISOLATION_RATE: f64 = 100.0;
/// Connections the healthy endpoint's enqueues go out on (each waits for its answer).
const PACED_CLIENTS: usize = 4;

/// One paced enqueue: its id, when it was sent and how long its acknowledgement (the 202) took.
pub(crate) struct Sent {
    pub id: u128,
    pub at: Instant,
    pub acknowledged_after: Duration,
}

impl Bench {
    pub async fn isolation(&mut self) -> Result<()> {
        let n = self.sizes.bulk;
        let quiet_for = Duration::from_secs_f64(self.sizes.isolation_quiet_secs);
        let endpoints = [
            EndpointSpec::new("healthy", self.receiver.url()),
            EndpointSpec::new("bulk", self.refusing.url()),
        ];
        // The bulk endpoint's batch is one request: the limits are raised to let it in.
        let top_level = format!(
            "max_batch_messages = {}\nmax_batch_bytes = {}",
            n.max(10_000),
            (n * 512).max(16 << 20)
        );
        let (daemon, _) =
            BenchDaemon::start_configured(&self.work_dir, &endpoints, &top_level, "").await?;
        let idle = daemon.memory()?;
        self.receiver.reset();
        self.refusing.reset();

        let stop_pacing = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let pacer = tokio::spawn(pace(
            daemon.socket.clone(),
            self.bodies.single("healthy"),
            Arc::clone(&stop_pacing),
        ));
        tokio::time::sleep(quiet_for).await;
        let busy_from = Instant::now();

        // `/v1/stats` in a loop, for as long as the bulk work goes on.
        let stop_polling = Arc::new(AtomicBool::new(false));
        let poller = tokio::spawn(poll_stats(daemon.socket.clone(), Arc::clone(&stop_polling)));
        let bulk = async {
            let mut client = SocketClient::connect(&daemon.socket).await?;
            let body = self.bodies.batch("bulk", n);
            let batch_at = Instant::now();
            let queued = client.enqueue_batch(body).await?;
            if queued != n {
                bail!("the bulk batch answered {queued} results for {n}");
            }
            let batch_took = batch_at.elapsed();
            wait_dead(&mut client, n as u64).await?;
            let replay_at = Instant::now();
            let replayed = bulk_call(&mut client, "/v1/dlq/replay", "replayed").await?;
            let replay_took = replay_at.elapsed();
            if replayed != n as u64 {
                bail!("replay --all replayed {replayed} of {n}");
            }
            wait_dead(&mut client, n as u64).await?;
            let purge_at = Instant::now();
            let purged = bulk_call(&mut client, "/v1/dlq/purge", "purged").await?;
            let purge_took = purge_at.elapsed();
            if purged != n as u64 {
                bail!("purge --all purged {purged} of {n}");
            }
            anyhow::Ok((batch_took, replay_took, purge_took))
        }
        .await;
        let busy_until = Instant::now();
        stop_polling.store(true, Ordering::Relaxed);
        stop_pacing.store(true, Ordering::Relaxed);
        let polls = poller.await??;
        let sent = pacer.await??;
        let (batch_took, replay_took, purge_took) = bulk?;

        self.receiver
            .wait_distinct(sent.len(), delivery_deadline(sent.len()))
            .await?;
        let arrivals = self.receiver.arrivals();
        let quiet = latencies_between(&sent, &arrivals, started, busy_from)?;
        let busy = latencies_between(&sent, &arrivals, busy_from, busy_until)?;
        if quiet.is_empty() || busy.is_empty() {
            bail!(
                "too few paced messages: {} quiet, {} busy",
                quiet.len(),
                busy.len()
            );
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        // How much of each latency is the enqueue's own commit: the acknowledgement's p50 / p99.
        let acks = |from, until| {
            let acks = acks_between(&sent, from, until);
            format!(
                "acknowledgement p50 / p99 {:.2} / {:.2} ms",
                ms(percentile(&acks, 0.5)),
                ms(percentile(&acks, 0.99))
            )
        };
        let quiet_p99 = ms(percentile(&quiet, 0.99));
        let busy_p99 = ms(percentile(&busy, 0.99));
        self.report.push(
            Figure::new(ISO_QUIET, quiet_p99, "ms").note(format!(
                "{} single enqueues at {ISOLATION_RATE}/s over {:.1} s, nothing else going on; p50 {:.2} ms; {}",
                quiet.len(),
                busy_from.duration_since(started).as_secs_f64(),
                ms(percentile(&quiet, 0.5)),
                acks(started, busy_from)
            )),
        );
        self.report.push(
            Figure::new(ISO_BUSY, busy_p99, "ms")
                .against("quiet", Some(quiet_p99))
                .target(Target::RatioAtMost(2.0))
                .note(format!(
                    "{} enqueues over {:.1} s while `bulk` took a {n}-message batch ({:.2} s), {n} dead letters \
                     replayed ({:.2} s) and purged ({:.2} s), and /v1/stats answered {polls} times; p50 {:.2} ms, \
                     max {:.2} ms; {}",
                    busy.len(),
                    busy_until.duration_since(busy_from).as_secs_f64(),
                    batch_took.as_secs_f64(),
                    replay_took.as_secs_f64(),
                    purge_took.as_secs_f64(),
                    ms(percentile(&busy, 0.5)),
                    ms(percentile(&busy, 1.0)),
                    acks(busy_from, busy_until),
                )),
        );
        let now = daemon.memory()?;
        self.peak_rss("isolation", idle, now);
        stop(daemon).await
    }
}

/// Single enqueues to the healthy endpoint at [`ISOLATION_RATE`] until `stop`; message i is sent at
/// start + i / rate by whichever connection is free. Answers them in send order.
pub(crate) async fn pace(
    socket: std::path::PathBuf,
    body: Bytes,
    stop: Arc<AtomicBool>,
) -> Result<Vec<Sent>> {
    let clients = SocketClient::connect_many(&socket, PACED_CLIENTS).await?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let interval = Duration::from_secs_f64(1.0 / ISOLATION_RATE);
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients {
        let (next, body, stop) = (Arc::clone(&next), body.clone(), Arc::clone(&stop));
        tasks.spawn(async move {
            let mut sent = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
                if stop.load(Ordering::Relaxed) {
                    return anyhow::Ok(sent);
                }
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
    let mut sent = Vec::new();
    while let Some(done) = tasks.join_next().await {
        sent.extend(done??);
    }
    sent.sort_by_key(|s| s.at);
    Ok(sent)
}

/// The acknowledgement times of the paced messages sent in [`from`, `until`), sorted.
pub(crate) fn acks_between(sent: &[Sent], from: Instant, until: Instant) -> Vec<Duration> {
    let mut acks: Vec<Duration> = sent
        .iter()
        .filter(|s| s.at >= from && s.at < until)
        .map(|s| s.acknowledged_after)
        .collect();
    acks.sort();
    acks
}

/// The enqueue-to-delivery latencies of the paced messages sent in [`from`, `until`), sorted; fails when
/// one of them never arrived.
pub(crate) fn latencies_between(
    sent: &[Sent],
    arrivals: &HashMap<u128, Instant>,
    from: Instant,
    until: Instant,
) -> Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    for Sent { id, at, .. } in sent.iter().filter(|s| s.at >= from && s.at < until) {
        let arrived = arrivals
            .get(id)
            .with_context(|| format!("message {} never arrived", uuid::Uuid::from_u128(*id)))?;
        latencies.push(arrived.saturating_duration_since(*at));
    }
    latencies.sort();
    Ok(latencies)
}

/// `GET /v1/stats` back to back until `stop`; answers how many were answered.
async fn poll_stats(socket: std::path::PathBuf, stop: Arc<AtomicBool>) -> Result<u64> {
    let mut client = SocketClient::connect(&socket).await?;
    let mut polls = 0;
    while !stop.load(Ordering::Relaxed) {
        let (status, body) = client.call(Method::GET, "/v1/stats", Bytes::new()).await?;
        if status != StatusCode::OK {
            bail!(
                "/v1/stats answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        polls += 1;
    }
    Ok(polls)
}

/// Waits until the store counts `n` dead letters for `bulk` and none of its messages queued or in flight.
/// (The totals would include the healthy endpoint's paced messages, of which one may be queued at any time.)
async fn wait_dead(client: &mut SocketClient, n: u64) -> Result<()> {
    let deadline = Instant::now() + delivery_deadline(n as usize);
    loop {
        let (bulk, by_endpoint) = endpoint_counts(client, "bulk").await?;
        if bulk.dead == n && bulk.queued == 0 && bulk.in_flight == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{n} dead letters expected for `bulk`; stats: {by_endpoint}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /v1/stats`: `endpoint`'s own counts (all zero while it has no messages), and the whole `by_endpoint`
/// object for error messages. Phases that pace messages to another endpoint wait on these, never on the
/// totals: a paced message may be queued or in flight at any poll.
pub(crate) async fn endpoint_counts(
    client: &mut SocketClient,
    endpoint: &str,
) -> Result<(StageCounts, serde_json::Value)> {
    let (status, body) = client.call(Method::GET, "/v1/stats", Bytes::new()).await?;
    if status != StatusCode::OK {
        bail!(
            "/v1/stats answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let mut stats: serde_json::Value = serde_json::from_slice(&body)?;
    let by_endpoint = stats["by_endpoint"].take();
    let own = match by_endpoint.get(endpoint) {
        Some(counts) => serde_json::from_value(counts.clone())
            .with_context(|| format!("/v1/stats: `{endpoint}` has counts {counts}"))?,
        None => StageCounts::default(),
    };
    Ok((own, by_endpoint))
}

/// `POST` of `{"all": true}` to a DLQ verb; answers the count it reports under `key`.
async fn bulk_call(client: &mut SocketClient, path: &str, key: &str) -> Result<u64> {
    let (status, body) = client
        .call(Method::POST, path, Bytes::from_static(br#"{"all":true}"#))
        .await?;
    if status != StatusCode::OK {
        bail!(
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    answer[key]
        .as_u64()
        .with_context(|| format!("{path} answered without `{key}`: {answer}"))
}
