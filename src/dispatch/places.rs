//! A lane's places: what an attempt must hold before its messages are leased.
//!
//! There are two kinds. A sending place, one per HTTP exchange in flight (`concurrency` of them), bounds what
//! a receiver sees at once; a leased place, one per attempt whose outcome is not yet recorded (twice as many),
//! lets the next request go out while the last one's outcome is still being written, and bounds what a lane
//! holds leased. A hanging receiver fills only its own lane's places.

use std::sync::Arc;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// A lane's places for attempts (module docs).
pub(super) struct Places {
    /// The endpoint's `concurrency` these places were made for.
    pub concurrency: usize,
    /// One per HTTP exchange in flight: `concurrency` of them.
    sending: Arc<Semaphore>,
    /// One per attempt whose outcome is not yet recorded: `2 × concurrency` of them.
    leased: Arc<Semaphore>,
}

/// The places one attempt holds: it gives up `sending` once its exchange has ended and its health is noted,
/// and `leased` once its outcome is recorded.
pub(super) struct AttemptPlaces {
    pub sending: OwnedSemaphorePermit,
    pub leased: OwnedSemaphorePermit,
}

impl Places {
    pub fn new(concurrency: usize) -> Places {
        Places {
            concurrency,
            sending: Arc::new(Semaphore::new(concurrency)),
            leased: Arc::new(Semaphore::new(concurrency.saturating_mul(2))),
        }
    }

    /// Waits for a leased place and then a sending place.
    pub async fn take(&self) -> Result<AttemptPlaces, AcquireError> {
        let leased = Arc::clone(&self.leased).acquire_owned().await?;
        let sending = Arc::clone(&self.sending).acquire_owned().await?;
        Ok(AttemptPlaces { sending, leased })
    }

    /// The places free beside those a lane already holds, taken without waiting.
    pub fn spare(&self) -> Vec<AttemptPlaces> {
        std::iter::from_fn(|| {
            let leased = Arc::clone(&self.leased).try_acquire_owned().ok()?;
            let sending = Arc::clone(&self.sending).try_acquire_owned().ok()?;
            Some(AttemptPlaces { sending, leased })
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_attempt_holds_a_sending_place_for_its_exchange_and_a_leased_place_until_recorded() {
        let places = Places::new(2);
        let first = places.take().await.expect("a place");
        let second = places.take().await.expect("a place");
        assert!(places.spare().is_empty(), "both sending places are taken");

        // Both exchanges end; their outcomes are still being recorded.
        drop(first.sending);
        drop(second.sending);
        let more = places.spare();
        assert_eq!(more.len(), 2, "two more exchanges may start");

        // Those two end as well: sending places are free, but all four leased places are taken.
        let still_recording: Vec<_> = more.into_iter().map(|taken| taken.leased).collect();
        assert!(places.spare().is_empty(), "no fifth attempt");

        // A recorded outcome frees a place.
        drop(first.leased);
        assert_eq!(places.spare().len(), 1);
        drop((second.leased, still_recording));
    }
}
