//! Finding messages in any stage (`GET /v1/messages`), and the operator's two nudges on one message: retry
//! (a queued message due now) and resend (a delivered message queued again).
//!
//! A listing adds nothing to the hot path: no index is written for it. Each stage is found where the store
//! already keeps it, and every answer is in id order (ids are UUID v7, so id order is enqueue order and a
//! time window is a key range):
//! - queued (and held): the in-memory due index, which keeps each endpoint's entries in id order too: a walk
//!   from the cursor takes the `limit` smallest ids past it (`DueIndex::smallest_ids`); only those records
//!   are read.
//! - in flight: the leases, in memory (a few per endpoint).
//! - dead: the `dead` tree, already an index in id order; each entry's record is read for the filters.
//! - delivered, or any stage: the `msg` tree itself, read in key order from the cursor.
//!
//! The two tree scans read at most [`SCAN_BUDGET`] records per page: a page whose filters match little may
//! hold fewer than `limit` items (even none) and still give `next`, the cursor to go on from. So no request
//! reads more than a bounded number of records, however large the store.

use std::collections::HashSet;
use std::ops::{Bound, ControlFlow};

use serde::Deserialize;

use super::SledStore as Store;
use super::ops::Moved;
use super::record;
use super::tx::{Name, Set};
use crate::model::{MessageId, MessageRecord, Millis, Stage};
use crate::store::StoreError;

/// At most this many records are read for one page of a listing.
pub const SCAN_BUDGET: usize = 10_000;

/// Which stage a listing wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    Any,
    /// Queued and not leased (the API splits these into queued and held by their endpoint's status).
    Queued,
    /// Leased by this process.
    InFlight,
    Delivered,
    Dead,
}

/// What a listing selects.
#[derive(Clone, Debug)]
pub struct MessageQuery {
    /// Only these endpoints' messages (sorted); `None`: every endpoint's.
    pub endpoints: Option<Vec<String>>,
    pub wanted: Wanted,
    /// Only messages of this type.
    pub kind: Option<String>,
    /// Enqueued at or after (Unix ms, as the id carries it).
    pub since: Option<Millis>,
    /// Enqueued before (Unix ms, as the id carries it).
    pub until: Option<Millis>,
    /// Start after this id.
    pub after: Option<MessageId>,
    /// At most this many items (at least 1).
    pub limit: usize,
}

/// One page of a listing: records without their payloads, in id order.
#[derive(Debug)]
pub struct MessagePage {
    pub items: Vec<MessageRecord>,
    /// Where the next page starts, when there may be one.
    pub next: Option<MessageId>,
}

/// What became of an operator's retry or resend.
#[derive(Debug, PartialEq, Eq)]
pub enum Nudged {
    /// Done: the message of this endpoint is due now.
    Done { endpoint: String },
    /// No such message.
    Unknown,
    /// The message is being sent right now.
    InFlight,
    /// The message is not in the stage the verb needs.
    Stage(Stage),
}

/// The smallest id enqueued at `at` or later: the key bound of a time window.
fn bound_at(at: Millis) -> MessageId {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&at.min((1 << 48) - 1).to_be_bytes()[2..]);
    MessageId::from_slice(&bytes).unwrap_or_default()
}

/// The fields of a stored record a listing filters on.
#[derive(Deserialize)]
struct ListFacts<'a> {
    #[serde(borrow)]
    endpoint: std::borrow::Cow<'a, str>,
    stage: Stage,
    #[serde(borrow, rename = "type")]
    kind: std::borrow::Cow<'a, str>,
}

impl MessageQuery {
    /// The exclusive key bounds: past the cursor and `since`, before `until`.
    fn bounds(&self) -> (Option<MessageId>, Option<MessageId>) {
        let since = self.since.map(bound_at);
        let lower = match (since, self.after) {
            (Some(s), Some(a)) => Some(s.max(a)),
            (s, a) => s.or(a),
        };
        (lower, self.until.map(bound_at))
    }

    fn endpoint_ok(&self, endpoint: &str) -> bool {
        self.endpoints
            .as_ref()
            .is_none_or(|names| names.binary_search_by(|n| n.as_str().cmp(endpoint)).is_ok())
    }

    fn kind_ok(&self, kind: &str) -> bool {
        self.kind.as_deref().is_none_or(|k| k == kind)
    }

    fn stage_ok(&self, stage: Stage) -> bool {
        match self.wanted {
            Wanted::Any => true,
            Wanted::Queued => stage == Stage::Queued,
            Wanted::InFlight => stage == Stage::InFlight,
            Wanted::Delivered => stage == Stage::Delivered,
            Wanted::Dead => stage == Stage::Dead,
        }
    }

