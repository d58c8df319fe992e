//! How a message record is laid out in the `msg` tree, and where its payload lives.
//!
//! A sled insert of a new key costs about the same at 300 bytes as at 450, and far more than a rewrite of a
//! small value, so the number of new keys per message is much of what an enqueue pays for. A small payload
//! therefore lives in its record: one insert per enqueue, and the record's rewrites carry it along. A rewrite
//! costs more the larger the value, so only payloads up to [`INLINE_PAYLOAD_MAX`] do; a larger one lives in
//! the `payload` tree, written once and never rewritten. `cargo bench --bench sled_writes` measures both
//! sides of that choice (docs/performance/design-notes.md, "Why the store and the dispatcher are laid out as
//! they are": its opening paragraph, "Two sled writes per delivered message, both of its own key" and "1 KiB
//! inline").
//!
//! The first byte says which layout a stored record has:
//! - [`RECORD_INLINE`] (formats 4 and 5): the tag, the record's JSON length (4 bytes, little-endian), the JSON, then
//!   the payload's bytes as they are (no escaping);
//! - [`RECORD_APART`] (formats 2 to 5): the tag, then the record's JSON; the payload is in the `payload` tree;
//! - `{` (format 1): the record's JSON with the payload as one of its fields.

use serde::Deserialize;

use super::StoreError;
use crate::model::{MessageRecord, Millis, Stage};

/// Payloads up to this many bytes live in their record. At 1 KiB, a message delivered at its first attempt
/// costs sled a little less inline than apart, and one retried twice about a quarter more; both gaps widen
/// with the size (`benches/sled_writes.rs`).
pub(super) const INLINE_PAYLOAD_MAX: usize = 1024;

/// The tag of a record whose payload is in the `payload` tree.
const RECORD_APART: u8 = 2;
/// The tag of a record followed by its payload.
const RECORD_INLINE: u8 = 4;

/// Where a stored record's payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PayloadAt {
    /// In the record (the decoded record carries it).
    Record,
    /// In the `payload` tree (the decoded record's payload is empty).
    Tree,
}

impl PayloadAt {
    /// Where a payload of `len` bytes belongs when its record is written.
    pub fn for_len(len: usize) -> PayloadAt {
        if len <= INLINE_PAYLOAD_MAX {
            PayloadAt::Record
        } else {
            PayloadAt::Tree
        }
    }
}

/// The fields of a stored record that the counts and the due index need; the others are skipped unread.
#[derive(Deserialize)]
pub(super) struct RecordFacts<'a> {
    /// Borrowed from the stored bytes unless it holds an escape.
    #[serde(borrow)]
    pub endpoint: std::borrow::Cow<'a, str>,
    pub stage: Stage,
    pub next_attempt_at: Millis,
}

/// The record as stored: with its payload after the JSON when `at` is [`PayloadAt::Record`], without it
/// otherwise (the caller writes the payload to the `payload` tree).
pub(super) fn encode(record: &MessageRecord, at: PayloadAt) -> Result<Vec<u8>, StoreError> {
    let cannot =
        |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("cannot encode record: {e}"));
    let mut bytes = Vec::with_capacity(256 + record.payload.len());
    match at {
        PayloadAt::Tree => {
            bytes.push(RECORD_APART);
            serde_json::to_writer(&mut bytes, record).map_err(|e| cannot(&e))?;
        }
        PayloadAt::Record => {
            bytes.push(RECORD_INLINE);
            bytes.extend_from_slice(&[0; 4]);
            serde_json::to_writer(&mut bytes, record).map_err(|e| cannot(&e))?;
            let json_len = u32::try_from(bytes.len() - 5).map_err(|e| cannot(&e))?;
            bytes[1..5].copy_from_slice(&json_len.to_le_bytes());
            bytes.extend_from_slice(record.payload.as_bytes());
        }
    }
    Ok(bytes)
}

