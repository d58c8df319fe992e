//! The `list` phase: finding messages in a large queue. One page of `GET /v1/messages` for one endpoint's
//! queued messages, with the whole backlog queued across a few endpoints whose receiver never answers (so
//! nothing leaves the queue but a few in flight), timed against `GET /v1/health` on the same connection.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use hyper::Method;

use crate::daemon::{BenchDaemon, EndpointSpec};
use crate::names::{LIST_ANY, LIST_HEALTH, LIST_PAGE, LIST_PAGE_MAX};
use crate::phases::{BATCH_CLIENTS, Bench, enqueue_batches, stop};
use crate::report::{Figure, Target};
use crate::socket::SocketClient;

/// Requests that never answer within the phase.
const HANG_TIMEOUT_MS: u64 = 600_000;
const ENDPOINTS: [&str; 4] = ["list-a", "list-b", "list-c", "list-d"];
/// Timed requests of each kind, after a few untimed ones.
const ROUNDS: usize = 30;
const PAGE: usize = 100;

impl Bench {
    pub async fn listing(&mut self) -> Result<()> {
        let n = self.sizes.queued;
        let endpoints: Vec<EndpointSpec> = ENDPOINTS
            .iter()
            .map(|name| EndpointSpec {
                timeout_ms: HANG_TIMEOUT_MS,
                ..EndpointSpec::new(name, self.hanging.url())
            })
            .collect();
        let (daemon, _) = BenchDaemon::start(&self.work_dir, &endpoints).await?;
        self.hanging.reset();
        for name in ENDPOINTS {
            enqueue_batches(
                &daemon,
                &self.bodies,
                name,
                n / ENDPOINTS.len(),
                BATCH_CLIENTS,
            )
            .await?;
        }
        let mut client = SocketClient::connect(&daemon.socket).await?;
        let page = format!(
            "/v1/messages?endpoint={}&state=queued&limit={PAGE}",
            ENDPOINTS[1]
        );
        let any = format!("/v1/messages?limit={PAGE}");
        let mut health = Vec::new();
        let mut pages = Vec::new();
        let mut anys = Vec::new();
        for round in 0..ROUNDS + 3 {
            let h = timed(&mut client, "/v1/health", None).await?;
            let p = timed(&mut client, &page, Some(PAGE)).await?;
            let a = timed(&mut client, &any, Some(PAGE)).await?;
            if round >= 3 {
                health.push(h);
                pages.push(p);
                anys.push(a);
            }
        }
        let health_p50 = median(&mut health);
        let page_p50 = median(&mut pages);
        let page_max = pages.iter().copied().fold(0.0, f64::max);
        self.report.push(
            Figure::new(LIST_PAGE, page_p50, "ms")
                .against("GET /v1/health", Some(health_p50))
                .target(Target::Below(50.0))
                .note(format!(
                    "p50 of {ROUNDS}: {page}, {n} messages queued over {} endpoints",
                    ENDPOINTS.len()
                )),
        );
        self.report
            .push(Figure::new(LIST_PAGE_MAX, page_max, "ms").note("slowest of the same"));
        self.report.push(
            Figure::new(LIST_ANY, median(&mut anys), "ms")
                .against("GET /v1/health", Some(health_p50))
                .note(format!(
                    "p50 of {ROUNDS}: {any} (the msg tree from its start)"
                )),
        );
        self.report
            .push(Figure::new(LIST_HEALTH, health_p50, "ms").note(format!("p50 of {ROUNDS}")));
        stop(daemon).await
    }
}

/// One GET, timed in ms; with `items`, the page must hold that many.
async fn timed(client: &mut SocketClient, path: &str, items: Option<usize>) -> Result<f64> {
    let started = Instant::now();
    let (status, body) = client.call(Method::GET, path, Bytes::new()).await?;
    let took = started.elapsed();
    if !status.is_success() {
        bail!("{path}: {status} {}", String::from_utf8_lossy(&body));
    }
    if let Some(wanted) = items {
        let list: serde_json::Value = serde_json::from_slice(&body)?;
        let got = list["items"].as_array().map_or(0, Vec::len);
        if got != wanted {
            bail!("{path}: {got} items, not {wanted}");
        }
    }
    Ok(ms(took))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
