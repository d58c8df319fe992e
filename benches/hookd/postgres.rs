//! The PostgreSQL phases: the daemon on the PostgreSQL backend (`[store] url`) of a throwaway cluster on the
//! same machine (`tests/support/postgres_cluster.rs`: started on first use, deleted when the bench exits).
//!
//! `postgres`: end-to-end delivery of a backlog spread over [`PG_ENDPOINTS`] endpoints with one node, then
//! with two nodes on one database (each node resumes half of the endpoints, so each lane's lease in
//! `hookd_owners` is taken by the node that resumed it); the statements per delivered message over each run
//! (pg_stat_statements, else transactions from pg_stat_database); then on the one node the peak of single
//! enqueues taken and delivered at once, and the enqueue-to-delivery latency paced at half of it.
//!
//! `postgres-soak` (opt in): one node under a steady paced load for `--soak-secs`, sampling `n_dead_tup` of
//! `hookd_messages` every 30 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use sqlx::{Connection as _, PgConnection};

use crate::ceilings::percentile;
use crate::daemon::{BenchDaemon, EndpointSpec, cpu_of};
use crate::endpoints::send_batches;
use crate::names::*;
use crate::phases::{
    BATCH_CLIENTS, BATCH_SIZE, Bench, CLIENTS, LATENCY_CLIENTS, control, delivery_deadline, stop,
};
use crate::postgres_cluster::{self, PgCluster};
use crate::report::{Figure, Target};
use crate::socket::SocketClient;

/// The endpoints the load is spread over: one endpoint's lane runs on one node at a time.
pub const PG_ENDPOINTS: [&str; 8] = [
    "pg-0", "pg-1", "pg-2", "pg-3", "pg-4", "pg-5", "pg-6", "pg-7",
];
/// Requests in flight per endpoint: 8 × 8 = 64 in all, 32 per node with two nodes.
pub const PG_CONCURRENCY: usize = 8;
/// How often the soak samples `pg_stat_user_tables`.
const SOAK_SAMPLE: Duration = Duration::from_secs(30);
/// The soak's pace when neither `--soak-rate` nor a measured peak sets it.
const SOAK_DEFAULT_RATE: f64 = 2_000.0;
/// Messages per batch of the soak's load (round robin over the endpoints).
const SOAK_BATCH: usize = 20;
/// How long after the last delivery every outcome must be recorded: beyond a claim's lifetime and the
/// reaper's interval, so that a message whose outcome was lost is delivered again (a repeat) within it.
const RECORDED_WITHIN: Duration = Duration::from_secs(60);
/// Marks the bench's own statements, which the statement counts leave out.
const TAG: &str = "/* hookd-bench */";

/// What the database counted over a window.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    /// Statements (pg_stat_statements' calls, every statement of the database but the bench's own), or
    /// committed transactions when the extension is missing.
    statements: f64,
}

/// The bench's connection to the daemon's database, for its statistics.
struct Stats {
    conn: PgConnection,
    /// pg_stat_statements is loaded: statements are counted; else transactions (pg_stat_database).
    statements: bool,
}

impl Stats {
    async fn connect(cluster: &PgCluster, url: &str) -> Result<Stats> {
        let mut conn = PgConnection::connect(url)
            .await
            .context("connecting to the bench database")?;
        let mut statements = false;
        if cluster.has_pg_stat_statements() {
            sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .execute(&mut conn)
                .await
                .context("CREATE EXTENSION pg_stat_statements")?;
            statements = true;
        }
        Ok(Stats { conn, statements })
    }

