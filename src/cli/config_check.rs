//! `hookd config check`: validates a config file without starting the daemon, and warns about what would
//! surprise at run time: endpoints whose IP-literal URL the destination guard refuses, and run-time
//! overrides kept in the data dir that shadow the file's values. `hookd migrate` lives here too: it also
//! reads the config and acts on the store without a daemon.

use std::path::Path;

use super::CliError;
use crate::config::Config;
use crate::guard::DestinationGuard;
use crate::store::{MARKER_FILE, Store, StoreError};

/// Loads and validates `path` (a failure is the config error, exit 2), prints a one-line summary on stdout
/// and the warnings and notes on stderr.
pub(super) async fn run_check(path: &Path) -> Result<(), CliError> {
    let config = Config::load(path)?;
    let count = config.endpoints.len();
    outln!(
        "{}: valid: {count} endpoint{} declared, data dir {}, socket {}",
        path.display(),
        if count == 1 { "" } else { "s" },
        config.data_dir.display(),
        config.socket.display()
    );
    let guard = DestinationGuard::new(config.allow.clone());
    for endpoint in &config.endpoints {
        if let Err(refused) = guard.check_url(&endpoint.url) {
            errln!(
                "hookd: warning: endpoint `{}`: every request would be refused: {refused}",
                endpoint.name
            );
        }
    }
    check_overrides(&config);
    Ok(())
}

/// `hookd migrate`: applies the PostgreSQL schema's pending migrations to the database the config names.
pub(super) async fn run_migrate(path: &Path) -> Result<(), CliError> {
    let config = Config::load(path)?;
    let crate::store_config::StoreChoice::Postgres { url, .. } = &config.store else {
        return Err(CliError::Usage(format!(
            "{}: no [store] url: the embedded sled store needs no migration",
            path.display()
        )));
    };
    let applied = Store::migrate(url.expose())
        .await
        .map_err(|e| CliError::Offline(format!("cannot migrate the database: {e}")))?;
    outln!("migrations applied: {applied} (the schema is current)");
    Ok(())
}

/// Warns about the declared endpoints whose run-time overrides (`hookd endpoints set`) in the data dir are
/// laid over the file's table at start. Needs the store: skipped with a note when the data dir is not a
/// hookd data dir yet, or a running daemon holds it.
fn check_overrides(config: &Config) {
    let dir = &config.data_dir;
    if !dir.join(MARKER_FILE).exists() {
        return;
    }
    let store = match Store::open(dir, config.sled_cache_bytes) {
        Ok(store) => store,
        Err(StoreError::Locked(_)) => {
            errln!(
                "hookd: note: data dir {} is held by a running hookd: run-time overrides not checked \
                 (`hookd endpoints show NAME` lists an endpoint's)",
                dir.display()
            );
            return;
        }
        Err(error) => {
            errln!("hookd: warning: run-time overrides not checked: {error}");
            return;
        }
    };
    let states = match store.endpoint_states() {
        Ok(states) => states,
        Err(error) => {
            errln!("hookd: warning: run-time overrides not checked: {error}");
            return;
        }
    };
    for (name, state) in states {
        if state.settings.is_empty() || config.endpoint(&name).is_none() {
            continue;
        }
        let keys: Vec<&str> = state.settings.keys().map(String::as_str).collect();
        errln!(
            "hookd: warning: endpoint `{name}`: run-time overrides in the data dir shadow the file: {} \
             (`hookd endpoints show {name}` shows them, `hookd endpoints reset {name}` drops them)",
            keys.join(", ")
        );
    }
}
