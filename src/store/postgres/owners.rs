//! Lane ownership: an endpoint's lane runs on one node of the cluster at a time.
//!
//! Why one owner, rather than every node leasing from a shared queue: an endpoint's concurrency, rate limit
//! and circuit breaker are state a lane keeps from one attempt to the next. With one lane for the cluster
//! they hold for the cluster, with no shared counter to update per request. The owner holds a lease on the
//! endpoint (`hookd_owners`: owner, until) that its heartbeat renews; a node that finds another's live lease
//! answers its lane `Idle`, and the lane stops. When the owner's lane runs out of work and holds no claim
//! of the endpoint, it gives the lease up, so the next burst may land on any node; when the owner dies, its
//! lease runs out and the reaper of any other node wakes the endpoint there (`claims.rs`); when it stops
//! gracefully, it deletes its leases and says so (`node released a,b` on `hookd_changes`), and the others
//! forget it as the owner and wake those lanes at once.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use uuid::Uuid;

use super::{PgStore, lock, sql_millis};
use crate::model::{Millis, now_millis};
use crate::store::StoreError;

/// Who this node last saw owning each endpoint it asked about.
#[derive(Default)]
pub struct Owners {
    seen: Mutex<HashMap<String, Owner>>,
}

#[derive(Clone, Copy)]
struct Owner {
    node: Uuid,
    until: Millis,
}

impl Owners {
    /// The endpoints this node owns.
    pub fn mine(&self, node: Uuid) -> Vec<String> {
        lock(&self.seen)
            .iter()
            .filter(|(_, owner)| owner.node == node)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// This node's leases in the database were renewed until `until`: those are `kept`; any other this node
    /// believed it held is lost, unless it was taken since the renewal began (its own lease runs at least
    /// as long). An endpoint given up meanwhile (`disown`) is not taken back: the renewal read the database
    /// before that lease was deleted, and believing it held would let two nodes run the lane.
    pub fn renewed(&self, node: Uuid, until: Millis, kept: &[String]) {
        let kept: HashSet<&str> = kept.iter().map(String::as_str).collect();
        lock(&self.seen).retain(|name, owner| {
            if owner.node != node {
                true
            } else if kept.contains(name.as_str()) {
                owner.until = owner.until.max(until);
                true
            } else {
                owner.until >= until
            }
        });
    }

    pub fn forget(&self, endpoint: &str) {
        lock(&self.seen).remove(endpoint);
    }

    /// Forgets `endpoint`'s owner if it is `node` (which said it gave the lane up).
    pub fn forget_held_by(&self, endpoint: &str, node: Uuid) {
        let mut seen = lock(&self.seen);
        if seen.get(endpoint).is_some_and(|owner| owner.node == node) {
            seen.remove(endpoint);
        }
    }
}

impl PgStore {
    /// Whether this node may run `endpoint`'s lane now: it owns the endpoint, or took it (no one else held a
    /// live lease). Asks the database only when this node's knowledge has run out.
    pub(super) async fn own(&self, endpoint: &str) -> Result<bool, StoreError> {
        let now = now_millis();
        let node = self.inner.node;
        let margin = self.inner.options.heartbeat.as_millis() as Millis;
        if let Some(owner) = lock(&self.inner.owners.seen).get(endpoint).copied() {
            if owner.node == node && owner.until > now + margin {
                return Ok(true);
            }
            if owner.node != node && owner.until > now {
                return Ok(false);
            }
        }
        let until = now + self.inner.options.lease_ttl.as_millis() as Millis;
        let took: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO hookd_owners (endpoint, owner, until) VALUES ($1, $2, $3)
             ON CONFLICT (endpoint) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until
                 WHERE hookd_owners.owner = EXCLUDED.owner OR hookd_owners.until < $4
             RETURNING owner",
        )
        .bind(endpoint)
        .bind(node)
        .bind(sql_millis(until))
        .bind(sql_millis(now))
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        let held = match took {
            Some(_) => Owner { node, until },
            None => {
                // Someone else holds a live lease: remember whose, and until when.
                let other: Option<(Uuid, i64)> =
                    sqlx::query_as("SELECT owner, until FROM hookd_owners WHERE endpoint = $1")
                        .bind(endpoint)
                        .fetch_optional(self.pool())
                        .await
                        .map_err(|e| self.failed_with(e))?;
                match other {
                    Some((other, other_until)) => Owner {
                        node: other,
                        until: super::millis_of(other_until),
                    },
                    // Given up since: ask again next time.
                    None => return Ok(false),
                }
            }
        };
        lock(&self.inner.owners.seen).insert(endpoint.to_owned(), held);
        Ok(held.node == node)
    }

