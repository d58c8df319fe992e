//! Byte layouts of the store's keys. Numbers are big-endian so that sled's byte order is numeric order.
//!
//! | tree      | key                                   | value              |
//! |-----------|---------------------------------------|--------------------|
//! | `msg`     | id (16)                               | the record (`record.rs`): with its payload when it is small |
//! | `payload` | id (16)                               | a large payload's bytes, written once |
//! | `lease`   | id (16)                               | lease deadline (8); format 1 only, released at start |
//! | `attempt` | id (16) ‖ number (4)                  | `AttemptRecord` JSON, for every attempt but the latest (which is in the record) |
//! | `dead`    | id (16)                               | empty              |
//! | `idem`    | endpoint ‖ 0x00 ‖ idempotency key     | id (16)            |
//! | `contact` | endpoint ‖ 0x00 ‖ contact ‖ 0x00 ‖ id (16) | empty (pending messages only) |
//!
//! Format 2 had a `due` tree (endpoint ‖ 0x00 ‖ due_ms ‖ id); format 3 keeps the due index in memory
//! (`due/mod.rs`) and drops that tree. Format 3 had a `done` tree (delivered_ms ‖ id); format 4 prunes by reading
//! the records (`SledStore::prune_delivered`) and drops it. Format 4 kept every attempt in the `attempt` tree;
//! format 5 keeps the latest in the record. Endpoint names never contain 0x00 (see `config::validate_endpoint_name`),
//! so the separator in the `idem` and `contact` keys is unambiguous.

use crate::model::MessageId;

pub fn endpoint_prefix(endpoint: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(endpoint.len() + 1);
    key.extend_from_slice(endpoint.as_bytes());
    key.push(0);
    key
}

pub fn attempt(id: MessageId, number: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(20);
    key.extend_from_slice(id.as_bytes());
    key.extend_from_slice(&number.to_be_bytes());
    key
}

pub fn idempotency(endpoint: &str, idempotency_key: &str) -> Vec<u8> {
    let mut key = endpoint_prefix(endpoint);
    key.extend_from_slice(idempotency_key.as_bytes());
    key
}

/// The prefix of one contact's pending messages on an endpoint.
pub fn contact_prefix(endpoint: &str, contact: &str) -> Vec<u8> {
    let mut key = endpoint_prefix(endpoint);
    key.extend_from_slice(contact.as_bytes());
    key.push(0);
    key
}

pub fn contact(endpoint: &str, contact: &str, id: MessageId) -> Vec<u8> {
    let mut key = contact_prefix(endpoint, contact);
    key.extend_from_slice(id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_prefixes_do_not_prefix_each_other() {
        // `e` and `e2` do not share a prefix.
        assert!(!contact("e2", "c", MessageId::new()).starts_with(&endpoint_prefix("e")));
    }
}