/// Reads a stored record: with its payload when the record holds it, without it when it is in the tree.
pub(super) fn decode(bytes: &[u8]) -> Result<(MessageRecord, PayloadAt), StoreError> {
    let (json, payload) = parts(bytes)?;
    let mut record: MessageRecord = super::decode(json)?;
    match payload {
        Some(payload) => {
            record.payload = String::from_utf8(payload.to_vec()).map_err(|_| {
                StoreError::Corrupt(format!(
                    "message {} has a payload that is not UTF-8",
                    record.id
                ))
            })?;
            Ok((record, PayloadAt::Record))
        }
        // A first-format record: the payload was a field of the JSON.
        None if bytes.first() == Some(&b'{') => Ok((record, PayloadAt::Record)),
        None => Ok((record, PayloadAt::Tree)),
    }
}

/// Reads some of a stored record's fields, leaving its payload unread.
pub(super) fn decode_as<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    super::decode(parts(bytes)?.0)
}

/// A stored record's JSON, and the payload bytes that follow it in the inline layout.
fn parts(bytes: &[u8]) -> Result<(&[u8], Option<&[u8]>), StoreError> {
    let unknown = || StoreError::Corrupt("a message record of an unknown format".into());
    match bytes.split_first() {
        Some((&RECORD_APART, json)) => Ok((json, None)),
        Some((&RECORD_INLINE, rest)) => {
            let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(unknown)?;
            let len = usize::try_from(u32::from_le_bytes(*len)).map_err(|_| unknown())?;
            if len > rest.len() {
                return Err(StoreError::Corrupt(
                    "a message record shorter than its header says".into(),
                ));
            }
            let (json, payload) = rest.split_at(len);
            Ok((json, Some(payload)))
        }
        Some((b'{', _)) => Ok((bytes, None)),
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageId;

    fn record(payload: &str) -> MessageRecord {
        MessageRecord::new_queued(MessageId::new(), "ep", "notification", payload, 7)
    }

    #[test]
    fn an_inline_record_gives_back_its_payload_byte_for_byte() {
        for payload in ["", "{}", r#"{"text":"a \"quoted\" \\ line\n","n":1}"#, "é✓"] {
            let original = record(payload);
            let bytes = encode(&original, PayloadAt::Record).unwrap();
            let (read, at) = decode(&bytes).unwrap();
            assert_eq!(at, PayloadAt::Record);
            assert_eq!(read, original, "{payload}");
            let facts: RecordFacts<'_> = decode_as(&bytes).unwrap();
            assert_eq!((&*facts.endpoint, facts.next_attempt_at), ("ep", 7));
        }
    }

    #[test]
    fn a_record_with_its_payload_apart_reads_back_without_it() {
        let original = record("{\"big\":true}");
        let (read, at) = decode(&encode(&original, PayloadAt::Tree).unwrap()).unwrap();
        assert_eq!(at, PayloadAt::Tree);
        assert_eq!(read.payload, "");
        assert_eq!(
            read,
            MessageRecord {
                payload: String::new(),
                ..original
            }
        );
    }

    #[test]
    fn a_first_format_record_carries_its_payload_in_its_json() {
        let mut json = serde_json::to_value(record("")).unwrap();
        json["payload"] = "{\"v\":1}".into();
        let bytes = serde_json::to_vec(&json).unwrap();
        let (read, at) = decode(&bytes).unwrap();
        assert_eq!(
            (read.payload.as_str(), at),
            ("{\"v\":1}", PayloadAt::Record)
        );
    }

    #[test]
    fn a_truncated_or_unknown_record_is_corrupt_not_a_panic() {
        let bytes = encode(&record("{}"), PayloadAt::Record).unwrap();
        for cut in [1, 3, 5, bytes.len() - 3] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&[9, 1, 2]).is_err());
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn payloads_go_apart_only_above_the_inline_limit() {
        assert_eq!(PayloadAt::for_len(INLINE_PAYLOAD_MAX), PayloadAt::Record);
        assert_eq!(PayloadAt::for_len(INLINE_PAYLOAD_MAX + 1), PayloadAt::Tree);
    }
}
