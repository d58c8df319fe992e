//! hookd's benchmark: the real daemon against baselines measured in the same run, on loopback.
//!
//! `cargo bench --bench hookd -- [--smoke] [--json PATH] [--only PHASE,...] [--work-dir DIR]
//! [--latency-trace PATH] [--soak-secs S] [--soak-rate R]`
//!
//! Baselines first (an HTTP ceiling with reqwest and a hyper receiver; sled with hookd's group commit), then
//! the `hookd` binary cargo built for this bench, spawned with its own temp config per phase: enqueue
//! throughput over the socket, end-to-end delivery, latency at half that rate, a large backlog for a paused
//! endpoint (RSS, disk, restart to first delivery), the cost of a hanging neighbour, and endpoint scale
//! (memory per idle endpoint, creation rate, start-up with many, delivery spread over many), isolation
//! (a healthy endpoint's latency beside another's bulk batch, replay and purge), the same latency beside
//! another endpoint's large backlog being worked off (`backlog`), and finding a page of one
//! endpoint's queued messages in a large queue (`list`), and the PostgreSQL backend on a throwaway cluster on
//! the same machine (`postgres`: one node and two, statements per message, latency; `postgres-soak`, only when
//! `--only` names it: dead tuples under a steady load for `--soak-secs`). Every figure is
//! printed with its baseline, the ratio, its target and pass/fail. A phase that fails (every wait has a
//! deadline) is reported and makes the exit code 1; a missed target does not. What each figure means:
//! docs/performance/method.md.

#[path = "hookd/backlog.rs"]
mod backlog;
#[path = "hookd/ceilings.rs"]
mod ceilings;
#[path = "hookd/daemon.rs"]
mod daemon;
#[path = "hookd/endpoints.rs"]
mod endpoints;
#[path = "hookd/isolation.rs"]
mod isolation;
#[path = "hookd/listing.rs"]
mod listing;
#[path = "hookd/phases.rs"]
mod phases;
#[path = "hookd/postgres.rs"]
mod postgres;
#[path = "../tests/support/postgres_cluster.rs"]
mod postgres_cluster;
#[path = "hookd/receiver.rs"]
mod receiver;
#[path = "hookd/report.rs"]
mod report;
#[path = "hookd/socket.rs"]
mod socket;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use daemon::{ENDPOINT_CONCURRENCY, SLED_CACHE_BYTES};
use names::*;
use phases::{BATCH_CLIENTS, BATCH_SIZE, Bench, CLIENTS, Sizes};
use receiver::Receiver;
use report::{Figure, Report, Target};
use socket::Bodies;

