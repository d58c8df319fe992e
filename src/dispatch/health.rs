//! Endpoint health: the circuit breaker and the rate limiter that decide *when* a lane may send.
//!
//! Both are plain state machines over millisecond timestamps, so their rules are unit-tested without clocks.
//! A lane asks [`Circuit::admit`] before leasing: while the circuit is open nothing is leased, so queued
//! messages keep their attempts; after the cooldown one message goes out as a probe, and its outcome closes
//! or re-opens the circuit. [`RateLimiter`] spaces requests evenly at the configured rate.

use crate::config::CircuitBreakerConfig;
use crate::formats::{Answer, TransportKind};
use crate::model::Millis;

/// What an attempt's answer says about the receiver's health (not about the message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// The receiver answered sanely (any 1xx–4xx status except 429).
    Up,
    /// The receiver is failing: no connection, a timeout, a broken exchange, or a 5xx.
    Down,
    /// Says nothing either way (a 429 is the receiver pacing us; a refused destination never reached it).
    Unknown,
}

impl Health {
    pub fn of(answer: &Answer) -> Health {
        match answer {
            Answer::Response { status, .. } if *status >= 500 => Health::Down,
            Answer::Response { status: 429, .. } => Health::Unknown,
            Answer::Response { .. } => Health::Up,
            Answer::Transport {
                kind: TransportKind::Refused | TransportKind::Request,
                ..
            } => Health::Unknown,
            Answer::Transport { .. } => Health::Down,
        }
    }
}

/// The circuit's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Sending normally.
    Closed,
    /// Failing: nothing is sent before `until`.
    Open { until: Millis },
    /// The cooldown is over and one probe is in flight; nothing else is sent until it answers.
    Probing,
}

/// What a lane may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Send as usual.
    Send,
    /// Send exactly one message as a probe.
    Probe,
    /// Send nothing before this time.
    WaitUntil(Millis),
    /// A probe is in flight: wait for its outcome.
    AwaitProbe,
}

/// A per-endpoint circuit breaker.
#[derive(Clone, Debug)]
pub struct Circuit {
    config: CircuitBreakerConfig,
    state: CircuitState,
    consecutive_failures: u32,
}

impl Circuit {
    pub fn new(config: CircuitBreakerConfig) -> Circuit {
        Circuit {
            config,
            state: CircuitState::Closed,
            consecutive_failures: 0,
        }
    }

    /// Takes new settings (threshold, cooldown) from the next decision on, keeping the state it is in.
    pub fn reconfigure(&mut self, config: CircuitBreakerConfig) {
        self.config = config;
    }

    pub fn state(&self) -> CircuitState {
        self.state
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Asks whether the lane may send at `now`; an open circuit whose cooldown is over turns to probing.
    pub fn admit(&mut self, now: Millis) -> Admission {
        match self.state {
            CircuitState::Closed => Admission::Send,
            CircuitState::Open { until } if now < until => Admission::WaitUntil(until),
            CircuitState::Open { .. } => {
                self.state = CircuitState::Probing;
                Admission::Probe
            }
            CircuitState::Probing => Admission::AwaitProbe,
        }
    }

    /// The lane leased nothing for its probe (no message was due): the next admission probes again.
    pub fn probe_not_sent(&mut self, now: Millis) {
        if self.state == CircuitState::Probing {
            self.state = CircuitState::Open { until: now };
        }
    }

    /// Records an attempt's effect on health. Returns true when the circuit changed state.
    pub fn record(&mut self, health: Health, now: Millis) -> bool {
        let before = self.state;
        match health {
            Health::Unknown => {
                // A probe that taught nothing must not leave the lane waiting forever.
                if self.state == CircuitState::Probing {
                    self.state = CircuitState::Open { until: now };
                }
            }
            Health::Up => {
                self.consecutive_failures = 0;
                self.state = CircuitState::Closed;
            }
            Health::Down => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let trips = match self.state {
                    CircuitState::Probing => true,
                    CircuitState::Closed => {
                        self.consecutive_failures >= self.config.failure_threshold
                    }
                    // Attempts already in flight when it opened: the cooldown already runs.
                    CircuitState::Open { .. } => false,
                };
                if trips {
                    let cooldown = self.config.cooldown.as_millis() as Millis;
                    self.state = CircuitState::Open {
                        until: now + cooldown,
                    };
                }
            }
        }
        before != self.state
    }

    /// Forgets failures and closes (an operator re-enabled the endpoint).
    pub fn reset(&mut self) {
        self.consecutive_failures = 0;
        self.state = CircuitState::Closed;
    }
}