    fn what(&self) -> &'static str {
        if self.statements {
            "statements (pg_stat_statements calls, BEGIN/COMMIT included)"
        } else {
            "transactions (pg_stat_database xact_commit; pg_stat_statements is not installed)"
        }
    }

    async fn reset(&mut self) -> Result<()> {
        if self.statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "SELECT pg_stat_statements_reset() {TAG}"
            )))
            .execute(&mut self.conn)
            .await?;
        }
        Ok(())
    }

    /// The running count since the last reset (statements), or since the cluster started (transactions).
    async fn counts(&mut self) -> Result<Counts> {
        if self.statements {
            let calls: Option<f64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT sum(calls)::float8 FROM pg_stat_statements {TAG}
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND query NOT LIKE '%hookd-bench%'"
            )))
            .fetch_one(&mut self.conn)
            .await?;
            Ok(Counts {
                statements: calls.unwrap_or(0.0),
            })
        } else {
            // The other backends report their counts at most once a second.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            let commits: f64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT xact_commit::float8 FROM pg_stat_database {TAG} WHERE datname = current_database()"
            )))
            .fetch_one(&mut self.conn)
            .await?;
            Ok(Counts {
                statements: commits,
            })
        }
    }

    /// The statements that took the most time since the reset, one line each.
    async fn top(&mut self, n: i64) -> Result<Vec<String>> {
        if !self.statements {
            return Ok(Vec::new());
        }
        let rows: Vec<(f64, f64, f64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT calls::float8, total_exec_time, mean_exec_time, rows, query FROM pg_stat_statements {TAG}
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT LIKE '%hookd-bench%'
             ORDER BY total_exec_time DESC LIMIT $1"
        )))
        .bind(n)
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(calls, total, mean, rows, query)| {
                let query: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
                let short: String = query.chars().take(110).collect();
                format!("{calls:>8.0} calls {total:>9.1} ms total {mean:>7.3} ms mean {rows:>8} rows  {short}")
            })
            .collect())
    }

    /// Messages the database records as delivered.
    async fn delivered(&mut self) -> Result<i64> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM hookd_messages {TAG} WHERE stage = 'delivered'"
        )))
        .fetch_one(&mut self.conn)
        .await?)
    }

    /// Lanes held per node now (`hookd_owners`).
    async fn owners(&mut self) -> Result<Vec<i64>> {
        let rows: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM hookd_owners {TAG} GROUP BY owner ORDER BY count(*) DESC"
        )))
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    /// `n_dead_tup`, `n_live_tup` and the autovacuum count of `hookd_messages`.
    async fn dead_tuples(&mut self) -> Result<(i64, i64, i64)> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT n_dead_tup, n_live_tup, autovacuum_count FROM pg_stat_user_tables {TAG}
             WHERE relname = 'hookd_messages'"
        )))
        .fetch_one(&mut self.conn)
        .await?)
    }
}

/// CPU seconds (user + system) used so far by the daemons, by PostgreSQL (the postmaster and its children)
/// and by this bench process (its clients and receivers).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    daemons: f64,
    postgres: f64,
    bench: f64,
}

impl Cpu {
    fn now(cluster: &PgCluster, daemons: &[&BenchDaemon]) -> Cpu {
        let mut cpu = Cpu {
            bench: cpu_of("self").unwrap_or(0.0),
            ..Cpu::default()
        };
        for daemon in daemons {
            if let Ok(pid) = daemon.pid() {
                cpu.daemons += cpu_of(&pid.to_string()).unwrap_or(0.0);
            }
        }
        let postmaster = std::fs::read_to_string(cluster.dir().join("data/postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
            .unwrap_or_default();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let pid = entry.file_name().to_string_lossy().into_owned();
                if !pid.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                let parent = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned));
                if pid == postmaster || parent.as_deref() == Some(postmaster.as_str()) {
                    cpu.postgres += cpu_of(&pid).unwrap_or(0.0);
                }
            }
        }
        cpu
    }

    fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            daemons: self.daemons - earlier.daemons,
            postgres: self.postgres - earlier.postgres,
            bench: self.bench - earlier.bench,
        }
    }

    fn note(self, seconds: f64) -> String {
        format!(
            "CPU over the window ({seconds:.1} s): hookd {:.1} s, PostgreSQL {:.1} s, bench clients+receiver {:.1} s",
            self.daemons, self.postgres, self.bench
        )
    }
}