/// The figures' names, shared by the phases that measure them and the figures that compare with them.
mod names {
    pub const HTTP_CEILING: &str = "HTTP ceiling: reqwest -> receiver, 32 conns";
    pub const HTTP_P50: &str = "HTTP ceiling: round trip p50";
    pub const HTTP_P99: &str = "HTTP ceiling: round trip p99";
    pub const DUR_SINGLE: &str = "durability ceiling: sled, 1 record per commit wait";
    pub const DUR_BATCH: &str = "durability ceiling: sled, 250 records per commit wait";
    pub const FRESH_START: &str = "daemon start, empty store";
    pub const ENQ_SINGLE: &str = "enqueue: single, 32 clients";
    pub const ENQ_BATCH: &str = "enqueue: batches of 250, 4 clients";
    pub const E2E: &str = "end-to-end delivery";
    pub const PIPELINE: &str = "enqueue and deliver at once: single, 32 clients";
    pub const LAT_P50: &str = "enqueue-to-delivery latency p50";
    pub const LAT_P99: &str = "enqueue-to-delivery latency p99";
    pub const LAT_P99_SEPARATE: &str = "latency p99 at half the lower separate peak";
    pub const ACK_P50: &str = "enqueue acknowledgement p50";
    pub const ACK_P99: &str = "enqueue acknowledgement p99";
    pub const PEAK_RSS: &str = "daemon peak RSS (VmHWM)";
    pub const Q_ENQ: &str = "backlog: batch enqueue to a paused endpoint";
    pub const Q_RSS: &str = "backlog: daemon VmRSS";
    pub const Q_HWM: &str = "backlog: daemon VmHWM";
    pub const Q_HWM_RESTARTED: &str = "backlog: daemon VmHWM after the restart";
    pub const Q_DISK: &str = "backlog: data dir size";
    pub const RESTART: &str = "backlog: restart to first delivery";
    pub const HEALTHY_ALONE: &str = "healthy endpoint alone";
    pub const HEALTHY_BESIDE: &str = "healthy endpoint beside a hanging one";
    pub const EP_EMPTY_START: &str = "endpoints: start-up, empty store";
    pub const EP_CREATE: &str = "endpoints: create over the API, 32 clients";
    pub const EP_RSS: &str = "endpoints: daemon VmRSS with N idle endpoints";
    pub const EP_MEM: &str = "endpoints: memory per idle endpoint";
    pub const EP_START: &str = "endpoints: start-up with N endpoints";
    pub const EP_MEM_RESTARTED: &str = "endpoints: memory per idle endpoint after restart";
    pub const EP_ONE: &str = "endpoints: delivery to one endpoint";
    pub const EP_SPREAD: &str = "endpoints: delivery spread over many endpoints";
    pub const ISO_QUIET: &str = "isolation: healthy endpoint latency p99, quiet";
    pub const ISO_BUSY: &str = "isolation: healthy endpoint latency p99 beside bulk work";
    pub const BLN_QUIET: &str = "backlog neighbour: healthy endpoint latency p99, quiet";
    pub const BLN_BUSY: &str =
        "backlog neighbour: healthy endpoint latency p99 beside a draining backlog";
    pub const LIST_PAGE: &str = "list: a page of one endpoint's queued messages";
    pub const LIST_PAGE_MAX: &str = "list: slowest such page";
    pub const LIST_ANY: &str = "list: a page of every endpoint, any state";
    pub const LIST_HEALTH: &str = "list: GET /v1/health on the same daemon";
    pub const PG_ENQ: &str = "postgres: batch enqueue, 1 node";
    pub const PG_E2E_ONE: &str = "postgres: end-to-end delivery, 1 node";
    pub const PG_E2E_ONE_HTTP: &str = "postgres: end-to-end delivery, 1 node, vs HTTP";
    pub const PG_STMTS_ONE: &str = "postgres: statements per delivered message, 1 node";
    pub const PG_E2E_TWO: &str = "postgres: end-to-end delivery, 2 nodes";
    pub const PG_STMTS_TWO: &str = "postgres: statements per delivered message, 2 nodes";
    pub const PG_REPEATS_ONE: &str = "postgres: repeated deliveries, 1 node";
    pub const PG_REPEATS_TWO: &str = "postgres: repeated deliveries, 2 nodes";
    pub const PG_PIPELINE: &str = "postgres: enqueue and deliver at once, 1 node";
    pub const PG_LAT_P50: &str = "postgres: enqueue-to-delivery latency p50";
    pub const PG_LAT_P99: &str = "postgres: enqueue-to-delivery latency p99";
    pub const PG_SOAK_LATE: &str = "postgres soak: n_dead_tup, max of the second half";
    pub const PG_SOAK_SHARE: &str = "postgres soak: dead share of rows, max";
}

/// The figures with a target: when their phase failed they are listed as errors, so the table shows a FAIL.
const TARGETED: &[(&str, &str, Target)] = &[
    (ENQ_SINGLE, "/s", Target::AtLeast(10_000.0)),
    (ENQ_BATCH, "/s", Target::RatioAtLeast(0.5)),
    (E2E, "/s", Target::RatioAtLeast(0.6)),
    (LAT_P99, "ms", Target::Below(10.0)),
    (Q_RSS, "MiB", Target::AtMost(256.0)),
    (Q_HWM, "MiB", Target::AtMost(256.0)),
    (Q_HWM_RESTARTED, "MiB", Target::AtMost(256.0)),
    (RESTART, "s", Target::Below(5.0)),
    (HEALTHY_BESIDE, "/s", Target::RatioAtLeast(0.9)),
    (EP_CREATE, "/s", Target::AtLeast(2_000.0)),
    (EP_MEM, "KiB", Target::AtMost(2.0)),
    (EP_START, "s", Target::Below(5.0)),
    (EP_SPREAD, "/s", Target::RatioAtLeast(0.7)),
    (ISO_BUSY, "ms", Target::RatioAtMost(2.0)),
    (BLN_BUSY, "ms", Target::RatioAtMost(2.0)),
    (LIST_PAGE, "ms", Target::Below(50.0)),
    (PG_E2E_ONE, "/s", Target::AtLeast(10_000.0)),
    (PG_STMTS_ONE, "", Target::AtMost(3.0)),
    (PG_LAT_P99, "ms", Target::Below(50.0)),
    (PG_SOAK_LATE, "", Target::RatioAtMost(2.0)),
];

const PHASES: &[&str] = &[
    "ceiling",
    "durability",
    "enqueue",
    "e2e",
    "latency",
    "queued",
    "hanging",
    "endpoints",
    "isolation",
    "backlog",
    "list",
    "postgres",
    "postgres-soak",
];

/// Phases that run only when `--only` names them.
const OPT_IN: &[&str] = &["postgres-soak"];

