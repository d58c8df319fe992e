//! The baselines the daemon is judged against, measured in the same run on the same machine.
//!
//! - The HTTP ceiling: a plain reqwest client POSTing the body hookd's `json` format would send (with a
//!   `webhook-id`) to the same receiver, over as many connections as an endpoint's `concurrency`. No store, no
//!   lane: what loopback HTTP with these two libraries can do here.
//! - The durability ceilings: raw sled inserts of payload-sized records, each writer waiting for a shared
//!   group commit made like hookd's (`flush_async`, then `fdatasync` of sled's `db` file). One record per wait
//!   (like single enqueues) and a batch of records per wait (like batch enqueues). No transactions, no
//!   indexes: what sled plus an honest fsync can do here. (sled is named here, outside `store/`, because
//!   this is the measuring stick for the store, not a second store.)

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::{mpsc, oneshot};

use crate::receiver::Receiver;
use crate::socket::KIND;

/// Requests per second, and the round-trip times of single requests.
pub struct HttpCeiling {
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Longest one request of the ceiling may take.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// `count` POSTs over `concurrency` connections to `receiver`, after a short warm-up that opens them.
pub async fn http_ceiling(
    receiver: &Receiver,
    payload: &str,
    count: usize,
    concurrency: usize,
) -> Result<HttpCeiling> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_DEADLINE)
        .build()?;
    let url = receiver.url();
    let warm_up = concurrency * 20;
    post_many(&client, &url, payload, warm_up, concurrency).await?;
    receiver.reset();
    let started = Instant::now();
    let mut times = post_many(&client, &url, payload, count, concurrency).await?;
    let elapsed = started.elapsed();
    if receiver.requests() < count as u64 {
        bail!(
            "the receiver counted {} of {count} requests",
            receiver.requests()
        );
    }
    times.sort_unstable();
    Ok(HttpCeiling {
        per_second: count as f64 / elapsed.as_secs_f64(),
        p50: percentile(&times, 0.50),
        p99: percentile(&times, 0.99),
    })
}

/// Sends `count` requests from `concurrency` tasks; answers every round-trip time.
async fn post_many(
    client: &reqwest::Client,
    url: &str,
    payload: &str,
    count: usize,
    concurrency: usize,
) -> Result<Vec<Duration>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, payload, next) = (
            client.clone(),
            url.to_owned(),
            payload.to_owned(),
            Arc::clone(&next),
        );
        tasks.spawn(async move {
            let mut times = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let id = uuid::Uuid::now_v7().to_string();
                // What hookd's `json` format renders for a message.
                let body = format!(
                    r#"{{"id":"{id}","type":"{KIND}","timestamp":"{}","data":{payload}}}"#,
                    humantime::format_rfc3339_millis(std::time::SystemTime::now())
                );
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &id)
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                response.bytes().await?;
                if status != reqwest::StatusCode::OK {
                    bail!("the receiver answered {status}");
                }
                times.push(sent.elapsed());
            }
            anyhow::Ok(times)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

/// The value at quantile `q` of sorted `times` (zero when empty).
pub fn percentile(times: &[Duration], q: f64) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len());
    times[rank - 1]
}

/// Records per second into sled, `writers` tasks each inserting `per_wait` records of `record_bytes` and then
/// waiting for the group commit, until `total` records are in.
pub async fn durability_ceiling(
    parent: &Path,
    cache_bytes: u64,
    record_bytes: usize,
    writers: usize,
    per_wait: usize,
    total: usize,
) -> Result<f64> {
    let dir = tempfile::Builder::new()
        .prefix("hookd-bench-sled-")
        .tempdir_in(parent)?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(cache_bytes)
        .flush_every_ms(Some(500))
        .open()
        .context("opening sled")?;
    let tree = db.open_tree("msg")?;
    let commit = MiniCommit::start(db.clone(), dir.path().to_owned());
    // hookd syncs the data dir's entries once, at its first commit; keep that out of the timing.
    File::open(dir.path())?.sync_all()?;
    commit.wait().await?;
    let value = vec![b'x'; record_bytes];
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (tree, commit, value, next) = (
            tree.clone(),
            commit.clone(),
            value.clone(),
            Arc::clone(&next),
        );
        tasks.spawn(async move {
            loop {
                let first = next.fetch_add(per_wait, Ordering::Relaxed);
                if first >= total {
                    return anyhow::Ok(());
                }
                for _ in first..(first + per_wait).min(total) {
                    tree.insert(uuid::Uuid::now_v7().as_bytes(), value.as_slice())?;
                }
                commit.wait().await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let per_second = total as f64 / started.elapsed().as_secs_f64();
    drop(tree);
    drop(commit);
    drop(db);
    Ok(per_second)
}

/// hookd's group commit reduced to its cost: every waiter present when a commit starts is served by it.
#[derive(Clone)]
struct MiniCommit {
    requests: mpsc::UnboundedSender<oneshot::Sender<Result<(), String>>>,
}

impl MiniCommit {
    fn start(db: sled::Db, dir: PathBuf) -> MiniCommit {
        let (requests, mut receiver) =
            mpsc::unbounded_channel::<oneshot::Sender<Result<(), String>>>();
        tokio::spawn(async move {
            let log = match File::open(dir.join("db")) {
                Ok(file) => Arc::new(file),
                Err(error) => {
                    eprintln!("durability ceiling: cannot open sled's db file: {error}");
                    return;
                }
            };
            let mut batch = Vec::new();
            while let Some(first) = receiver.recv().await {
                batch.push(first);
                while let Ok(more) = receiver.try_recv() {
                    batch.push(more);
                }
                let result = commit_once(&db, &log).await;
                for waiter in batch.drain(..) {
                    let _ = waiter.send(result.clone());
                }
            }
        });
        MiniCommit { requests }
    }

    async fn wait(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(tx)
            .map_err(|_| anyhow::anyhow!("the commit task stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the commit task stopped"))?
            .map_err(anyhow::Error::msg)
    }
}

async fn commit_once(db: &sled::Db, log: &Arc<File>) -> Result<(), String> {
    db.flush_async().await.map_err(|e| format!("flush: {e}"))?;
    let log = Arc::clone(log);
    tokio::task::spawn_blocking(move || log.sync_data())
        .await
        .map_err(|e| format!("fsync task: {e}"))?
        .map_err(|e| format!("fsync: {e}"))
}
