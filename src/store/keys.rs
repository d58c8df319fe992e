//! Byte layouts of the store's keys. Numbers are big-endian so that sled's byte order is numeric order.
//!
//! | tree      | key                                   | value              |
//! |-----------|---------------------------------------|--------------------|
//! | `msg`     | id (16)                               | 0x02 ‖ `MessageRecord` JSON without the payload (format 1: the JSON with it) |
//! | `payload` | id (16)                               | the payload bytes, written once |
//! | `lease`   | id (16)                               | lease deadline (8); format 1 only, released at start |
//! | `attempt` | id (16) ‖ number (4)                  | `AttemptRecord` JSON |
//! | `dead`    | id (16)                               | empty              |
//! | `idem`    | endpoint ‖ 0x00 ‖ idempotency key     | id (16)            |
//! | `done`    | delivered_ms (8) ‖ id (16)            | empty              |
//! | `contact` | endpoint ‖ 0x00 ‖ contact ‖ 0x00 ‖ id (16) | empty (pending messages only) |
//!
//! Format 2 had a `due` tree (endpoint ‖ 0x00 ‖ due_ms ‖ id); format 3 keeps the due index in memory
//! (`due.rs`) and drops that tree. Endpoint names never contain 0x00 (see `config::validate_endpoint_name`),
//! so the separator in the `idem` and `contact` keys is unambiguous.

use crate::model::{MessageId, Millis};

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

pub fn done(delivered_at: Millis, id: MessageId) -> Vec<u8> {
    let mut key = Vec::with_capacity(24);
    key.extend_from_slice(&delivered_at.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// Splits a done key into (delivery time, id).
pub fn parse_done(key: &[u8]) -> Option<(Millis, MessageId)> {
    let (time, id) = key.split_at_checked(8)?;
    let time = Millis::from_be_bytes(time.try_into().ok()?);
    Some((time, MessageId::from_slice(id)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_keys_sort_by_delivery_time_and_parse_back() {
        let a = MessageId::new();
        let early = done(5, a);
        let late = done(256, a);
        assert!(early < late);
        assert_eq!(parse_done(&late), Some((256, a)));
        assert_eq!(parse_done(&late[..10]), None);
    }

    #[test]
    fn endpoint_prefixes_do_not_prefix_each_other() {
        // `e` and `e2` do not share a prefix.
        assert!(!contact("e2", "c", MessageId::new()).starts_with(&endpoint_prefix("e")));
    }
}
