//! What hookd reports about itself: `GET /metrics` in the Prometheus text format (0.0.4), and the per-endpoint
//! part of `GET /v1/stats` that `hookd status` prints.
//!
//! Both read the same three sources: the store's counts (durable, so queue depth survives restarts), the lanes'
//! states, and the run-time counters of [`crate::telemetry`] (which start at zero with each run). The socket
//! serves `/metrics` behind the access token like every route; the optional TCP listener (`metrics_listen`)
//! serves [`tcp_router`], which has `/metrics` and nothing else, for a Prometheus server that cannot reach a
//! Unix socket. Every metric is described in docs/METRICS.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{Display, Write as _};

use axum::Json;
use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::endpoints;
use super::error::ApiError;
use super::wire::{EndpointStatus, SinceStart, StatusReport};
use crate::dispatch::LaneStatus;
use crate::model::now_millis;
use crate::store::StageCounts;
use crate::telemetry::{EndpointSnapshot, LATENCY_BUCKETS, Outcome, OutcomeCounts};

/// The content type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The state word for an endpoint with messages in the store but no lane in the running configuration.
const NOT_CONFIGURED: &str = "not_configured";

/// The router of the `metrics_listen` TCP address: `GET /metrics` only, without a token (bind it to an
/// address only your Prometheus can reach).
pub fn tcp_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "only /metrics is served here\n") })
        .with_state(state)
}

/// `GET /metrics`.
pub(super) async fn metrics(AxumState(state): AxumState<AppState>) -> Result<Response, ApiError> {
    let counts = state.store.counts()?.by_endpoint;
    let size_on_disk = state.store.size_on_disk().await?;
    let text = render(&state, &counts, size_on_disk);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// `GET /v1/stats`: the counts of [`endpoints::stats`] with, per endpoint, its lane's state, held messages,
/// the age of its oldest queued message and its recent outcomes.
pub(super) async fn stats(
    AxumState(state): AxumState<AppState>,
) -> Result<Json<StatusReport>, ApiError> {
    let Json(stats) = endpoints::stats(AxumState(state.clone())).await?;
    let now = now_millis();
    let telemetry = state.telemetry.snapshot(now);
    let mut report = BTreeMap::new();
    let mut last_minute = OutcomeCounts::default();
    for name in endpoint_names(&state, &stats.by_endpoint, &telemetry) {
        let counts = stats.by_endpoint.get(&name).copied().unwrap_or_default();
        let status = state.lanes.status(&name);
        let counters = telemetry.get(&name).cloned().unwrap_or_default();
        let (queued, held) = split_held(&state, &name, counts.queued);
        let oldest_queued_at = match counts.queued {
            0 => None,
            _ => state.store.oldest_queued(&name).await?,
        };
        last_minute.add(&counters.last_minute);
        report.insert(
            name,
            EndpointStatus {
                state: status
                    .as_ref()
                    .map_or(NOT_CONFIGURED, LaneStatus::name)
                    .to_owned(),
                state_detail: status.as_ref().and_then(detail),
                queued,
                held,
                in_flight: counts.in_flight,
                delivered: counts.delivered,
                dead: counts.dead,
                oldest_queued_at,
                oldest_queued_age_ms: oldest_queued_at.map(|at| now.saturating_sub(at)),
                last_minute: counters.last_minute,
                since_start: SinceStart {
                    enqueued: counters.enqueued,
                    attempts: counters.outcomes.attempts(),
                    delivered: counters.outcomes.delivered,
                    retries: counters.outcomes.retry,
                    dead: counters.outcomes.dead,
                },
            },
        );
    }
    let started_at = state.telemetry.started_at();
    Ok(Json(StatusReport {
        stats,
        started_at,
        uptime_ms: now.saturating_sub(started_at),
        last_minute,
        endpoints: report,
    }))
}

/// Why a lane is not sending, in words, when its state carries a reason or an end.
fn detail(status: &LaneStatus) -> Option<String> {
    match status {
        LaneStatus::Unverified { reason } | LaneStatus::Disabled { reason } => Some(reason.clone()),
        LaneStatus::CircuitOpen { until, failures } => Some(format!(
            "{failures} consecutive failures; next try at {}",
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(*until)
            )
        )),
        LaneStatus::Throttled { until } => Some(endpoints::throttled_reason(*until)),
        _ => None,
    }
}

/// Configured endpoints, endpoints with messages in the store, and endpoints counted since start.
fn endpoint_names(
    state: &AppState,
    counts: &BTreeMap<String, StageCounts>,
    telemetry: &BTreeMap<String, EndpointSnapshot>,
) -> BTreeSet<String> {
    state
        .config
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .chain(counts.keys().cloned())
        .chain(telemetry.keys().cloned())
        .collect()
}

/// Splits an endpoint's queued messages into (queued, held): all are held while its lane is not sending,
/// as `GET /v1/messages/{id}` reports them.
fn split_held(state: &AppState, endpoint: &str, queued: u64) -> (u64, u64) {
    if state.lanes.is_active(endpoint) {
        (queued, 0)
    } else {
        (0, queued)
    }
}

