//! When to try again: a pure function of the policy, the attempt count, the verdict and a jitter sample.
//!
//! Nothing here sleeps or reads a clock: [`decide`] turns "attempt n of this message ended like this" into a
//! [`Decision`], and the store persists a retry as a due time, so a schedule of hours survives restarts.
//! The `backoff` crate was not used: it is unmaintained (RUSTSEC-2025-0012) and its stateful iterator does
//! not fit a schedule that lives in the store.

use std::time::Duration;

use crate::model::Millis;

/// How far apart attempts are.
#[derive(Clone, Debug, PartialEq)]
pub enum Backoff {
    /// Delay before attempt k+1 is `delays[k-1]`; past the end the last delay repeats.
    Schedule { delays: Vec<Duration>, jitter: f64 },
    /// Delay before attempt k+1 is `initial * multiplier^(k-1)`, at most `max`.
    Exponential {
        initial: Duration,
        max: Duration,
        multiplier: f64,
        jitter: f64,
    },
}

impl Backoff {
    /// Standard Webhooks' advice: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
    pub fn default_schedule_delays() -> Vec<Duration> {
        [5, 300, 1_800, 7_200, 18_000, 36_000, 50_400, 72_000, 86_400]
            .into_iter()
            .map(Duration::from_secs)
            .collect()
    }

    pub fn default_schedule() -> Backoff {
        Backoff::Schedule {
            delays: Self::default_schedule_delays(),
            jitter: 0.2,
        }
    }

    /// The delay after attempt number `attempt` (1-based) failed; `sample` in `[0, 1)` scales the jitter.
    pub fn delay_after(&self, attempt: u32, sample: f64) -> Duration {
        let index = attempt.saturating_sub(1) as usize;
        let (base, jitter) = match self {
            Backoff::Schedule { delays, jitter } => {
                let base = delays
                    .get(index)
                    .or(delays.last())
                    .copied()
                    .unwrap_or_default();
                (base, *jitter)
            }
            Backoff::Exponential {
                initial,
                max,
                multiplier,
                jitter,
            } => {
                let factor = multiplier.powi(index.min(1_000) as i32);
                let millis = (initial.as_millis() as f64 * factor).min(max.as_millis() as f64);
                (Duration::from_millis(millis as u64), *jitter)
            }
        };
        // Additive jitter: up to `jitter` of the base on top, never below the base.
        base + base.mul_f64(jitter * sample.clamp(0.0, 1.0))
    }
}

/// The per-endpoint rules for giving up.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// Attempts per cycle (enqueue or replay) before the message is dead.
    pub max_attempts: u32,
    /// Age of the cycle after which no further attempt is scheduled.
    pub max_age: Duration,
}

/// What a receiver's answer means for one message, as a format reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Delivered {
        reason: String,
    },
    /// Worth another try; `retry_after` is the receiver's own hint, if it gave one.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Trying again cannot help.
    Final {
        reason: String,
    },
}

impl Verdict {
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Delivered { reason }
            | Verdict::Retry { reason, .. }
            | Verdict::Final { reason } => reason,
        }
    }
}

/// What the store does with the message after an attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Delivered,
    RetryAt(Millis),
    Dead { reason: String },
}

/// The facts about a message's cycle that [`decide`] needs.
#[derive(Clone, Copy, Debug)]
pub struct CycleFacts {
    /// Attempts in this cycle, including the one just made.
    pub attempts: u32,
    pub cycle_started_at: Millis,
    pub now: Millis,
}

