//! Background tasks that run beside the lanes while a store is served: the expired-lease sweep and the
//! retention pruner. Both stop on the lanes' token.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::model::now_millis;
use crate::store::Store;

/// How often expired leases are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// How often delivered messages past the retention window are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Gives back, every [`SWEEP_EVERY`], the messages whose lease has expired: their attempt was lost without
/// its guard giving them back (it cannot be, short of a bug). Nothing waits for a restart.
pub(super) async fn sweep_leases(
    store: Store,
    lanes: crate::dispatch::Lanes,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match store.release_expired(now_millis()).await {
            Ok(endpoints) if endpoints.is_empty() => {}
            Ok(mut endpoints) => {
                tracing::warn!(
                    given_back = endpoints.len(),
                    "expired leases: their messages are due again, no attempt counted"
                );
                endpoints.sort();
                endpoints.dedup();
                for endpoint in &endpoints {
                    lanes.wake(endpoint);
                }
            }
            Err(error) => tracing::error!(%error, "cannot give back expired leases"),
        }
    }
}

pub(super) async fn prune_delivered(store: Store, retention: Duration, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let before = now_millis().saturating_sub(retention.as_millis() as u64);
        // A pass can read many records: the store runs it where no tokio worker (a lane's lease, an
        // attempt) waits for it (sled: on a blocking thread).
        match store.prune_delivered(before).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned delivered messages past retention"),
            Err(error) => tracing::error!(%error, "pruning delivered messages failed"),
        }
    }
}