/// One delivery run's figures.
struct Run {
    enqueue_rate: f64,
    delivery_rate: f64,
    /// Statements (or transactions) per delivered message: the whole life (enqueue and delivery), and the
    /// delivery window alone.
    per_message: f64,
    per_message_delivering: f64,
    top: Vec<String>,
    cpu: String,
    owners: Vec<i64>,
    /// Requests beyond one per message, counted once the database recorded every message delivered.
    repeats: u64,
    /// From the last new webhook-id until the database recorded every message delivered.
    recorded_after: Duration,
}

impl Bench {
    fn pg_endpoints(&self) -> Vec<EndpointSpec> {
        PG_ENDPOINTS
            .iter()
            .map(|name| EndpointSpec {
                concurrency: PG_CONCURRENCY,
                ..EndpointSpec::new(name, self.receiver.url())
            })
            .collect()
    }

    /// A daemon on the database at `url`, named `node`.
    async fn pg_daemon(&self, url: &str, node: &str) -> Result<BenchDaemon> {
        let store = format!("[store]\nurl = {url:?}\nnode_name = {node:?}\n");
        let (daemon, _) =
            BenchDaemon::start_with(&self.work_dir, &self.pg_endpoints(), &store).await?;
        Ok(daemon)
    }

    pub async fn postgres(&mut self) -> Result<()> {
        let cluster = start_cluster().await?;
        let n = self.sizes.pg_messages;

        // One node.
        let url = cluster.fresh_database().await;
        let daemon = self.pg_daemon(&url, "bench-a").await?;
        let mut stats = Stats::connect(cluster, &url).await?;
        let counted = stats.what();
        let one = self.pg_delivery(cluster, &mut stats, &[&daemon], n).await?;
        println!("   1 node: top statements by total time over the run:");
        for line in &one.top {
            println!("     {line}");
        }
        let http = self.report.value(HTTP_CEILING);
        let sled = self.report.value(E2E);
        self.report.push(
            Figure::new(PG_ENQ, one.enqueue_rate, "/s")
                .against("sled batch enqueue", self.report.value(ENQ_BATCH))
                .note(format!(
                    "{n} messages round robin over {} endpoints (paused), batches of {BATCH_SIZE} by \
                     {BATCH_CLIENTS} clients",
                    PG_ENDPOINTS.len()
                )),
        );
        self.report.push(
            Figure::new(PG_E2E_ONE, one.delivery_rate, "/s")
                .against("sled end-to-end", sled)
                .target(Target::AtLeast(10_000.0))
                .note(format!(
                    "{n} messages over {} endpoints (concurrency {PG_CONCURRENCY} each) enqueued while paused; \
                     from the resume to the last new webhook-id; {}",
                    PG_ENDPOINTS.len(),
                    one.cpu
                )),
        );
        self.report.push(
            Figure::new(PG_E2E_ONE_HTTP, one.delivery_rate, "/s")
                .against("HTTP ceiling", http)
                .note("the same figure against the HTTP ceiling"),
        );
        self.report.push(
            Figure::new(PG_STMTS_ONE, one.per_message, "")
                .against("delivery window alone", Some(one.per_message_delivering))
                .target(Target::AtMost(3.0))
                .note(format!(
                    "{counted} of the database over the enqueue and the delivery of the {n}, / {n}; \
                     background statements (heartbeat, reaper, tally folding) included"
                )),
        );

        self.push_repeats(PG_REPEATS_ONE, &one, n);

        // The peak of single enqueues taken and delivered at once, then the latency at half of it.
        let pipeline_n = self.sizes.pg_pipeline;
        let bodies: Vec<Bytes> = PG_ENDPOINTS.iter().map(|e| self.bodies.single(e)).collect();
        self.receiver.reset();
        let started = Instant::now();
        singles_round_robin(&daemon, &bodies, pipeline_n, CLIENTS).await?;
        let done = self
            .receiver
            .wait_distinct(pipeline_n, delivery_deadline(pipeline_n))
            .await?;
        let pipeline = pipeline_n as f64 / done.saturating_duration_since(started).as_secs_f64();
        self.report.push(
            Figure::new(PG_PIPELINE, pipeline, "/s")
                .against("sled, same figure", self.report.value(PIPELINE))
                .note(format!(
                    "{pipeline_n} single enqueues by {CLIENTS} clients, round robin over the endpoints, while \
                     they deliver; first send to the last new webhook-id"
                )),
        );
        let rate = pipeline / 2.0;
        let secs = self.sizes.latency_secs;
        let count = ((rate * secs) as usize).clamp(100, self.sizes.latency_max);
        let run = paced(&self.receiver, &daemon, &bodies, rate, count).await?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        self.report.push(
            Figure::new(PG_LAT_P50, ms(run.latency(0.50)), "ms")
                .against("sled latency p50", self.report.value(LAT_P50))
                .note(format!(
                    "{count} single enqueues paced at {rate:.0}/s (half the rate above) over \
                     {LATENCY_CLIENTS} connections, round robin over the endpoints; {}; acknowledgement \
                     p50 / p99 {:.2} / {:.2} ms",
                    run.achieved_note(rate),
                    ms(run.acknowledgement(0.50)),
                    ms(run.acknowledgement(0.99)),
                )),
        );
        self.report.push(
            Figure::new(PG_LAT_P99, ms(run.latency(0.99)), "ms")
                .against("sled latency p99", self.report.value(LAT_P99))
                .target(Target::Below(50.0)),
        );
        stop(daemon).await?;
        drop(stats);

        // Two nodes on one database.
        let url = cluster.fresh_database().await;
        let a = self.pg_daemon(&url, "bench-a").await?;
        let b = self.pg_daemon(&url, "bench-b").await?;
        let mut stats = Stats::connect(cluster, &url).await?;
        let two = self.pg_delivery(cluster, &mut stats, &[&a, &b], n).await?;
        println!("   2 nodes: top statements by total time over the run:");
        for line in &two.top {
            println!("     {line}");
        }
        self.report.push(
            Figure::new(PG_E2E_TWO, two.delivery_rate, "/s")
                .against("1 node", Some(one.delivery_rate))
                .note(format!(
                    "the same {n} messages enqueued half through each node; each node resumes half of the \
                     endpoints; lanes per node during the run: {:?}; {}",
                    two.owners, two.cpu
                )),
        );
        self.report.push(
            Figure::new(PG_STMTS_TWO, two.per_message, "")
                .against("1 node", Some(one.per_message))
                .note(format!(
                    "{counted}, both nodes, / {n}; delivery window alone {:.2}",
                    two.per_message_delivering
                )),
        );
        self.push_repeats(PG_REPEATS_TWO, &two, n);
        stop(b).await?;
        stop(a).await
    }