/// Decides the next step after an attempt. `jitter_sample` is in `[0, 1)`; `max_retry_after` caps how long a
/// receiver's `Retry-After` may hold a message back.
pub fn decide(
    policy: &RetryPolicy,
    facts: CycleFacts,
    verdict: &Verdict,
    max_retry_after: Duration,
    jitter_sample: f64,
) -> Decision {
    match verdict {
        Verdict::Delivered { .. } => Decision::Delivered,
        Verdict::Final { reason } => Decision::Dead {
            reason: reason.clone(),
        },
        Verdict::Retry {
            reason,
            retry_after,
        } => {
            if facts.attempts >= policy.max_attempts {
                return Decision::Dead {
                    reason: format!("gave up after {} attempts; last: {reason}", facts.attempts),
                };
            }
            let backoff = policy.backoff.delay_after(facts.attempts, jitter_sample);
            let hinted = retry_after
                .map(|d| d.min(max_retry_after))
                .unwrap_or_default();
            let delay = backoff.max(hinted);
            let next = facts.now.saturating_add(delay.as_millis() as u64);
            let deadline = facts
                .cycle_started_at
                .saturating_add(policy.max_age.as_millis() as u64);
            if next > deadline {
                return Decision::Dead {
                    reason: format!(
                        "max_age {} reached after {} attempts; last: {reason}",
                        humantime::format_duration(policy.max_age),
                        facts.attempts
                    ),
                };
            }
            Decision::RetryAt(next)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff::Exponential {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(200),
                multiplier: 2.0,
                jitter: 0.0,
            },
            max_attempts,
            max_age: Duration::from_secs(3600),
        }
    }

    fn retry(after: Option<u64>) -> Verdict {
        Verdict::Retry {
            reason: "HTTP 503".into(),
            retry_after: after.map(Duration::from_secs),
        }
    }

    fn facts(attempts: u32, now: Millis) -> CycleFacts {
        CycleFacts {
            attempts,
            cycle_started_at: 1_000,
            now,
        }
    }

    const CAP: Duration = Duration::from_secs(3600);

    #[test]
    fn exponential_delays_grow_to_the_cap() {
        let b = &policy(10).backoff;
        let ms: Vec<u128> = (1..=5).map(|n| b.delay_after(n, 0.0).as_millis()).collect();
        assert_eq!(ms, [50, 100, 200, 200, 200]);
    }

    #[test]
    fn default_schedule_is_standard_webhooks_and_repeats_its_last_delay() {
        let b = Backoff::Schedule {
            delays: Backoff::default_schedule_delays(),
            jitter: 0.0,
        };
        assert_eq!(b.delay_after(1, 0.5), Duration::from_secs(5));
        assert_eq!(b.delay_after(2, 0.5), Duration::from_secs(300));
        assert_eq!(b.delay_after(9, 0.0), Duration::from_secs(86_400));
        assert_eq!(b.delay_after(20, 0.0), Duration::from_secs(86_400));
    }

    #[test]
    fn jitter_only_adds_and_stays_within_its_share() {
        let b = Backoff::Schedule {
            delays: vec![Duration::from_secs(10)],
            jitter: 0.2,
        };
        assert_eq!(b.delay_after(1, 0.0), Duration::from_secs(10));
        assert_eq!(b.delay_after(1, 0.5), Duration::from_secs(11));
        assert!(b.delay_after(1, 0.999) < Duration::from_secs(12));
    }

    #[test]
    fn table_of_decisions() {
        let p = policy(3);
        let cases = [
            (
                Verdict::Delivered {
                    reason: "HTTP 200".into(),
                },
                1,
                Decision::Delivered,
            ),
            (retry(None), 1, Decision::RetryAt(10_050)),
            (retry(None), 2, Decision::RetryAt(10_100)),
            (
                Verdict::Final {
                    reason: "HTTP 400".into(),
                },
                1,
                Decision::Dead {
                    reason: "HTTP 400".into(),
                },
            ),
            (
                retry(None),
                3,
                Decision::Dead {
                    reason: "gave up after 3 attempts; last: HTTP 503".into(),
                },
            ),
            // Retry-After is honoured when longer than the backoff.
            (retry(Some(2)), 1, Decision::RetryAt(12_000)),
        ];
        for (verdict, attempts, expected) in cases {
            assert_eq!(
                decide(&p, facts(attempts, 10_000), &verdict, CAP, 0.0),
                expected,
                "{verdict:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_capped() {
        let d = decide(
            &policy(5),
            facts(1, 10_000),
            &retry(Some(86_400)),
            Duration::from_secs(60),
            0.0,
        );
        assert_eq!(d, Decision::RetryAt(70_000));
    }

    #[test]
    fn max_age_ends_the_cycle() {
        let mut p = policy(100);
        p.max_age = Duration::from_secs(1);
        // Cycle began at 1_000; the next attempt would be after 2_000.
        let d = decide(&p, facts(1, 1_990), &retry(None), CAP, 0.0);
        assert!(
            matches!(d, Decision::Dead { ref reason } if reason.starts_with("max_age 1s")),
            "{d:?}"
        );
    }
}