    /// Whether a message in `stage`, of `endpoint` and of type `kind`, passes every filter of the listing.
    fn selects(&self, stage: Stage, endpoint: &str, kind: &str) -> bool {
        self.stage_ok(stage) && self.endpoint_ok(endpoint) && self.kind_ok(kind)
    }
}

impl Store {
    /// A page of messages in id order (see the module's documentation for where each stage is found).
    pub fn list_messages(&self, query: &MessageQuery) -> Result<MessagePage, StoreError> {
        let limit = query.limit.max(1);
        let (lower, upper) = query.bounds();
        if lower.is_some() && upper.is_some() && lower >= upper {
            return Ok(MessagePage {
                items: Vec::new(),
                next: None,
            });
        }
        match query.wanted {
            Wanted::Queued => {
                let leased: HashSet<MessageId> = self.leases.ids().into_iter().collect();
                let endpoints = match &query.endpoints {
                    Some(names) => names.clone(),
                    None => self.due.endpoints(),
                };
                // Without a type filter, the `limit` smallest are the page; with one, a budget of candidates.
                let k = if query.kind.is_some() {
                    SCAN_BUDGET
                } else {
                    limit
                };
                let mut ids = Vec::new();
                let mut matched = 0;
                for endpoint in &endpoints {
                    let (found, all) = self.due.smallest_ids(
                        endpoint,
                        lower,
                        upper,
                        |id| leased.is_empty() || !leased.contains(&id),
                        k,
                    );
                    ids.extend(found);
                    matched += all;
                }
                ids.sort_unstable();
                ids.truncate(k);
                self.page_of(&ids, matched > ids.len(), query, limit)
            }
            Wanted::InFlight => {
                let mut ids: Vec<MessageId> = self
                    .leases
                    .ids()
                    .into_iter()
                    .filter(|id| lower.is_none_or(|l| *id > l) && upper.is_none_or(|u| *id < u))
                    .collect();
                ids.sort_unstable();
                let more = ids.len() > SCAN_BUDGET;
                ids.truncate(SCAN_BUDGET);
                self.page_of(&ids, more, query, limit)
            }
            Wanted::Dead => self.scan(&self.trees.dead, false, (lower, upper), query, limit),
            Wanted::Delivered | Wanted::Any => {
                self.scan(&self.trees.msg, true, (lower, upper), query, limit)
            }
        }
    }

    /// Reads the records of `ids` (in id order) into a page; `more`: there are candidates beyond `ids`.
    fn page_of(
        &self,
        ids: &[MessageId],
        more: bool,
        query: &MessageQuery,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        let mut items: Vec<MessageRecord> = Vec::new();
        for id in ids {
            if let ControlFlow::Break(page) = self.add_listed(*id, query, limit, &mut items)? {
                return Ok(page);
            }
        }
        let next = match more {
            true if items.len() == limit => items.last().map(|r| r.id),
            true => ids.last().copied(),
            false => None,
        };
        Ok(MessagePage { items, next })
    }

    /// A page from a tree keyed by message id (`msg`, `is_msg`, or `dead`) between the exclusive `bounds`,
    /// reading at most [`SCAN_BUDGET`] records.
    fn scan(
        &self,
        tree: &sled::Tree,
        is_msg: bool,
        (lower, upper): (Option<MessageId>, Option<MessageId>),
        query: &MessageQuery,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        let from = lower.map_or(Bound::Unbounded, |l| Bound::Excluded(l.as_bytes().to_vec()));
        let to = upper.map_or(Bound::Unbounded, |u| Bound::Excluded(u.as_bytes().to_vec()));
        let mut items: Vec<MessageRecord> = Vec::new();
        let mut last_examined = None;
        for (examined, entry) in tree.range::<Vec<u8>, _>((from, to)).enumerate() {
            if examined == SCAN_BUDGET {
                let next = match items.len() == limit {
                    true => items.last().map(|r| r.id),
                    false => last_examined,
                };
                return Ok(MessagePage { items, next });
            }
            let (key, value) = entry?;
            let id = MessageId::from_slice(&key)
                .ok_or_else(|| StoreError::Corrupt("malformed message key".into()))?;
            last_examined = Some(id);
            if is_msg {
                // Filter on the few fields first; only a match is decoded whole.
                let facts: ListFacts<'_> = record::decode_as(&value)?;
                let stage = match facts.stage {
                    Stage::Queued if self.leases.holds(id) => Stage::InFlight,
                    stage => stage,
                };
                if !query.selects(stage, &facts.endpoint, &facts.kind) {
                    continue;
                }
            }
            if let ControlFlow::Break(page) = self.add_listed(id, query, limit, &mut items)? {
                return Ok(page);
            }
        }
        Ok(MessagePage { items, next: None })
    }

