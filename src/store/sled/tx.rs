//! Transactions over only the message trees a state change touches.
//!
//! sled's cost of a transaction grows with the trees in it (each one is staged, pinned, committed and
//! dropped), and a message's hot path touches few of the seven message trees: an enqueue `msg` (and `payload`
//! for a large payload), a first attempt `msg`, a later one `msg` and `attempt` (where the attempt before it
//! goes), and a dead letter also `dead` (a lease writes nothing:
//! `leases.rs`; the due index is in memory: `due/mod.rs`).
//! So each verb names the trees it needs ([`Set`]), and [`Tx`] hands out only those. A verb that learns inside
//! the transaction that it needs another tree (a message with a contact needs `contact`) asks for it all the
//! same: the accessor aborts the run, nothing of it is written, and `SledStore::transaction` runs it again with
//! that tree added. A committed transaction therefore spans every tree it wrote, and a record and its index
//! entries still change together or not at all.
//!
//! Here too are that runner, [`SledStore::transaction`], and the record reads and writes a verb makes inside a
//! transaction ([`Tx::get_record`], [`Tx::put_record`], [`Tx::queue`]).

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::record::{self, PayloadAt};
use super::{SledStore, StoreError, keys};
use crate::model::{MessageId, MessageRecord, Millis, Stage};

/// One of the seven message trees (the `endpoint` and `token` trees are never in a transaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Name {
    Msg,
    Payload,
    Lease,
    Attempt,
    Dead,
    Idem,
    Contact,
}

impl Name {
    /// Every message tree, in the order a transaction lists them.
    pub const ALL: [Name; 7] = [
        Name::Msg,
        Name::Payload,
        Name::Lease,
        Name::Attempt,
        Name::Dead,
        Name::Idem,
        Name::Contact,
    ];
}

/// A set of message trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Set(u16);

impl Set {
    pub const fn of(names: &[Name]) -> Set {
        let mut set = Set(0);
        let mut i = 0;
        while i < names.len() {
            set = set.with(names[i]);
            i += 1;
        }
        set
    }

    pub const fn with(self, name: Name) -> Set {
        Set(self.0 | 1 << name as u16)
    }

    pub const fn has(self, name: Name) -> bool {
        self.0 & 1 << name as u16 != 0
    }
}

/// Why a transaction's closure gave up; nothing it wrote is kept.
pub(super) enum Abort {
    /// A store error for the caller.
    Store(StoreError),
    /// It needs a tree that is not in its set: run it again with the tree.
    Missing(Name),
}

pub(super) type TxResult<T> = Result<T, ConflictableTransactionError<Abort>>;

/// Aborts a transaction with a store error.
pub(super) fn abort(error: StoreError) -> ConflictableTransactionError<Abort> {
    ConflictableTransactionError::Abort(Abort::Store(error))
}

/// The trees of one transaction, by name; a tree outside the transaction's set is `None`.
pub(super) struct Tx<'a> {
    trees: [Option<&'a TransactionalTree>; 7],
}

impl<'a> Tx<'a> {
    /// Lays the transaction's trees (in [`Name::ALL`] order, those of `set` only) out by name.
    pub fn new(set: Set, view: &'a [TransactionalTree]) -> Tx<'a> {
        let mut trees = [None; 7];
        let mut in_view = view.iter();
        for name in Name::ALL {
            if set.has(name) {
                trees[name as usize] = in_view.next();
            }
        }
        Tx { trees }
    }

    fn tree(&self, name: Name) -> TxResult<&'a TransactionalTree> {
        self.trees[name as usize].ok_or(ConflictableTransactionError::Abort(Abort::Missing(name)))
    }