/// Spaces requests at most `rate` per second: request n may start no earlier than `start + n / rate`.
/// No bursts: an idle lane does not save up credit.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    rate_per_second: f64,
    interval_micros: u64,
    next_micros: u64,
}

impl RateLimiter {
    pub fn new(rate_per_second: f64) -> RateLimiter {
        RateLimiter {
            rate_per_second,
            interval_micros: (1_000_000.0 / rate_per_second).ceil() as u64,
            next_micros: 0,
        }
    }

    /// The rate it was made for, in requests per second.
    pub fn rate(&self) -> f64 {
        self.rate_per_second
    }

    /// How long to wait from `now_micros` before the next request may start (zero when it may start now).
    pub fn wait(&self, now_micros: u64) -> u64 {
        self.next_micros.saturating_sub(now_micros)
    }

    /// Takes the slot of one request starting at `now_micros`.
    pub fn take(&mut self, now_micros: u64) {
        self.next_micros = self.next_micros.max(now_micros) + self.interval_micros;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn circuit(threshold: u32) -> Circuit {
        Circuit::new(CircuitBreakerConfig {
            failure_threshold: threshold,
            cooldown: Duration::from_millis(1_000),
        })
    }

    fn response(status: u16) -> Answer {
        Answer::Response {
            status,
            retry_after: None,
            body: Bytes::new(),
        }
    }

    #[test]
    fn health_reads_the_answer() {
        assert_eq!(Health::of(&response(200)), Health::Up);
        assert_eq!(Health::of(&response(400)), Health::Up);
        assert_eq!(Health::of(&response(503)), Health::Down);
        assert_eq!(Health::of(&response(429)), Health::Unknown);
        let timeout = Answer::Transport {
            kind: TransportKind::Timeout,
            message: String::new(),
        };
        assert_eq!(Health::of(&timeout), Health::Down);
        let refused = Answer::Transport {
            kind: TransportKind::Refused,
            message: String::new(),
        };
        assert_eq!(Health::of(&refused), Health::Unknown);
    }

    #[test]
    fn opens_after_threshold_consecutive_failures_only() {
        let mut c = circuit(3);
        c.record(Health::Down, 0);
        c.record(Health::Down, 0);
        c.record(Health::Up, 0);
        c.record(Health::Down, 0);
        c.record(Health::Down, 0);
        assert_eq!(c.admit(10), Admission::Send, "a success in between resets");
        assert!(c.record(Health::Down, 10));
        assert_eq!(c.state(), CircuitState::Open { until: 1_010 });
        assert_eq!(c.admit(500), Admission::WaitUntil(1_010));
    }

    #[test]
    fn probes_once_after_cooldown_and_closes_on_success() {
        let mut c = circuit(1);
        c.record(Health::Down, 0);
        assert_eq!(c.admit(1_000), Admission::Probe);
        assert_eq!(c.admit(1_001), Admission::AwaitProbe, "one probe at a time");
        assert!(c.record(Health::Up, 1_002));
        assert_eq!(c.admit(1_003), Admission::Send);
        assert_eq!(c.consecutive_failures(), 0);
    }

    #[test]
    fn a_failed_probe_reopens_for_another_cooldown() {
        let mut c = circuit(5);
        for _ in 0..5 {
            c.record(Health::Down, 0);
        }
        assert_eq!(c.admit(1_000), Admission::Probe);
        c.record(Health::Down, 1_200);
        assert_eq!(c.admit(1_300), Admission::WaitUntil(2_200));
    }

    #[test]
    fn failures_of_attempts_in_flight_do_not_extend_the_cooldown() {
        let mut c = circuit(1);
        c.record(Health::Down, 0);
        c.record(Health::Down, 900);
        assert_eq!(c.admit(1_000), Admission::Probe);
    }

    #[test]
    fn an_unsent_or_uninformative_probe_lets_the_next_admission_probe_again() {
        let mut c = circuit(1);
        c.record(Health::Down, 0);
        assert_eq!(c.admit(1_000), Admission::Probe);
        c.probe_not_sent(1_050);
        assert_eq!(c.admit(1_100), Admission::Probe);
        c.record(Health::Unknown, 1_150);
        assert_eq!(c.admit(1_200), Admission::Probe);
    }

    #[test]
    fn rate_limiter_spaces_requests_without_bursts() {
        let mut r = RateLimiter::new(10.0); // one per 100 ms
        assert_eq!(r.wait(0), 0);
        r.take(0);
        assert_eq!(r.wait(50_000), 50_000);
        r.take(100_000);
        assert_eq!(r.wait(150_000), 50_000);
        // Idle for a long time: no saved-up credit beyond one request.
        r.take(10_000_000);
        assert_eq!(r.wait(10_000_000), 100_000);
    }
}