    fn push_repeats(&mut self, name: &'static str, run: &Run, n: usize) {
        self.report.push(
            Figure::new(name, run.repeats as f64, "")
                .target(Target::AtMost(0.0))
                .note(format!(
                    "requests beyond one per message of the {n}, counted once the database recorded all {n} \
                     delivered ({:.0} ms after the last one arrived)",
                    run.recorded_after.as_secs_f64() * 1e3
                )),
        );
    }

    /// `n` messages round robin over the endpoints, enqueued while they are paused (through each daemon in
    /// turn), then delivered: each daemon resumes its share of the endpoints.
    async fn pg_delivery(
        &mut self,
        cluster: &PgCluster,
        stats: &mut Stats,
        daemons: &[&BenchDaemon],
        n: usize,
    ) -> Result<Run> {
        for endpoint in PG_ENDPOINTS {
            control(daemons[0], endpoint, "pause").await?;
        }
        // Let the other nodes hear of the pauses.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let names: Vec<String> = PG_ENDPOINTS.iter().map(|e| (*e).to_owned()).collect();
        let order: Vec<String> = (0..n).map(|i| names[i % names.len()].clone()).collect();
        let bodies: Vec<Bytes> = order
            .chunks(BATCH_SIZE)
            .map(|chunk| self.bodies.spread(chunk))
            .collect();
        let mut shares: Vec<Vec<Bytes>> = vec![Vec::new(); daemons.len()];
        for (i, body) in bodies.into_iter().enumerate() {
            shares[i % daemons.len()].push(body);
        }
        self.receiver.reset();
        stats.reset().await?;
        let before = stats.counts().await?;
        let started = Instant::now();
        let clients = BATCH_CLIENTS.div_ceil(daemons.len());
        let mut shares = shares.into_iter();
        match daemons {
            [one] => send_batches(one, shares.next().unwrap_or_default(), clients).await?,
            [a, b] => {
                let (share_a, share_b) = (
                    shares.next().unwrap_or_default(),
                    shares.next().unwrap_or_default(),
                );
                tokio::try_join!(
                    send_batches(a, share_a, clients),
                    send_batches(b, share_b, clients)
                )?;
            }
            _ => bail!("one or two nodes"),
        }
        let enqueue_rate = n as f64 / started.elapsed().as_secs_f64();
        if self.receiver.requests() > 0 {
            bail!("a paused endpoint delivered");
        }
        let enqueued = stats.counts().await?;

        let cpu_before = Cpu::now(cluster, daemons);
        let started = Instant::now();
        for (i, endpoint) in PG_ENDPOINTS.iter().enumerate() {
            control(
                daemons[i * daemons.len() / PG_ENDPOINTS.len()],
                endpoint,
                "resume",
            )
            .await?;
        }
        let deadline = Instant::now() + delivery_deadline(n);
        while self.receiver.distinct() < n / 4 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let owners = stats.owners().await?;
        let done = self.receiver.wait_distinct(n, delivery_deadline(n)).await?;
        let took = done.saturating_duration_since(started).as_secs_f64();
        let cpu = Cpu::now(cluster, daemons).since(cpu_before);
        let delivered = stats.counts().await?;
        let top = stats.top(8).await?;
        // The receiver answers before the daemon records the outcome: wait for the outcomes, then count the
        // requests. An outcome that found its claim gone leaves its message in flight until the reaper gives
        // it back and it goes out again, so such a loss shows here as a repeat.
        let recorded_by = Instant::now() + RECORDED_WITHIN;
        while stats.delivered().await? < n as i64 {
            if Instant::now() > recorded_by {
                bail!(
                    "{} of {n} messages recorded delivered {RECORDED_WITHIN:?} after the last one arrived",
                    stats.delivered().await?
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let recorded_after = done.elapsed();
        let repeats = self.receiver.requests().saturating_sub(n as u64);
        Ok(Run {
            repeats,
            recorded_after,
            enqueue_rate,
            delivery_rate: n as f64 / took,
            per_message: (delivered.statements - before.statements) / n as f64,
            per_message_delivering: (delivered.statements - enqueued.statements) / n as f64,
            top,
            cpu: cpu.note(took),
            owners,
        })
    }

    /// One node under a steady load for `soak_secs`; `n_dead_tup` of `hookd_messages` every 30 s.
    pub async fn postgres_soak(&mut self) -> Result<()> {
        let cluster = start_cluster().await?;
        let secs = self.soak_secs;
        let (rate, rate_note) = match (self.soak_rate, self.report.value(PG_PIPELINE)) {
            (Some(rate), _) => (rate, "--soak-rate"),
            (None, Some(peak)) => (
                peak / 2.0,
                "half the postgres phase's enqueue-and-deliver peak",
            ),
            (None, None) => (SOAK_DEFAULT_RATE, "the default"),
        };
        let url = cluster.fresh_database().await;
        let daemon = self.pg_daemon(&url, "bench-soak").await?;
        let mut stats = Stats::connect(cluster, &url).await?;
        let names: Vec<String> = PG_ENDPOINTS.iter().map(|e| (*e).to_owned()).collect();
        let order: Vec<String> = (0..SOAK_BATCH)
            .map(|i| names[i % names.len()].clone())
            .collect();
        let body = self.bodies.spread(&order);
        self.receiver.reset();

        let interval = Duration::from_secs_f64(SOAK_BATCH as f64 / rate);
        let batches = (secs * rate / SOAK_BATCH as f64) as usize;
        let clients = SocketClient::connect_many(&daemon.socket, BATCH_CLIENTS).await?;
        let next = Arc::new(AtomicUsize::new(0));
        let start = tokio::time::Instant::now() + Duration::from_millis(20);
        let mut tasks = tokio::task::JoinSet::new();
        for mut client in clients {
            let (next, body) = (Arc::clone(&next), body.clone());
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= batches {
                        return anyhow::Ok(());
                    }
                    tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
                    client.enqueue_batch(body.clone()).await?;
                }
            });
        }
        let mut samples: Vec<(f64, i64, i64, i64)> = Vec::new();
        let begun = Instant::now();
        let mut sample_at = start + SOAK_SAMPLE;
        while begun.elapsed().as_secs_f64() < secs {
            tokio::time::sleep_until(sample_at).await;
            sample_at += SOAK_SAMPLE;
            let (dead, live, vacuums) = stats.dead_tuples().await?;
            let t = begun.elapsed().as_secs_f64();
            println!(
                "   {t:>5.0} s: n_dead_tup {dead}, n_live_tup {live}, autovacuums {vacuums}, delivered {}",
                self.receiver.distinct()
            );
            samples.push((t, dead, live, vacuums));
            if tasks
                .try_join_next()
                .is_some_and(|done| done.is_ok_and(|r| r.is_err()))
            {
                bail!("a soak client failed");
            }
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let total = batches * SOAK_BATCH;
        let done = self
            .receiver
            .wait_distinct(total, delivery_deadline(total))
            .await?;
        let lag = done.saturating_duration_since(begun).as_secs_f64() - secs;
        let Some(&(_, _, first_live, _)) = samples.first() else {
            bail!("the soak took no sample: --soak-secs {secs} is shorter than {SOAK_SAMPLE:?}");
        };
        let &(_, _, last_live, vacuums) = samples.last().unwrap_or(&samples[0]);
        // Autovacuum makes a sawtooth (dead rows pile up between its runs, at least a naptime apart): flat means
        // the peaks of the second half are no higher than those of the first, not that any one sample is low.
        let (early, late) = samples.split_at(samples.len().div_ceil(2));
        let peak = |part: &[(f64, i64, i64, i64)]| part.iter().map(|s| s.1).max();
        let early_peak = peak(early).unwrap_or(0);
        let late_peak = peak(late).unwrap_or(early_peak);
        let dead_share = samples
            .iter()
            .map(|s| s.1 as f64 / (s.1 + s.2).max(1) as f64)
            .fold(0.0, f64::max);
        let trace: Vec<String> = samples.iter().map(|s| s.1.to_string()).collect();
        self.report.push(
            Figure::new(PG_SOAK_LATE, late_peak as f64, "")
                .against("max of the first half", Some(early_peak as f64))
                .target(Target::RatioAtMost(2.0))
                .note(format!(
                    "{total} messages over {secs:.0} s at {rate:.0}/s ({rate_note}), batches of {SOAK_BATCH} \
                     round robin over {} endpoints; n_dead_tup of hookd_messages every {} s: {}; n_live_tup \
                     {first_live} -> {last_live}; {vacuums} autovacuums; all delivered {lag:.1} s after the last \
                     send window",
                    PG_ENDPOINTS.len(),
                    SOAK_SAMPLE.as_secs(),
                    trace.join(" ")
                )),
        );
        self.report.push(
            Figure::new(PG_SOAK_SHARE, dead_share * 100.0, "%").note(
                "the largest n_dead_tup / (n_dead_tup + n_live_tup) of any sample; no target",
            ),
        );
        stop(daemon).await
    }
}

/// The bench's PostgreSQL cluster, started on first use (initdb: a few seconds).
async fn start_cluster() -> Result<&'static PgCluster> {
    tokio::task::spawn_blocking(|| {
        std::panic::catch_unwind(postgres_cluster::cluster)
            .map_err(|_| anyhow::anyhow!("the PostgreSQL cluster could not be started (see above)"))
    })
    .await?
}