struct Args {
    /// `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, and a bench is
    /// not a test: then nothing is measured.
    under_cargo_bench: bool,
    smoke: bool,
    json: Option<PathBuf>,
    only: Option<Vec<String>>,
    work_dir: PathBuf,
    latency_trace: Option<PathBuf>,
    soak_secs: f64,
    soak_rate: Option<f64>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        under_cargo_bench: false,
        smoke: false,
        json: None,
        only: None,
        work_dir: std::env::temp_dir(),
        latency_trace: None,
        soak_secs: 600.0,
        soak_rate: None,
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        match arg.as_str() {
            "--smoke" => args.smoke = true,
            "--json" => args.json = Some(given.next().context("--json needs a path")?.into()),
            "--work-dir" => args.work_dir = given.next().context("--work-dir needs a dir")?.into(),
            "--latency-trace" => {
                args.latency_trace =
                    Some(given.next().context("--latency-trace needs a path")?.into());
            }
            "--soak-secs" => {
                args.soak_secs = given
                    .next()
                    .context("--soak-secs needs seconds")?
                    .parse()
                    .context("--soak-secs needs seconds")?;
            }
            "--soak-rate" => {
                args.soak_rate = Some(
                    given
                        .next()
                        .context("--soak-rate needs messages a second")?
                        .parse()
                        .context("--soak-rate needs messages a second")?,
                );
            }
            "--only" => {
                let list: Vec<String> = given
                    .next()
                    .context("--only needs phase names")?
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                if let Some(bad) = list.iter().find(|p| !PHASES.contains(&p.as_str())) {
                    bail!("no phase `{bad}`; phases: {}", PHASES.join(","));
                }
                args.only = Some(list);
            }
            // cargo bench passes --bench to a harness-less bench.
            "--bench" => args.under_cargo_bench = true,
            other => bail!(
                "unknown argument `{other}`; usage: cargo bench --bench hookd -- [--smoke] [--json PATH] \
                 [--only PHASE,...] [--work-dir DIR] [--latency-trace PATH] [--soak-secs S] [--soak-rate R]"
            ),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("bench: {error:#}");
            return ExitCode::from(2);
        }
    };
    if !args.under_cargo_bench {
        println!(
            "bench: not run by `cargo test` (timings stay out of tests); run `cargo bench --bench hookd -- --smoke`"
        );
        return ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("bench: {error:#}");
            daemon::kill_all();
            ExitCode::FAILURE
        }
    }
}

/// Runs the phases; answers whether all of them completed.
fn run(args: Args) -> Result<bool> {
    let wanted = |phase: &str| match &args.only {
        Some(only) => only.iter().any(|p| p == phase),
        None => !OPT_IN.contains(&phase),
    };
    let soak = if wanted("postgres-soak") {
        args.soak_secs as u64 + 300
    } else {
        0
    };
    let limit = if args.smoke { 600 } else { 3600 } + soak;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(limit));
        eprintln!("bench: still running after {limit} s; giving up");
        daemon::kill_all();
        std::process::exit(1);
    });
    // The receivers get their own runtime, so their work is not queued behind the bench's clients.
    let receivers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-receiver")
        .enable_all()
        .build()?;
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let sizes = if args.smoke {
        Sizes::smoke()
    } else {
        Sizes::full()
    };
    let mut bench = Bench {
        sizes,
        work_dir: args.work_dir.clone(),
        latency_trace: args.latency_trace.clone(),
        receiver: Receiver::start(receivers.handle(), false)?,
        hanging: Receiver::start(receivers.handle(), true)?,
        refusing: Receiver::start_answering(receivers.handle(), false, 400)?,
        slow: Receiver::start_delaying(receivers.handle(), backlog::BACKLOG_ANSWER_DELAY)?,
        bodies: Bodies {
            payload: socket::payload(),
        },
        report: Report::default(),
        soak_secs: args.soak_secs,
        soak_rate: args.soak_rate,
    };
    println!(
        "hookd bench ({}), daemon {}, temp dirs in {}",
        if args.smoke { "smoke" } else { "full" },
        daemon::HOOKD,
        args.work_dir.display()
    );
    clients.block_on(async {
        let mut probed = false;
        for phase in PHASES.iter().copied().filter(|p| wanted(p)) {
            let runs_daemon = !matches!(phase, "ceiling" | "durability");
            if runs_daemon && !probed {
                run_phase(&mut bench, "probe").await;
                probed = true;
            }
            run_phase(&mut bench, phase).await;
        }
    });
    drop(clients);
    drop(receivers);

    let mut report = bench.report;
    for (name, unit, target) in TARGETED {
        if wanted(phase_of(name)) && report.value(name).is_none() {
            report.push(Figure {
                value: None,
                ..Figure::new(*name, 0.0, unit)
                    .target(*target)
                    .note("not measured: its phase failed")
            });
        }
    }
    let completed = report.errors.is_empty();
    println!("\n{}", report.table());
    if let Some(path) = &args.json {
        let run = serde_json::json!({
            "mode": if args.smoke { "smoke" } else { "full" },
            "sizes": bench.sizes,
            "clients": CLIENTS,
            "batch_clients": BATCH_CLIENTS,
            "batch_size": BATCH_SIZE,
            "endpoint_concurrency": ENDPOINT_CONCURRENCY,
            "spread_endpoint_concurrency": endpoints::SPREAD_CONCURRENCY,
            "isolation_rate": isolation::ISOLATION_RATE,
            "backlog_endpoint_concurrency": backlog::BACKLOG_CONCURRENCY,
            "backlog_answer_delay_ms": backlog::BACKLOG_ANSWER_DELAY.as_millis() as u64,
            "sled_cache_bytes": SLED_CACHE_BYTES,
            "payload_bytes": bench.bodies.payload.len(),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "unix_time": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        });
        let text = serde_json::to_string_pretty(&report.json(run))?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if !completed {
        eprintln!("bench: {} phase(s) failed", report.errors.len());
    }
    Ok(completed)
}

