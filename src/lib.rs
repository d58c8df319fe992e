//! hookd: a reliable outbound webhook dispatcher.
//!
//! Reading order:
//! - [`model`]: the domain words (message, attempt, state).
//! - [`config`]: the TOML file, validated into [`config::Config`].
//! - [`store`]: the durable queue, one `Store` over its backends; only `store/sled/` names sled.
//! - [`formats`]: receiver protocols, pure render/classify functions.
//! - [`retry`]: the pure retry decision.
//! - [`guard`] and [`http_client`]: where requests may go, and the one HTTP client.
//! - [`dispatch`]: per-endpoint lanes that lease due messages and run attempts.
//! - [`telemetry`]: run-time counters and the live attempt feed (`/metrics`, `hookd status`, `hookd tail`).
//! - [`api`]: the Unix-socket API and its client.
//! - [`daemon`]: start-up and ordered shutdown ([`notify`]: systemd's readiness protocol); [`cli`]: the
//!   `hookd` command; [`demo`]: `hookd demo`.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod dispatch;
pub mod endpoint_spec;
pub mod faults;
pub mod formats;
pub mod guard;
pub mod http_client;
pub mod model;
pub mod notify;
pub mod retry;
pub mod signing;
pub mod store;
pub mod store_config;
pub mod telemetry;