/// `n` single enqueues from `clients` connections, message i to `bodies[i % len]`.
async fn singles_round_robin(
    daemon: &BenchDaemon,
    bodies: &[Bytes],
    n: usize,
    clients: usize,
) -> Result<()> {
    let bodies = Arc::new(bodies.to_vec());
    let connections = SocketClient::connect_many(&daemon.socket, clients).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in connections {
        let (next, bodies) = (Arc::clone(&next), Arc::clone(&bodies));
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                client.enqueue(bodies[i % bodies.len()].clone()).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// One paced run: per message its send time, acknowledgement time and enqueue-to-delivery latency.
struct Paced {
    sent: Vec<Instant>,
    acknowledged: Vec<Duration>,
    latencies: Vec<Duration>,
}

impl Paced {
    fn latency(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        percentile(&sorted, p)
    }

    fn acknowledgement(&self, p: f64) -> Duration {
        let mut sorted = self.acknowledged.clone();
        sorted.sort_unstable();
        percentile(&sorted, p)
    }

    fn achieved_note(&self, rate: f64) -> String {
        let first = self.sent.iter().min().copied();
        let last = self.sent.iter().max().copied();
        let span = match (first, last) {
            (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
            _ => 0.0,
        };
        let achieved = (self.sent.len().saturating_sub(1)) as f64 / span.max(1e-3);
        let behind = if achieved < 0.9 * rate {
            "; BEHIND"
        } else {
            ""
        };
        format!("achieved {achieved:.0}/s{behind}")
    }
}

/// `n` single enqueues paced at `rate` a second (message i at start + i / rate, to `bodies[i % len]`), each
/// timed from its send to its first arrival at the receiver.
async fn paced(
    receiver: &crate::receiver::Receiver,
    daemon: &BenchDaemon,
    bodies: &[Bytes],
    rate: f64,
    n: usize,
) -> Result<Paced> {
    receiver.reset();
    let bodies = Arc::new(bodies.to_vec());
    let clients = SocketClient::connect_many(&daemon.socket, LATENCY_CLIENTS).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients {
        let (next, bodies) = (Arc::clone(&next), Arc::clone(&bodies));
        tasks.spawn(async move {
            let mut sent = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(sent);
                }
                tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
                let at = Instant::now();
                let id = client.enqueue(bodies[i % bodies.len()].clone()).await?;
                sent.push((id, at, at.elapsed()));
            }
        });
    }
    let mut sent = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        sent.extend(done??);
    }
    receiver.wait_distinct(n, delivery_deadline(n)).await?;
    let arrivals = receiver.arrivals();
    let mut run = Paced {
        sent: Vec::with_capacity(n),
        acknowledged: Vec::with_capacity(n),
        latencies: Vec::with_capacity(n),
    };
    for (id, at, acknowledged) in sent {
        let arrived = arrivals
            .get(&id)
            .with_context(|| format!("message {} never arrived", uuid::Uuid::from_u128(id)))?;
        run.sent.push(at);
        run.acknowledged.push(acknowledged);
        run.latencies.push(arrived.saturating_duration_since(at));
    }
    Ok(run)
}
