//! Fault injection for the tests of the recovery paths: a debug build of the daemon fails on purpose at the
//! points named in `HOOKD_FAULTS` (`point=count,...`, each point failing its first `count` times), so that an
//! integration test can show that a panicking attempt or a failed outcome write strands nothing. A release
//! build has no such points: [`hit`] is `false`, and the environment variable is never read.

/// An attempt's task panics after its messages were leased, before it sends.
pub const ATTEMPT_PANIC: &str = "attempt_panic";
/// Writing an attempt's outcomes fails (as a failed shared transaction would).
pub const OUTCOME_WRITE: &str = "outcome_write";
/// Writing a large batch's second or later chunk fails (sled backend), after earlier chunks were written.
pub const LATER_CHUNK_WRITE: &str = "later_chunk_write";

/// Whether the fault `point` strikes now (debug builds with `HOOKD_FAULTS` only).
#[cfg(debug_assertions)]
pub fn hit(point: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static LEFT: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    let left = LEFT.get_or_init(|| {
        let spec = std::env::var("HOOKD_FAULTS").unwrap_or_default();
        let faults = spec
            .split(',')
            .filter_map(|item| item.split_once('='))
            .filter_map(|(name, count)| Some((name.trim().to_owned(), count.trim().parse().ok()?)))
            .collect();
        Mutex::new(faults)
    });
    let mut left = left.lock().unwrap_or_else(|p| p.into_inner());
    match left.get_mut(point) {
        Some(count) if *count > 0 => {
            *count -= 1;
            true
        }
        _ => false,
    }
}

/// Whether the fault `point` strikes now: never, in a release build.
#[cfg(not(debug_assertions))]
pub fn hit(_point: &str) -> bool {
    false
}
