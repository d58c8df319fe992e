//! The `retry` table validated into a [`Backoff`]: a fixed schedule or an exponential one, never both; its
//! own file because the rules (which keys combine, what each bounds) are separate from the endpoint's.

use std::time::Duration;

use super::{RawRetry, duration};
use crate::retry::Backoff;

impl RawRetry {
    pub(super) fn validate(self) -> Result<Backoff, (&'static str, String)> {
        let jitter = self.jitter.unwrap_or(0.2);
        if !(0.0..=1.0).contains(&jitter) {
            return Err((
                "retry.jitter",
                format!("{jitter} must be between 0.0 and 1.0"),
            ));
        }
        let exponential =
            self.initial_ms.is_some() || self.max_ms.is_some() || self.multiplier.is_some();
        match (self.schedule, exponential) {
            (Some(_), true) => Err((
                "retry",
                "give either `schedule` or `initial_ms`/`max_ms`/`multiplier`, not both".into(),
            )),
            (Some(list), false) => {
                if list.is_empty() {
                    return Err(("retry.schedule", "must list at least one delay".into()));
                }
                let delays = list
                    .iter()
                    .map(|d| duration(Some(d), "0s"))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|r| ("retry.schedule", r))?;
                Ok(Backoff::Schedule { delays, jitter })
            }
            (None, false) => Ok(Backoff::Schedule {
                delays: Backoff::default_schedule_delays(),
                jitter,
            }),
            (None, true) => {
                let initial = self.initial_ms.unwrap_or(1_000);
                let max = self.max_ms.unwrap_or(3_600_000);
                let multiplier = self.multiplier.unwrap_or(2.0);
                if initial == 0 {
                    return Err(("retry.initial_ms", "must be at least 1".into()));
                }
                if max < initial {
                    return Err((
                        "retry.max_ms",
                        format!("{max} is below initial_ms {initial}"),
                    ));
                }
                if !(multiplier >= 1.0 && multiplier.is_finite()) {
                    return Err((
                        "retry.multiplier",
                        format!("{multiplier} must be a number >= 1.0"),
                    ));
                }
                Ok(Backoff::Exponential {
                    initial: Duration::from_millis(initial),
                    max: Duration::from_millis(max),
                    multiplier,
                    jitter,
                })
            }
        }
    }
}
