//! The one word for what became of a message after an attempt, shared by the counters and the live feed.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::retry::Decision;

/// What became of a message after an attempt: the retry decision, in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Delivered,
    /// Queued again for a later attempt.
    Retry,
    /// Moved to the dead-letter queue.
    Dead,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Delivered, Outcome::Retry, Outcome::Dead];

    pub fn of(decision: &Decision) -> Outcome {
        match decision {
            Decision::Delivered => Outcome::Delivered,
            Decision::RetryAt(_) => Outcome::Retry,
            Decision::Dead { .. } => Outcome::Dead,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry => "retry",
            Outcome::Dead => "dead",
        }
    }

    pub(super) fn index(self) -> usize {
        match self {
            Outcome::Delivered => 0,
            Outcome::Retry => 1,
            Outcome::Dead => 2,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not an [`Outcome`].
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not one of: delivered, retry, dead")]
pub struct BadOutcome(String);

impl FromStr for Outcome {
    type Err = BadOutcome;
    fn from_str(s: &str) -> Result<Outcome, BadOutcome> {
        match s {
            "delivered" => Ok(Outcome::Delivered),
            "retry" => Ok(Outcome::Retry),
            "dead" => Ok(Outcome::Dead),
            other => Err(BadOutcome(other.to_owned())),
        }
    }
}
