//! End-to-end tests: the real `hookd` binary over its real Unix socket, real HTTP receivers on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod cli_ops;
mod cli_surface;
mod config_check;
mod crash;
mod dead_letters;
mod delivery;
mod demo;
mod disk;
mod durability;
mod endpoints_api;
mod formats;
mod harness;
mod health;
mod hostile;
mod lifecycle;
mod metrics;
mod raw_receiver;
mod secrets;
mod settings;
mod signing;
mod tail;
mod tokens;
