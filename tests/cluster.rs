#![allow(clippy::unwrap_used, clippy::expect_used)]
//! hookd as a cluster: several `hookd serve` processes on one PostgreSQL database (this binary's throwaway
//! cluster), one endpoint declared identically in each node's config, a real HTTP receiver on 127.0.0.1 that
//! records every request's `webhook-id` and counts the requests it holds at once.
//!
//! - [`a_sigkilled_owner_is_taken_over_within_lease_and_sweep`]: the node running the endpoint's lane is
//!   SIGKILLed while it holds claimed messages in flight; the others take over its claims and its lane
//!   within the lease TTL plus the reaper's interval (with short settings: a 3 s lease, a 1 s heartbeat).
//! - [`three_nodes_survive_ten_sigkills`]: three nodes, enqueues to all three all along, ten SIGKILLs of
//!   random nodes (half of them aimed at the lane's owner), each restarted; every acknowledged message is delivered (by webhook-id), duplicates are
//!   counted, and the endpoint's concurrency is never exceeded across the cluster.
//!
//! The two tests take turns (a lock): each starts three daemons, and the takeover time is a measurement.

#[path = "support/postgres_cluster.rs"]
mod postgres_cluster;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use hookd::api::client::Client;
use hookd::api::wire::EnqueueRequest;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::value::RawValue;
use sqlx::Row as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const HOOKD: &str = env!("CARGO_BIN_EXE_hookd");
const ENDPOINT: &str = "chaos";
const CONCURRENCY: usize = 4;
const LEASE_TTL_MS: u64 = 3_000;
const HEARTBEAT_MS: u64 = 1_000;
/// The daemon's reaper interval (`SWEEP_EVERY` in src/daemon/tasks.rs).
const SWEEP_MS: u64 = 5_000;

/// One test at a time: each runs three daemons, and the takeover time is measured.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------------------
// The receiver

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    webhook_id: String,
    at: Instant,
}

#[derive(Default)]
struct ReceiverState {
    log: Mutex<Vec<Received>>,
    /// Requests being answered now, and the most there ever were at once.
    current: AtomicUsize,
    max: AtomicUsize,
    /// How long each request is held before its 200 (milliseconds).
    delay_ms: AtomicU64,
    /// Bumped on every request, for waiting on a condition of the log.
    arrivals: Option<watch::Sender<usize>>,
}

/// A 200-answering receiver on 127.0.0.1 that holds each request `delay_ms`, records its `webhook-id` and
/// tracks how many requests it holds at once.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

