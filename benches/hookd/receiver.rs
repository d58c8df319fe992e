//! Loopback HTTP receivers for the bench, served by hyper on their own tokio runtime so their work is not
//! scheduled behind the bench's clients.
//!
//! A [`Receiver`] answers 200 with an empty body at once (or, made with `hang`, never answers; made with
//! [`Receiver::start_delaying`], after a fixed delay) and notes each request: the first arrival time of every `webhook-id`, the first request, and when the last new id came.
//! Throughput phases wait on the count of distinct ids; the latency phase joins the arrival times with the
//! send times it kept itself (one process, one clock).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::runtime::Handle;

/// How often a waiter looks at the counts (the end time itself is taken by the receiver, not the poll).
const POLL: Duration = Duration::from_millis(2);

/// A receiver listening on 127.0.0.1. Cheap to clone.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
}

struct State {
    /// Never answer: the connection stays open until the client gives up.
    hang: bool,
    /// The status of every answer.
    status: u16,
    /// How long each answer waits after the request was read (zero: at once).
    delay: Duration,
    requests: AtomicU64,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// First arrival of each webhook-id (a UUID, kept as its 128 bits).
    first_by_id: HashMap<u128, Instant>,
    first_request_at: Option<Instant>,
    last_new_id_at: Option<Instant>,
}

impl Receiver {
    /// Binds 127.0.0.1:0 and serves on `runtime`.
    pub fn start(runtime: &Handle, hang: bool) -> Result<Receiver> {
        Receiver::start_answering(runtime, hang, 200)
    }

    /// Like [`Receiver::start`], answering every request with `status` (400: every message dead at once).
    pub fn start_answering(runtime: &Handle, hang: bool, status: u16) -> Result<Receiver> {
        Receiver::serve(runtime, hang, status, Duration::ZERO)
    }

    /// Like [`Receiver::start`], answering 200 only `delay` after each request was read: an endpoint with
    /// `concurrency` C sending to it delivers at most C / `delay` messages a second.
    pub fn start_delaying(runtime: &Handle, delay: Duration) -> Result<Receiver> {
        Receiver::serve(runtime, false, 200, delay)
    }

    fn serve(runtime: &Handle, hang: bool, status: u16, delay: Duration) -> Result<Receiver> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a receiver")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            hang,
            status,
            delay,
            requests: AtomicU64::new(0),
            seen: Mutex::new(Seen::default()),
        });
        let shared = Arc::clone(&state);
        runtime.spawn(async move {
            if let Err(error) = accept(listener, shared).await {
                eprintln!("bench receiver {addr} stopped: {error:#}");
            }
        });
        Ok(Receiver { addr, state })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Forgets everything seen so far (between phases).
    pub fn reset(&self) {
        self.state.requests.store(0, Ordering::SeqCst);
        *self.state.seen() = Seen::default();
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn distinct(&self) -> usize {
        self.state.seen().first_by_id.len()
    }

    /// The first arrival time of every webhook-id seen since the last reset.
    pub fn arrivals(&self) -> HashMap<u128, Instant> {
        self.state.seen().first_by_id.clone()
    }

    /// Waits until `n` distinct webhook-ids have arrived; answers when the last of them did.
    pub async fn wait_distinct(&self, n: usize, within: Duration) -> Result<Instant> {
        let deadline = Instant::now() + within;
        loop {
            {
                let seen = self.state.seen();
                if seen.first_by_id.len() >= n {
                    return seen.last_new_id_at.context("ids counted without a time");
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "receiver {} got {} distinct webhook-ids ({} requests), expected {n} within {within:?}",
                    self.addr,
                    self.distinct(),
                    self.requests()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the first request since the last reset; answers when it arrived.
    pub async fn wait_first(&self, within: Duration) -> Result<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = self.state.seen().first_request_at {
                return Ok(at);
            }
            if Instant::now() >= deadline {
                bail!("receiver {} got no request within {within:?}", self.addr);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until at least `n` requests have arrived (the hanging receiver: its lane's permits are taken).
    pub async fn wait_requests(&self, n: u64, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        while self.requests() < n {
            if Instant::now() >= deadline {
                bail!(
                    "receiver {} got {} requests, expected {n} within {within:?}",
                    self.addr,
                    self.requests()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }
}

impl State {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        // A panic elsewhere while holding the lock leaves plain counters behind: still usable.
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn note(&self, webhook_id: Option<u128>, at: Instant) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.seen();
        let seen = &mut *guard;
        seen.first_request_at.get_or_insert(at);
        if let Some(id) = webhook_id
            && let Entry::Vacant(slot) = seen.first_by_id.entry(id)
        {
            slot.insert(at);
            seen.last_new_id_at = Some(at);
        }
    }
}

async fn accept(listener: std::net::TcpListener, state: Arc<State>) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&state), request));
            // A connection ends when the client closes it; nothing to report.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let webhook_id = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .map(|id| id.as_u128());
    // Read the body, as a real receiver would.
    let _ = request.into_body().collect().await;
    state.note(webhook_id, at);
    if state.hang {
        std::future::pending::<()>().await;
    }
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() =
        hyper::StatusCode::from_u16(state.status).unwrap_or(hyper::StatusCode::OK);
    Ok(response)
}