/// The phase that measures a targeted figure.
fn phase_of(figure: &str) -> &'static str {
    match figure {
        ENQ_SINGLE | ENQ_BATCH => "enqueue",
        E2E => "e2e",
        LAT_P99 => "latency",
        HEALTHY_BESIDE => "hanging",
        EP_CREATE | EP_MEM | EP_START | EP_SPREAD => "endpoints",
        ISO_BUSY => "isolation",
        BLN_BUSY => "backlog",
        LIST_PAGE => "list",
        PG_E2E_ONE | PG_STMTS_ONE | PG_LAT_P99 => "postgres",
        PG_SOAK_LATE => "postgres-soak",
        _ => "queued",
    }
}

async fn run_phase(bench: &mut Bench, phase: &str) {
    println!("== {phase}");
    let started = std::time::Instant::now();
    let outcome = match phase {
        "probe" => bench.probe().await,
        "ceiling" => ceiling(bench).await,
        "durability" => durability(bench).await,
        "enqueue" => bench.enqueue().await,
        "e2e" => bench.e2e().await,
        "latency" => bench.latency().await,
        "queued" => bench.queued().await,
        "hanging" => bench.hanging().await,
        "endpoints" => bench.endpoints().await,
        "isolation" => bench.isolation().await,
        "backlog" => bench.backlog().await,
        "list" => bench.listing().await,
        "postgres" => bench.postgres().await,
        "postgres-soak" => bench.postgres_soak().await,
        _ => Err(anyhow::anyhow!("no phase `{phase}`")),
    };
    match outcome {
        Ok(()) => println!("   done in {:.1} s", started.elapsed().as_secs_f64()),
        Err(error) => {
            eprintln!("   phase {phase} FAILED: {error:#}");
            bench.report.fail(phase, &error);
        }
    }
}

async fn ceiling(bench: &mut Bench) -> Result<()> {
    let n = bench.sizes.ceiling_requests;
    let ceiling = ceilings::http_ceiling(
        &bench.receiver,
        &bench.bodies.payload,
        n,
        ENDPOINT_CONCURRENCY,
    )
    .await?;
    let note = format!("{n} POSTs of hookd's json body, {ENDPOINT_CONCURRENCY} connections");
    let report = &mut bench.report;
    report.push(Figure::new(HTTP_CEILING, ceiling.per_second, "/s").note(note));
    report.push(Figure::new(HTTP_P50, ceiling.p50.as_secs_f64() * 1e3, "ms"));
    report.push(Figure::new(HTTP_P99, ceiling.p99.as_secs_f64() * 1e3, "ms"));
    Ok(())
}

async fn durability(bench: &mut Bench) -> Result<()> {
    let record = bench.bodies.payload.len();
    let (single, batched) = (
        bench.sizes.durability_single,
        bench.sizes.durability_batched,
    );
    let rate = ceilings::durability_ceiling(
        &bench.work_dir,
        SLED_CACHE_BYTES,
        record,
        CLIENTS,
        1,
        single,
    )
    .await?;
    bench
        .report
        .push(Figure::new(DUR_SINGLE, rate, "/s").note(format!(
            "{single} records of {record} bytes, {CLIENTS} writers"
        )));
    let rate = ceilings::durability_ceiling(
        &bench.work_dir,
        SLED_CACHE_BYTES,
        record,
        BATCH_CLIENTS,
        BATCH_SIZE,
        batched,
    )
    .await?;
    bench
        .report
        .push(Figure::new(DUR_BATCH, rate, "/s").note(format!(
            "{batched} records of {record} bytes, {BATCH_CLIENTS} writers"
        )));
    Ok(())
}