    /// Adds the listed record of `id` to `items` when `query` selects it. When `items` already holds `limit`,
    /// breaks with them as the page instead: a further match means a next page, after its last item.
    fn add_listed(
        &self,
        id: MessageId,
        query: &MessageQuery,
        limit: usize,
        items: &mut Vec<MessageRecord>,
    ) -> Result<ControlFlow<MessagePage>, StoreError> {
        let Some(record) = self.listed(id)? else {
            return Ok(ControlFlow::Continue(()));
        };
        if !query.selects(record.stage, &record.endpoint, &record.kind) {
            return Ok(ControlFlow::Continue(()));
        }
        if items.len() == limit {
            return Ok(ControlFlow::Break(MessagePage {
                next: items.last().map(|r| r.id),
                items: std::mem::take(items),
            }));
        }
        items.push(record);
        Ok(ControlFlow::Continue(()))
    }

    /// A record as a listing shows it: without its payload, `in_flight` while leased.
    fn listed(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        let Some((mut record, _)) = self.stored_record(id)? else {
            return Ok(None);
        };
        record.payload = String::new();
        if record.stage == Stage::Queued && self.leases.holds(id) {
            record.stage = Stage::InFlight;
        }
        Ok(Some(record))
    }

    /// An operator's retry: a queued message (held ones included) becomes due at `now`. No attempt is
    /// counted and its cycle goes on. The message is leased for the change, so its lane cannot take it
    /// meanwhile; a message leased already is in flight and left alone.
    pub fn retry_now(&self, id: MessageId, now: Millis) -> Result<Nudged, StoreError> {
        match self.stored_record(id)? {
            None => return Ok(Nudged::Unknown),
            Some((record, _)) if record.stage != Stage::Queued => {
                return Ok(Nudged::Stage(record.stage));
            }
            Some(_) => {}
        }
        if !self.leases.take(id, Millis::MAX, None) {
            return Ok(Nudged::InFlight);
        }
        // Read again under the lease: an attempt may have ended between the first read and the lease.
        let record = match self.stored_record(id) {
            Ok(Some((record, _))) if record.stage == Stage::Queued => record,
            other => {
                self.leases.end(id);
                return match other? {
                    None => Ok(Nudged::Unknown),
                    Some((record, _)) => Ok(Nudged::Stage(record.stage)),
                };
            }
        };
        // As a lease would: in flight while held, then released (due now, no attempt counted).
        self.tally
            .moved(&record.endpoint, Some(Stage::Queued), Some(Stage::InFlight));
        self.release(id, now)?;
        Ok(Nudged::Done {
            endpoint: record.endpoint,
        })
    }

    /// An operator's resend: a delivered message is queued again, due at `now`, with a fresh cycle (its
    /// attempt count and age start again; its history is kept and attempt numbers go on). Its contact entry,
    /// if it has a contact, comes back without checking the cap (as a replay's does).
    pub fn resend(&self, id: MessageId, now: Millis) -> Result<Nudged, StoreError> {
        let trees = Set::of(&[Name::Msg]);
        let moved = self.transaction(trees, |tx| {
            let Some((mut record, at)) = tx.get_record(id)? else {
                return Ok(Err(Nudged::Unknown));
            };
            if record.stage != Stage::Delivered {
                return Ok(Err(Nudged::Stage(record.stage)));
            }
            let was_due_at = record.next_attempt_at;
            record.cycle_attempts = 0;
            record.cycle_started_at = now;
            record.delivered_at = None;
            tx.queue(&mut record, at, now)?;
            Ok(Ok(Moved {
                endpoint: record.endpoint,
                was: Stage::Delivered,
                was_due_at,
                is: Stage::Queued,
                due_at: now,
            }))
        })?;
        match moved {
            Ok(moved) => {
                self.mirror(id, &moved);
                self.tally
                    .moved(&moved.endpoint, Some(Stage::Delivered), Some(Stage::Queued));
                Ok(Nudged::Done {
                    endpoint: moved.endpoint,
                })
            }
            Err(Nudged::Stage(Stage::Queued)) if self.leases.holds(id) => Ok(Nudged::InFlight),
            Err(nudged) => Ok(nudged),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_bound_sorts_between_the_ids_of_its_millisecond_and_the_one_before() {
        let id = MessageId::new();
        let at = id.created_at().unwrap();
        assert!(bound_at(at) < id);
        assert!(bound_at(at + 1) > id);
        assert!(bound_at(at - 1) < bound_at(at));
    }
}