    /// Gives up the lane lease of `endpoint`, if this node holds it.
    pub(super) async fn disown(&self, endpoint: &str) -> Result<(), StoreError> {
        let mine = lock(&self.inner.owners.seen)
            .get(endpoint)
            .is_some_and(|owner| owner.node == self.inner.node);
        if !mine {
            return Ok(());
        }
        self.inner.owners.forget(endpoint);
        sqlx::query("DELETE FROM hookd_owners WHERE endpoint = $1 AND owner = $2")
            .bind(endpoint)
            .bind(self.inner.node)
            .execute(self.pool())
            .await
            .map_err(|e| self.failed_with(e))?;
        Ok(())
    }

    /// Renews every lane lease this node holds; forgets those it lost.
    pub(super) async fn renew_owned(&self) -> Result<(), StoreError> {
        let node = self.inner.node;
        let until = now_millis() + self.inner.options.lease_ttl.as_millis() as Millis;
        let kept: Vec<String> = sqlx::query_scalar(
            "UPDATE hookd_owners SET until = $2 WHERE owner = $1 RETURNING endpoint",
        )
        .bind(node)
        .bind(sql_millis(until))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.failed_with(e))?;
        self.inner.owners.renewed(node, until, &kept);
        Ok(())
    }

    /// Removes lane leases that ran out before `now` (their owner died); answers their endpoints, whose
    /// lanes should start on a live node.
    pub(super) async fn reap_owners(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        let reaped: Vec<String> =
            sqlx::query_scalar("DELETE FROM hookd_owners WHERE until < $1 RETURNING endpoint")
                .bind(sql_millis(now))
                .fetch_all(self.pool())
                .await
                .map_err(|e| self.failed_with(e))?;
        for endpoint in &reaped {
            self.inner.owners.forget(endpoint);
        }
        Ok(reaped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners_with(entries: &[(&str, Uuid, Millis)]) -> Owners {
        let owners = Owners::default();
        for (name, node, until) in entries {
            lock(&owners.seen).insert(
                (*name).to_owned(),
                Owner {
                    node: *node,
                    until: *until,
                },
            );
        }
        owners
    }

    fn held(owners: &Owners, name: &str) -> Option<(Uuid, Millis)> {
        lock(&owners.seen).get(name).map(|o| (o.node, o.until))
    }

    #[test]
    fn a_renewal_extends_kept_leases_and_drops_lost_ones() {
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        let owners = owners_with(&[
            ("kept", me, 1_000),
            ("lost", me, 1_000),
            ("theirs", other, 1_000),
        ]);
        owners.renewed(me, 5_000, &["kept".to_owned()]);
        assert_eq!(held(&owners, "kept"), Some((me, 5_000)));
        assert_eq!(held(&owners, "lost"), None);
        assert_eq!(held(&owners, "theirs"), Some((other, 1_000)));
    }

    #[test]
    fn a_renewal_does_not_take_back_a_lane_given_up_meanwhile() {
        let me = Uuid::now_v7();
        let owners = Owners::default();
        // The renewal's UPDATE returned "gone", then the lane gave it up before the answer was applied.
        owners.renewed(me, 5_000, &["gone".to_owned()]);
        assert_eq!(held(&owners, "gone"), None);
        assert!(owners.mine(me).is_empty());
    }

    #[test]
    fn a_renewal_keeps_a_lane_taken_after_it_began() {
        let me = Uuid::now_v7();
        // Taken at 2,000 with a 3,000 ms lease, after the renewal (until 4,900) read the database.
        let owners = owners_with(&[("fresh", me, 5_000)]);
        owners.renewed(me, 4_900, &[]);
        assert_eq!(held(&owners, "fresh"), Some((me, 5_000)));
    }
}
