//! The verification handshake of seed 002, run before an endpoint's first delivery.
//!
//! hookd POSTs `url?token=<validation_key>` with the endpoint's bearer header and
//! `{"validation_key", "challenge"}`; the endpoint is verified only if it answers 200 with JSON carrying that
//! key (and the challenge, when it echoes one). A pass is remembered in the store with a fingerprint of the
//! URL and key, so a restart does not repeat it, and a changed URL or key does.

use std::sync::{Arc, RwLock};

use rand::distr::{Alphanumeric, SampleString};

use super::{DispatchContext, LaneStatus, write_status};
use crate::config::EndpointConfig;
use crate::formats::dlr_json;
use crate::model::now_millis;
use crate::store::EndpointState;
use crate::telemetry::EndpointChange;

/// FNV-1a over the URL and the key: stable across builds, unlike `std`'s hasher.
fn fingerprint(endpoint: &EndpointConfig, key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in endpoint.url.as_str().bytes().chain([0]).chain(key.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// True when the endpoint needs no handshake or its current URL and key already passed one.
pub(super) fn already_verified(context: &DispatchContext, endpoint: &EndpointConfig) -> bool {
    let Some(verification) = &endpoint.verification else {
        return true;
    };
    let wanted = fingerprint(endpoint, verification.validation_key.expose());
    match context.store.endpoint_state(&endpoint.name) {
        Ok(state) => state.verified_fingerprint == Some(wanted),
        Err(error) => {
            tracing::error!(endpoint = %endpoint.name, %error, "cannot read the verification state");
            false
        }
    }
}

/// Runs the handshake, records its result in the store and the lane status, and returns the status.
pub(super) async fn verify_now(
    context: &Arc<DispatchContext>,
    endpoint: &EndpointConfig,
    status: &RwLock<LaneStatus>,
) -> LaneStatus {
    let Some(verification) = &endpoint.verification else {
        return LaneStatus::Active;
    };
    let key = verification.validation_key.expose();
    let challenge = Alphanumeric.sample_string(&mut rand::rng(), 24);
    let mut url = endpoint.url.clone();
    url.query_pairs_mut().append_pair("token", key);
    let request = dlr_json::render_handshake(key, &challenge);
    let answer = context
        .sender
        .send(endpoint, &url, &[], None, request)
        .await;
    let (new_status, passed) = match dlr_json::check_handshake(&answer, key, &challenge) {
        Ok(()) => {
            tracing::info!(endpoint = %endpoint.name, "verification handshake passed");
            (LaneStatus::Active, Ok(fingerprint(endpoint, key)))
        }
        Err(reason) => {
            tracing::warn!(endpoint = %endpoint.name, %reason, "verification handshake failed; messages wait");
            (
                LaneStatus::Unverified {
                    reason: reason.clone(),
                },
                Err(reason),
            )
        }
    };
    // Only the verification fields change, atomically: a settings change made meanwhile is kept.
    let recorded = context
        .store
        .update_endpoint_state(&endpoint.name, |state: &mut EndpointState| {
            match &passed {
                Ok(fingerprint) => {
                    state.verified_fingerprint = Some(*fingerprint);
                    state.verified_at = Some(now_millis());
                    state.verification_error = None;
                }
                Err(reason) => {
                    state.verified_fingerprint = None;
                    state.verified_at = None;
                    state.verification_error = Some(reason.clone());
                }
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .await;
    if let Err(error) = recorded {
        tracing::error!(endpoint = %endpoint.name, %error, "cannot record the verification result");
    }
    let (event, detail) = match &passed {
        Ok(_) => (EndpointChange::VerificationPassed, None),
        Err(reason) => (EndpointChange::VerificationFailed, Some(reason.clone())),
    };
    context
        .telemetry
        .endpoint_changed(&endpoint.name, event, detail);
    write_status(status, new_status.clone());
    new_status
}