/// The whole exposition.
fn render(state: &AppState, counts: &BTreeMap<String, StageCounts>, size_on_disk: u64) -> String {
    let telemetry = state.telemetry.snapshot(now_millis());
    let names = endpoint_names(state, counts, &telemetry);
    let mut out = Exposition::default();

    out.family(
        "hookd_enqueued_total",
        "counter",
        "Messages made durable by the API since start (idempotent duplicates not counted).",
    );
    for (name, c) in &telemetry {
        out.sample("hookd_enqueued_total", &[("endpoint", name)], c.enqueued);
    }

    out.family(
        "hookd_attempts_total",
        "counter",
        "Delivery attempts since start, by what became of the message: delivered, retry (queued again) or dead.",
    );
    for (name, c) in &telemetry {
        for outcome in Outcome::ALL {
            out.sample(
                "hookd_attempts_total",
                &[("endpoint", name), ("outcome", outcome.as_str())],
                c.outcomes.get(outcome),
            );
        }
    }

    for (metric, outcome, help) in [
        (
            "hookd_deliveries_total",
            Outcome::Delivered,
            "Messages delivered since start.",
        ),
        (
            "hookd_retries_total",
            Outcome::Retry,
            "Retries scheduled since start (an attempt failed and the message was queued again).",
        ),
        (
            "hookd_dead_letters_total",
            Outcome::Dead,
            "Messages moved to the dead-letter queue since start.",
        ),
    ] {
        out.family(metric, "counter", help);
        for (name, c) in &telemetry {
            out.sample(metric, &[("endpoint", name)], c.outcomes.get(outcome));
        }
    }

    let latency = "hookd_delivery_latency_seconds";
    out.family(
        latency,
        "histogram",
        "Time from enqueue (or replay) to delivery, in seconds, retries included.",
    );
    for (name, c) in &telemetry {
        let mut cumulative = 0;
        for (i, bucket) in c.latency.buckets.iter().enumerate() {
            cumulative += bucket;
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), f64::to_string);
            out.sample(
                "hookd_delivery_latency_seconds_bucket",
                &[("endpoint", name), ("le", &le)],
                cumulative,
            );
        }
        out.sample(
            "hookd_delivery_latency_seconds_sum",
            &[("endpoint", name)],
            c.latency.sum_seconds,
        );
        out.sample(
            "hookd_delivery_latency_seconds_count",
            &[("endpoint", name)],
            c.latency.count(),
        );
    }

    out.family(
        "hookd_queue_depth",
        "gauge",
        "Messages in the store by state: queued (due for sending), held (waiting for the endpoint), in_flight, dead.",
    );
    for name in &names {
        let c = counts.get(name).copied().unwrap_or_default();
        let (queued, held) = split_held(state, name, c.queued);
        for (word, value) in [
            ("queued", queued),
            ("held", held),
            ("in_flight", c.in_flight),
            ("dead", c.dead),
        ] {
            out.sample(
                "hookd_queue_depth",
                &[("endpoint", name), ("state", word)],
                value,
            );
        }
    }

    out.family(
        "hookd_endpoint_state",
        "gauge",
        "1 for the state each configured endpoint's lane is in, 0 for the others.",
    );
    for endpoint in &state.config.endpoints {
        let current = state
            .lanes
            .status(&endpoint.name)
            .map_or(NOT_CONFIGURED, |s| s.name());
        for word in LaneStatus::NAMES {
            out.sample(
                "hookd_endpoint_state",
                &[("endpoint", &endpoint.name), ("state", word)],
                u8::from(word == current),
            );
        }
    }

    out.family(
        "hookd_event_subscribers",
        "gauge",
        "Open GET /v1/events streams (hookd tail).",
    );
    out.sample(
        "hookd_event_subscribers",
        &[],
        state.telemetry.subscribers(),
    );

    out.family(
        "hookd_store_size_bytes",
        "gauge",
        "The store's size on disk, as sled reports it.",
    );
    out.sample("hookd_store_size_bytes", &[], size_on_disk);

    out.family(
        "hookd_start_time_seconds",
        "gauge",
        "When this run of the daemon started, in Unix seconds.",
    );
    out.sample(
        "hookd_start_time_seconds",
        &[],
        state.telemetry.started_at() as f64 / 1000.0,
    );

    out.family(
        "hookd_build_info",
        "gauge",
        "Always 1; the version as a label.",
    );
    out.sample(
        "hookd_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.text
}

/// A text exposition being written.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value as the format wants it: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// HELP text escapes only backslash and line feed.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values_and_help() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_help("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"");
    }

    #[test]
    fn writes_samples_in_the_text_format() {
        let mut out = Exposition::default();
        out.family("hookd_x_total", "counter", "An example.");
        out.sample(
            "hookd_x_total",
            &[("endpoint", "a\"b"), ("outcome", "dead")],
            3,
        );
        out.sample("hookd_y", &[], 0.25);
        assert_eq!(
            out.text,
            "# HELP hookd_x_total An example.\n# TYPE hookd_x_total counter\n\
             hookd_x_total{endpoint=\"a\\\"b\",outcome=\"dead\"} 3\nhookd_y 0.25\n"
        );
    }

    #[test]
    fn bucket_bounds_print_as_prometheus_writes_them() {
        let shown: Vec<String> = LATENCY_BUCKETS.iter().map(f64::to_string).collect();
        assert_eq!(shown[0], "0.001");
        assert_eq!(shown[9], "1");
        assert_eq!(shown[10], "2.5");
        assert_eq!(shown.last().map(String::as_str), Some("86400"));
    }
}