/// Decrements the in-flight count however the request ends (answered, or dropped with its connection).
struct InFlight(Arc<ReceiverState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Receiver {
    async fn start(delay: Duration) -> Receiver {
        let (arrivals, _) = watch::channel(0);
        let state = Arc::new(ReceiverState {
            delay_ms: AtomicU64::new(delay.as_millis() as u64),
            arrivals: Some(arrivals),
            ..ReceiverState::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::clone(&state);
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let state = Arc::clone(&shared);
            async move { handle(state, headers).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    fn received(&self) -> Vec<Received> {
        self.state.log.lock().unwrap().clone()
    }

    fn current(&self) -> usize {
        self.state.current.load(Ordering::SeqCst)
    }

    fn max_concurrent(&self) -> usize {
        self.state.max.load(Ordering::SeqCst)
    }

    /// Waits until `done` holds for the log; false if `within` passed first.
    async fn wait_until(
        &self,
        within: Duration,
        mut done: impl FnMut(&[Received]) -> bool,
    ) -> bool {
        let mut arrivals = self.state.arrivals.as_ref().unwrap().subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if done(&self.state.log.lock().unwrap()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, arrivals.changed()).await {
                Ok(Ok(())) => {}
                _ => return done(&self.state.log.lock().unwrap()),
            }
        }
    }

    /// Waits until this many requests are held at once; false if `within` passed first.
    async fn wait_for_concurrent(&self, n: usize, within: Duration) -> bool {
        let mut arrivals = self.state.arrivals.as_ref().unwrap().subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.current() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, arrivals.changed())
                .await
                .is_err()
            {
                return self.current() >= n;
            }
        }
    }
}

async fn handle(state: Arc<ReceiverState>, headers: HeaderMap) -> StatusCode {
    let now_in = state.current.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_flight = InFlight(Arc::clone(&state));
    state.max.fetch_max(now_in, Ordering::SeqCst);
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    state.log.lock().unwrap().push(Received {
        webhook_id,
        at: Instant::now(),
    });
    if let Some(arrivals) = &state.arrivals {
        arrivals.send_modify(|n| *n += 1);
    }
    let delay = state.delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    StatusCode::OK
}

// ---------------------------------------------------------------------------------------------------------
// The nodes

/// One `hookd serve` process with its own socket and data dir, on the shared database.
struct Node {
    name: String,
    _dir: tempfile::TempDir,
    config: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    client: Client,
}

impl Node {
    fn new(name: &str, database: &str, receiver: &Receiver) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("hookd-cluster")
            .tempdir_in("/tmp")
            .unwrap();
        let config = dir.path().join("hookd.toml");
        let socket = dir.path().join("hookd.sock");
        let text = format!(
            "data_dir = {data:?}\nsocket = {socket:?}\nshutdown_grace_ms = 2000\n\
             [store]\nurl = {database:?}\nlease_ttl_ms = {LEASE_TTL_MS}\nheartbeat_ms = {HEARTBEAT_MS}\n\
             node_name = {name:?}\n\
             [destinations]\nallow = [\"127.0.0.0/8\"]\n\
             [[endpoints]]\nname = {ENDPOINT:?}\nurl = {url:?}\nformat = \"json\"\n\
             concurrency = {CONCURRENCY}\ntimeout_ms = 5000\n\
             retry = {{ initial_ms = 50, max_ms = 200, multiplier = 2.0, jitter = 0.0 }}\n",
            data = dir.path().join("data"),
            url = receiver.url(),
        );
        std::fs::write(&config, text).unwrap();
        let log = dir.path().join("hookd.log");
        Node {
            name: name.to_owned(),
            client: Client::new(&socket).unwrap(),
            _dir: dir,
            config,
            socket,
            log,
            child: None,
        }
    }

    /// Starts the process and waits until it says it is serving.
    async fn start(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let mut child = Command::new(HOOKD)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("HOOKD_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("HOOKD_FAULTS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        let (ready, serving) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            let mut ready = Some(ready);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(file, "{line}");
                if line.contains("hookd is serving")
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(());
                }
            }
        });
        self.child = Some(child);
        let started = tokio::time::timeout(Duration::from_secs(30), serving).await;
        assert!(
            matches!(started, Ok(Ok(()))),
            "{} did not start; log:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// SIGKILL: no chance to give anything back.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, and waits for the process to exit (after its shutdown grace).
    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child.wait().unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Enqueues one message; `Some(id)` when the node answered 202.
    async fn enqueue(&self, n: u64) -> Option<String> {
        let request = EnqueueRequest {
            endpoint: ENDPOINT.into(),
            kind: "order.created".into(),
            payload: RawValue::from_string(format!("{{\"n\":{n}}}")).unwrap(),
            idempotency_key: None,
        };
        match tokio::time::timeout(Duration::from_secs(5), self.client.enqueue(&request)).await {
            Ok(Ok(answer)) => Some(answer.id),
            _ => None,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = std::env::var_os("HOOKD_CLUSTER_KEEP_LOGS") {
            let dir = PathBuf::from(dir);
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::copy(&self.log, dir.join(format!("{}.log", self.name)));
        }
        if std::thread::panicking() {
            eprintln!(
                "--- log of {} ({}) ---\n{}",
                self.name,
                self.socket.display(),
                tail(&self.log_text(), 60)
            );
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn start_nodes(database: &str, receiver: &Receiver, n: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = (0..n)
        .map(|i| Node::new(&format!("node-{i}"), database, receiver))
        .collect();
    futures_util::future::join_all(nodes.iter_mut().map(Node::start)).await;
    nodes
}

/// The name (`node_name`) and id of the running node that holds the endpoint's lane lease, if one does: not
/// a lease left by a killed process (its name lives on in the restarted one) that has not run out yet.
async fn lane_owner(db: &sqlx::PgPool) -> Option<(String, uuid::Uuid)> {
    sqlx::query(
        "SELECT n.label, o.owner FROM hookd_owners o JOIN hookd_nodes n ON n.id = o.owner
         WHERE o.endpoint = $1 AND o.until > $2
           AND n.started_at = (SELECT max(started_at) FROM hookd_nodes WHERE label = n.label)",
    )
    .bind(ENDPOINT)
    .bind(hookd::model::now_millis() as i64)
    .fetch_optional(db)
    .await
    .unwrap()
    .map(|row| (row.get(0), row.get(1)))
}

/// The webhook-ids of the messages `node` holds claimed.
async fn claimed_by(db: &sqlx::PgPool, node: uuid::Uuid) -> Vec<String> {
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM hookd_messages WHERE stage = 'in_flight' AND claim_owner = $1",
    )
    .bind(node)
    .fetch_all(db)
    .await
    .unwrap();
    ids.into_iter().map(message_id).collect()
}

/// A message id as the API and `webhook-id` spell it.
fn message_id(id: uuid::Uuid) -> String {
    hookd::model::MessageId::from_slice(id.as_bytes())
        .expect("16 bytes")
        .to_string()
}

fn duplicates(received: &[Received]) -> BTreeMap<String, usize> {
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for r in received {
        *per_id.entry(&r.webhook_id).or_default() += 1;
    }
    per_id
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(id, n)| (id.to_owned(), n))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_owner_is_taken_over_within_lease_and_sweep() {
    let _turn = TURN.lock().await;
    let started = Instant::now();
    let database = postgres_cluster::cluster().fresh_database().await;
    let db = sqlx::PgPool::connect(&database).await.unwrap();
    let receiver = Receiver::start(Duration::from_millis(30)).await;
    let mut nodes = start_nodes(&database, &receiver, 3).await;

    // Warm up: a first message delivered tells the lane runs somewhere.
    let first = nodes[0].enqueue(0).await.expect("enqueue on node-0");
    assert!(
        receiver
            .wait_until(Duration::from_secs(20), |log| log
                .iter()
                .any(|r| r.webhook_id == first))
            .await,
        "the first message was not delivered"
    );

    // The receiver holds requests now, so the owner keeps claims in flight when it dies.
    receiver.set_delay(Duration::from_secs(2));
    let mut acknowledged = vec![first];
    for n in 1..=30u64 {
        let node = &nodes[n as usize % nodes.len()];
        acknowledged.push(node.enqueue(n).await.expect("enqueue"));
    }
    assert!(
        receiver
            .wait_for_concurrent(CONCURRENCY, Duration::from_secs(20))
            .await,
        "the receiver never held {CONCURRENCY} requests at once"
    );
    let (owner_name, owner_id) = lane_owner(&db).await.expect("someone owns the lane");
    let claimed = claimed_by(&db, owner_id).await;
    assert!(
        claimed.len() >= CONCURRENCY,
        "{owner_name} holds {} claims, expected at least {CONCURRENCY}",
        claimed.len()
    );
    receiver.set_delay(Duration::from_millis(30));

    let owner = nodes.iter_mut().find(|n| n.name == owner_name).unwrap();
    owner.kill();
    let killed_at = Instant::now();
    eprintln!(
        "killed the lane owner {owner_name} holding {} claims",
        claimed.len()
    );

    // Every claim of the dead node is delivered again by a live one, and so is everything else.
    let claimed_set: HashSet<String> = claimed.iter().cloned().collect();
    let acked_set: HashSet<String> = acknowledged.iter().cloned().collect();
    let bound = Duration::from_millis(LEASE_TTL_MS + SWEEP_MS + 3_000);
    let all_taken_over = receiver
        .wait_until(bound + Duration::from_secs(10), |log| {
            let again: HashSet<&str> = log
                .iter()
                .filter(|r| r.at > killed_at && claimed_set.contains(&r.webhook_id))
                .map(|r| r.webhook_id.as_str())
                .collect();
            let delivered: HashSet<&str> = log.iter().map(|r| r.webhook_id.as_str()).collect();
            again.len() == claimed_set.len()
                && acked_set.iter().all(|id| delivered.contains(id.as_str()))
        })
        .await;
    let log = receiver.received();
    let after: Vec<&Received> = log.iter().filter(|r| r.at > killed_at).collect();
    let lane_takeover = after.first().map(|r| r.at - killed_at);
    let claims_takeover = claimed
        .iter()
        .map(|id| {
            after
                .iter()
                .find(|r| &r.webhook_id == id)
                .map(|r| r.at - killed_at)
        })
        .collect::<Option<Vec<_>>>()
        .and_then(|times| times.into_iter().max());
    let (new_owner, _) = lane_owner(&db)
        .await
        .unwrap_or(("nobody".into(), uuid::Uuid::nil()));
    eprintln!(
        "takeover: first request after the kill {lane_takeover:?}, every claim of the dead node again \
         {claims_takeover:?} (bound {bound:?}: lease {LEASE_TTL_MS} ms + sweep {SWEEP_MS} ms + 3 s); \
         lane now on {new_owner}; {} requests, {} duplicates, max concurrency {}; {:?} in all",
        log.len(),
        duplicates(&log).len(),
        receiver.max_concurrent(),
        started.elapsed()
    );
    assert!(
        all_taken_over,
        "the dead node's claims or queued messages were not taken over (claims {claimed:?})"
    );
    let claims_takeover = claims_takeover.unwrap();
    assert!(
        claims_takeover <= bound,
        "the claims were taken over after {claims_takeover:?}, beyond {bound:?}"
    );
    assert_ne!(new_owner, owner_name, "the dead node still owns the lane");
    assert!(
        receiver.max_concurrent() <= CONCURRENCY,
        "{} requests at once, the endpoint's concurrency is {CONCURRENCY}",
        receiver.max_concurrent()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gracefully_stopped_owner_hands_its_work_over_at_once() {
    let _turn = TURN.lock().await;
    let database = postgres_cluster::cluster().fresh_database().await;
    let db = sqlx::PgPool::connect(&database).await.unwrap();
    let receiver = Receiver::start(Duration::from_millis(30)).await;
    let mut nodes = start_nodes(&database, &receiver, 3).await;
    let first = nodes[0].enqueue(0).await.expect("enqueue on node-0");
    assert!(
        receiver
            .wait_until(Duration::from_secs(20), |log| log
                .iter()
                .any(|r| r.webhook_id == first))
            .await,
        "the first message was not delivered"
    );

    // The receiver holds requests past the owner's shutdown grace (2 s): its attempts are cut short and
    // their messages given back at its stop.
    receiver.set_delay(Duration::from_secs(4));
    let mut acknowledged = vec![first];
    for n in 1..=12u64 {
        let node = &nodes[n as usize % nodes.len()];
        acknowledged.push(node.enqueue(n).await.expect("enqueue"));
    }
    assert!(
        receiver
            .wait_for_concurrent(CONCURRENCY, Duration::from_secs(20))
            .await,
        "the receiver never held {CONCURRENCY} requests at once"
    );
    let (owner_name, _) = lane_owner(&db).await.expect("someone owns the lane");
    receiver.set_delay(Duration::from_millis(30));
    let owner = nodes.iter_mut().find(|n| n.name == owner_name).unwrap();
    let status = owner.terminate();
    let stopped_at = Instant::now();
    assert!(status.success(), "{owner_name} exited with {status}");

    // Nothing else is enqueued: the others must learn from the stopped node itself that its lane and the
    // messages it gave back are theirs now, not from the next enqueue or a lease running out.
    let acked: HashSet<String> = acknowledged.iter().cloned().collect();
    let bound = Duration::from_secs(2);
    let delivered = receiver
        .wait_until(
            bound + Duration::from_millis(LEASE_TTL_MS + SWEEP_MS),
            |log| {
                let got: HashSet<&str> = log.iter().map(|r| r.webhook_id.as_str()).collect();
                acked.iter().all(|id| got.contains(id.as_str()))
            },
        )
        .await;
    let handed_over = stopped_at.elapsed();
    let (new_owner, _) = lane_owner(&db)
        .await
        .unwrap_or(("nobody".into(), uuid::Uuid::nil()));
    eprintln!(
        "graceful stop of the owner {owner_name}: everything delivered {handed_over:?} after its exit \
         (bound {bound:?}); lane now on {new_owner}; max concurrency {}",
        receiver.max_concurrent()
    );
    assert!(
        delivered,
        "the stopped owner's messages were not taken over"
    );
    assert!(
        handed_over <= bound,
        "the stopped owner's messages were taken over after {handed_over:?}, beyond {bound:?}"
    );
    assert!(receiver.max_concurrent() <= CONCURRENCY);
}

/// What the enqueuers did.
#[derive(Default)]
struct Enqueued {
    acknowledged: Vec<String>,
    failed: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_ten_sigkills() {
    let _turn = TURN.lock().await;
    let started = Instant::now();
    let seed: u64 = std::env::var("HOOKD_CLUSTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("seed {seed} (HOOKD_CLUSTER_SEED={seed} repeats this run's choices)");
    let mut rng = StdRng::seed_from_u64(seed);
    let database = postgres_cluster::cluster().fresh_database().await;
    let db = sqlx::PgPool::connect(&database).await.unwrap();
    let receiver = Receiver::start(Duration::from_millis(30)).await;
    let nodes = start_nodes(&database, &receiver, 3).await;
    let sockets: Vec<Client> = nodes.iter().map(|n| n.client.clone()).collect();
    let nodes = Arc::new(tokio::sync::Mutex::new(nodes));

    // Enqueues to all three nodes all along: one enqueuer per node, about 15 a second each.
    let stop = CancellationToken::new();
    let enqueued = Arc::new(Mutex::new(Enqueued::default()));
    let counter = Arc::new(AtomicU64::new(0));
    let mut enqueuers = Vec::new();
    for client in sockets {
        let (stop, enqueued, counter) = (stop.clone(), Arc::clone(&enqueued), Arc::clone(&counter));
        enqueuers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let request = EnqueueRequest {
                    endpoint: ENDPOINT.into(),
                    kind: "order.created".into(),
                    payload: RawValue::from_string(format!("{{\"n\":{n}}}")).unwrap(),
                    idempotency_key: None,
                };
                let answer =
                    tokio::time::timeout(Duration::from_secs(5), client.enqueue(&request)).await;
                match answer {
                    Ok(Ok(answer)) => enqueued.lock().unwrap().acknowledged.push(answer.id),
                    _ => enqueued.lock().unwrap().failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        }));
    }

    // Ten SIGKILLs of random nodes, each restarted.
    let mut kills = Vec::new();
    for kill in 1..=10 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..2_500))).await;
        let owner = lane_owner(&db).await.map(|(name, _)| name);
        let mut nodes = nodes.lock().await;
        // Half the kills aim at the node running the lane (when one does), the others at any node.
        let victim = match &owner {
            Some(owner) if rng.random_bool(0.5) => {
                nodes.iter().position(|n| &n.name == owner).unwrap()
            }
            _ => rng.random_range(0..3usize),
        };
        let node = &mut nodes[victim];
        let was_owner = owner.as_deref() == Some(node.name.as_str());
        node.kill();
        let down = Duration::from_millis(rng.random_range(0..800));
        tokio::time::sleep(down).await;
        let restart = Instant::now();
        node.start().await;
        eprintln!(
            "kill {kill}: {}{} down {down:?}, restarted in {:?}",
            node.name,
            if was_owner { " (the lane owner)" } else { "" },
            restart.elapsed()
        );
        kills.push((node.name.clone(), was_owner));
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    stop.cancel();
    for enqueuer in enqueuers {
        enqueuer.await.unwrap();
    }
    let enqueuing_done = Instant::now();

    // Every acknowledged message is delivered.
    let (acknowledged, failed) = {
        let enqueued = enqueued.lock().unwrap();
        (enqueued.acknowledged.clone(), enqueued.failed)
    };
    let acked: HashSet<String> = acknowledged.iter().cloned().collect();
    assert_eq!(acked.len(), acknowledged.len(), "ids are unique");
    let delivered_all = receiver
        .wait_until(Duration::from_secs(40), |log| {
            let got: HashSet<&str> = log.iter().map(|r| r.webhook_id.as_str()).collect();
            acked.iter().all(|id| got.contains(id.as_str()))
        })
        .await;
    let drained_in = enqueuing_done.elapsed();
    let log = receiver.received();
    let got: HashSet<&str> = log.iter().map(|r| r.webhook_id.as_str()).collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !got.contains(id.as_str()))
        .collect();
    let unacknowledged_delivered = got.iter().filter(|id| !acked.contains(**id)).count();
    let duplicates = duplicates(&log);
    let extra: usize = duplicates.values().map(|n| n - 1).sum();
    let owner_kills = kills.iter().filter(|(_, owner)| *owner).count();
    // The longest the endpoint went without a request while there was work (the worst handover).
    let longest_gap = log
        .windows(2)
        .map(|pair| pair[1].at - pair[0].at)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{} acknowledged, {failed} enqueues failed, {} requests received, {} ids delivered more than once \
         ({extra} extra requests), {unacknowledged_delivered} unacknowledged messages delivered, max \
         concurrency {} (limit {CONCURRENCY}), {owner_kills} of 10 kills hit the lane owner, longest gap \
         between requests {:?}, drained {:?} after the last enqueue, {:?} in all",
        acknowledged.len(),
        log.len(),
        duplicates.len(),
        receiver.max_concurrent(),
        longest_gap,
        drained_in,
        started.elapsed()
    );
    if postgres_cluster::cluster().has_pg_stat_statements() {
        let _ = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&db)
            .await;
        let rows = sqlx::query(
            "SELECT calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             ORDER BY calls DESC LIMIT 12",
        )
        .fetch_all(&db)
        .await
        .unwrap_or_default();
        for row in rows {
            eprintln!("{:>8} {}", row.get::<i64, _>(0), row.get::<String, _>(1));
        }
    }
    if !duplicates.is_empty() {
        eprintln!("duplicates (webhook-id: requests): {duplicates:?}");
    }
    assert!(
        delivered_all,
        "{} acknowledged messages never delivered: {missing:?}",
        missing.len()
    );
    assert!(
        receiver.max_concurrent() <= CONCURRENCY,
        "{} requests at once across the cluster, the endpoint's concurrency is {CONCURRENCY}",
        receiver.max_concurrent()
    );
    assert!(
        acknowledged.len() > 100,
        "only {} messages were acknowledged",
        acknowledged.len()
    );
}