    pub fn msg(&self) -> TxResult<&'a TransactionalTree> {
        self.tree(Name::Msg)
    }

    pub fn payload(&self) -> TxResult<&'a TransactionalTree> {
        self.tree(Name::Payload)
    }

    pub fn lease(&self) -> TxResult<&'a TransactionalTree> {
        self.tree(Name::Lease)
    }

    pub fn attempt(&self) -> TxResult<&'a TransactionalTree> {
        self.tree(Name::Attempt)
    }

    pub fn dead(&self) -> TxResult<&'a TransactionalTree> {
        self.tree(Name::Dead)
    }

    pub fn idem(&self) -> TxResult<&'a TransactionalTree> {
        self.tree(Name::Idem)
    }

    pub fn contact(&self) -> TxResult<&'a TransactionalTree> {
        self.tree(Name::Contact)
    }
}

impl SledStore {
    /// Runs `f` in one sled transaction over the message trees in `set` (and `msg`, which every message
    /// transaction reads). When `f` asks for a tree outside the set, the run is aborted (nothing written) and
    /// `f` runs again with that tree added.
    pub(super) fn transaction<T>(
        &self,
        set: Set,
        f: impl Fn(&Tx<'_>) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let t = &self.trees;
        let tree = |name: Name| match name {
            Name::Msg => &t.msg,
            Name::Payload => &t.payload,
            Name::Lease => &t.lease,
            Name::Attempt => &t.attempt,
            Name::Dead => &t.dead,
            Name::Idem => &t.idem,
            Name::Contact => &t.contact,
        };
        let mut set = set.with(Name::Msg);
        loop {
            let mut trees = [&t.msg; Name::ALL.len()];
            let mut len = 0;
            for name in Name::ALL.into_iter().filter(|name| set.has(*name)) {
                trees[len] = tree(name);
                len += 1;
            }
            let result = trees[..len].transaction(|view| f(&Tx::new(set, view)));
            match result {
                Ok(value) => return Ok(value),
                Err(TransactionError::Abort(Abort::Store(e))) => return Err(e),
                // Never a tree already in the set, so this ends after at most seven more runs.
                Err(TransactionError::Abort(Abort::Missing(name))) => set = set.with(name),
                Err(TransactionError::Storage(e)) => return Err(e.into()),
            }
        }
    }
}

impl Tx<'_> {
    /// The record, with its payload when the record holds it, and where that payload is.
    pub(super) fn get_record(&self, id: MessageId) -> TxResult<Option<(MessageRecord, PayloadAt)>> {
        match self.msg()?.get(id.as_bytes())? {
            None => Ok(None),
            Some(bytes) => record::decode(&bytes).map(Some).map_err(abort),
        }
    }

    /// Writes the record, whose payload is `at` (as read, or [`PayloadAt::Record`] for a new message). A
    /// payload the record carries that is too large to stay in it (a new message's, or a first-format
    /// record's) moves to the `payload` tree.
    pub(super) fn put_record(&self, record: &MessageRecord, at: PayloadAt) -> TxResult<()> {
        let at = match at {
            PayloadAt::Record if PayloadAt::for_len(record.payload.len()) == PayloadAt::Tree => {
                self.payload()?
                    .insert(record.id.as_bytes(), record.payload.as_bytes())?;
                PayloadAt::Tree
            }
            at => at,
        };
        let bytes = record::encode(record, at).map_err(abort)?;
        self.msg()?.insert(record.id.as_bytes(), bytes)?;
        Ok(())
    }

    /// Writes the record as queued, due at `due_at` (and its contact entry, when it has a contact). The
    /// caller puts it in the due index once the transaction has committed.
    pub(super) fn queue(
        &self,
        record: &mut MessageRecord,
        at: PayloadAt,
        due_at: Millis,
    ) -> TxResult<()> {
        if let Some(contact) = &record.contact {
            self.contact()?
                .insert(keys::contact(&record.endpoint, contact, record.id), &[])?;
        }
        record.stage = Stage::Queued;
        record.next_attempt_at = due_at;
        self.put_record(record, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_has_exactly_what_was_put_in() {
        let set = Set::of(&[Name::Msg, Name::Lease]).with(Name::Contact);
        for name in Name::ALL {
            let expected = matches!(name, Name::Msg | Name::Lease | Name::Contact);
            assert_eq!(set.has(name), expected, "{name:?}");
        }
        assert!(Name::ALL.iter().all(|name| !Set::of(&[]).has(*name)));
    }
}
