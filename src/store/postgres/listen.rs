//! The node's ear: `LISTEN` on `hookd_work` (messages became due: wake those lanes) and `hookd_changes` (an
//! endpoint or the token list changed: reread it; a stopping node gave up lanes: forget it as their owner
//! and wake them), passed on to the dispatcher as [`Change`]s.
//!
//! A node's own notifications are skipped: it applied its change already. Notifications sent while the
//! listener's connection was down are lost, so after every reconnect the node rereads every endpoint and
//! token and reports work on every endpoint the tally says has some: a missed notification delays nothing
//! by more than the reconnect.

use std::sync::Weak;
use std::time::Duration;

use sqlx::postgres::PgListener;

use super::{Change, Inner, PgStore, pg_error};
use crate::store::StoreError;

pub const WORK: &str = "hookd_work";
pub const CHANGES: &str = "hookd_changes";

/// How long to wait before connecting the listener again after a failure.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Starts listening before it returns (so nothing notified after the node's start is missed), then
/// hands the listener to a task that applies what it hears.
pub async fn spawn(store: Weak<Inner>, url: String) -> Result<(), StoreError> {
    let first_listener = listen(&url).await.map_err(pg_error)?;
    tokio::spawn(async move {
        let Some(stop) = PgStore::upgrade(&store).map(|s| s.inner.stop.clone()) else {
            return;
        };
        let mut first = Some(first_listener);
        let mut first_done = false;
        loop {
            let listener = match first.take() {
                Some(listener) => Ok(listener),
                None => tokio::select! {
                    _ = stop.cancelled() => return,
                    listener = listen(&url) => listener,
                },
            };
            let mut listener = match listener {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for other nodes' changes; trying again");
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            };
            if first_done {
                let Some(store) = PgStore::upgrade(&store) else {
                    return;
                };
                store.resync().await;
            }
            first_done = true;
            loop {
                let received = tokio::select! {
                    _ = stop.cancelled() => return,
                    received = listener.try_recv() => received,
                };
                let Some(store) = PgStore::upgrade(&store) else {
                    return;
                };
                match received {
                    Ok(Some(notification)) => {
                        store
                            .heard(notification.channel(), notification.payload())
                            .await
                    }
                    // The connection was lost: connect again, then catch up.
                    Ok(None) | Err(_) => break,
                }
            }
        }
    });
    Ok(())
}

async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen_all([WORK, CHANGES]).await?;
    Ok(listener)
}

impl PgStore {
    /// Applies one notification (`node-id rest`).
    async fn heard(&self, channel: &str, payload: &str) {
        let Some((node, rest)) = payload.split_once(' ') else {
            return;
        };
        if node == self.inner.node.to_string() {
            return;
        }
        let change = match channel {
            WORK => Change::Work(rest.split(',').map(str::to_owned).collect()),
            CHANGES => match rest.split_once(' ') {
                Some(("endpoint", name)) => {
                    if let Err(error) = self.reload_endpoint(name).await {
                        tracing::warn!(endpoint = name, %error, "cannot reread a changed endpoint");
                    }
                    Change::Endpoint(name.to_owned())
                }
                Some((super::claims::RELEASED, list)) => {
                    // The node gave up these lanes (it stops): forget it as their owner, and wake them.
                    let endpoints: Vec<String> = list.split(',').map(str::to_owned).collect();
                    if let Ok(sender) = node.parse::<uuid::Uuid>() {
                        for endpoint in &endpoints {
                            self.inner.owners.forget_held_by(endpoint, sender);
                        }
                    }
                    Change::Work(endpoints)
                }
                _ if rest == "tokens" => {
                    if let Err(error) = self.reload_tokens().await {
                        tracing::warn!(%error, "cannot reread the changed tokens");
                    }
                    Change::Tokens
                }
                _ => return,
            },
            _ => return,
        };
        let _ = self.inner.changes.send(change);
    }

    /// After a reconnect: rereads everything another node may have changed meanwhile.
    async fn resync(&self) {
        let before: Vec<String> = self.endpoint_names();
        if let Err(error) = self.reload_endpoints().await {
            tracing::warn!(%error, "cannot reread the endpoints after reconnecting");
        }
        if let Err(error) = self.reload_tokens().await {
            tracing::warn!(%error, "cannot reread the tokens after reconnecting");
        }
        if let Err(error) = self.reload_tally().await {
            tracing::warn!(%error, "cannot reread the tally after reconnecting");
        }
        let mut names = before;
        names.extend(self.endpoint_names());
        for name in super::distinct(names) {
            let _ = self.inner.changes.send(Change::Endpoint(name));
        }
        let _ = self.inner.changes.send(Change::Tokens);
        let _ = self
            .inner
            .changes
            .send(Change::Work(self.queued_endpoints()));
    }
}
