//! Whether a lane may send now: the operator's control, then the verification handshake, then the
//! receiver's throttle, then the circuit breaker. Kept apart from the lane's loop because each of them waits
//! without touching messages, and before any such wait the lane gives back what the store read ahead for it
//! (a paused or failing endpoint's messages are queued, not in flight).

use std::time::Duration;

use super::health::Admission;
use super::lane::Lane;
use super::{LaneStatus, lock, read_status, verify, write_status};
use crate::model::now_millis;

/// How often an unverified endpoint's handshake is tried again without an operator asking.
const VERIFY_RETRY: Duration = Duration::from_secs(300);

/// Why a lane stopped waiting.
pub(super) enum Cleared {
    /// Send up to this many messages in the next request.
    Send {
        batch_max: usize,
        probe: bool,
    },
    Shutdown,
}

impl Lane {
    /// Waits until the operator's control, the verification handshake and the circuit breaker all let the
    /// lane send, keeping the lane's status true meanwhile. Messages are not touched while waiting.
    pub(super) async fn clear_to_send(&mut self, mut reverify: bool) -> Cleared {
        loop {
            let control = self.control.borrow_and_update().clone();
            let held = if let Some(reason) = control.disabled {
                Some(LaneStatus::Disabled { reason })
            } else if control.paused {
                Some(LaneStatus::Paused)
            } else {
                None
            };
            if let Some(status) = held {
                write_status(&self.shared.status, status);
                self.give_back_ahead().await;
                tokio::select! {
                    _ = self.shutdown.cancelled() => return Cleared::Shutdown,
                    _ = self.control.changed() => {}
                }
                // The handshake may have gone stale while paused.
                reverify = true;
                continue;
            }
            let verified_before = !reverify
                && matches!(
                    read_status(&self.shared.status),
                    LaneStatus::Active
                        | LaneStatus::CircuitOpen { .. }
                        | LaneStatus::Probing
                        | LaneStatus::Throttled { .. }
                );
            if !verified_before {
                self.give_back_ahead().await;
            }
            if !verified_before && !self.wait_until_verified().await {
                return Cleared::Shutdown;
            }
            reverify = false;
            let now = now_millis();
            // The receiver asked to wait (429/503 with Retry-After): nothing is leased before then.
            let throttled = self.shared.throttled_until(now);
            let admission = match throttled {
                Some(until) => {
                    write_status(&self.shared.status, LaneStatus::Throttled { until });
                    None
                }
                None => Some(lock(&self.shared.circuit).admit(now)),
            };
            let wait_until = match admission {
                None => throttled,
                Some(Admission::Send) => {
                    write_status(&self.shared.status, LaneStatus::Active);
                    return Cleared::Send {
                        batch_max: self.current().batch_max,
                        probe: false,
                    };
                }
                Some(Admission::Probe) => {
                    write_status(&self.shared.status, LaneStatus::Probing);
                    tracing::info!(endpoint = %self.name, "circuit cooldown over: sending one probe");
                    self.context.telemetry.endpoint_changed(
                        &self.name,
                        crate::telemetry::EndpointChange::CircuitHalfOpen,
                        Some("cooldown over: sending one probe".into()),
                    );
                    return Cleared::Send {
                        batch_max: 1,
                        probe: true,
                    };
                }
                Some(Admission::WaitUntil(until)) => {
                    let failures = lock(&self.shared.circuit).consecutive_failures();
                    write_status(
                        &self.shared.status,
                        LaneStatus::CircuitOpen { until, failures },
                    );
                    Some(until)
                }
                Some(Admission::AwaitProbe) => {
                    write_status(&self.shared.status, LaneStatus::Probing);
                    None
                }
            };
            // Throttled, circuit open or awaiting a probe's answer: nothing read ahead waits with the lane.
            self.give_back_ahead().await;
            let sleep = async {
                match wait_until {
                    Some(until) => {
                        tokio::time::sleep(Duration::from_millis(until.saturating_sub(now))).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return Cleared::Shutdown,
                _ = self.control.changed() => {}
                _ = self.shared.health_changed.notified() => {}
                _ = sleep => {}
            }
        }
    }

    /// Holds the lane until the endpoint passed its verification handshake (at once when it needs none or
    /// passed before). Returns false when shutdown came first.
    async fn wait_until_verified(&self) -> bool {
        loop {
            let endpoint = self.current();
            if verify::already_verified(&self.context, &endpoint) {
                write_status(&self.shared.status, LaneStatus::Active);
                return true;
            }
            // A handshake may hang up to the endpoint's timeout: shutdown does not wait for it.
            let status = tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                status = verify::verify_now(&self.context, &endpoint, &self.shared.status) => status,
            };
            if status == LaneStatus::Active {
                return true;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = self.recheck.notified() => {}
                _ = tokio::time::sleep(VERIFY_RETRY) => {}
            }
        }
    }
}
