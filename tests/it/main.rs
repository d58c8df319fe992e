//! End-to-end tests: the real `hookd` binary over its real Unix socket, real HTTP receivers on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod crash;
mod dead_letters;
mod delivery;
mod formats;
mod harness;
mod lifecycle;
mod settings;
mod tokens;
