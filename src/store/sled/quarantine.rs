//! Quarantine: a queued message whose record cannot be read becomes a dead letter, so it never stalls its
//! endpoint's lane (which would otherwise ask for the same head of its queue forever).
//!
//! The record that replaces it is readable: kind `hookd.corrupt_record`, reason `corrupt record: ...`, and
//! as its payload the stored bytes (base64) and what was wrong with them, for an operator to inspect with
//! `hookd dlq show` and then purge. Only the message's endpoint and due time are known for sure (the due
//! index had them); its id and its place in the dead-letter queue stay.

use base64::Engine as _;

use super::record::PayloadAt;
use super::tx::{Name, Set};
use super::{CORRUPT_KIND, SledStore, StoreError};
use crate::model::{MessageId, MessageRecord, Millis, Stage};

impl SledStore {
    /// Replaces the queued record `stored` of `id` by a dead letter keeping its bytes; skipped if the record
    /// changed meanwhile. Answers whether it was quarantined.
    pub(super) fn quarantine(
        &self,
        endpoint: &str,
        due_at: Millis,
        id: MessageId,
        stored: &[u8],
        problem: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let payload = serde_json::json!({
            "corrupt_record_base64": base64::engine::general_purpose::STANDARD.encode(stored),
            "problem": problem,
        })
        .to_string();
        let mut record = MessageRecord::new_queued(id, endpoint, CORRUPT_KIND, &payload, now);
        record.created_at = id.created_at().unwrap_or(now);
        record.next_attempt_at = due_at;
        record.stage = Stage::Dead;
        record.dead_reason = Some(format!("corrupt record: {problem}"));
        record.dead_at = Some(now);
        let trees = Set::of(&[Name::Msg, Name::Payload, Name::Dead]);
        let done = self.transaction(trees, |tx| {
            if tx.msg()?.get(id.as_bytes())?.as_deref() != Some(stored) {
                return Ok(false);
            }
            tx.put_record(&record, PayloadAt::Record)?;
            tx.dead()?.insert(id.as_bytes(), &[])?;
            Ok(true)
        })?;
        if done {
            tracing::error!(message_id = %id, endpoint, problem,
                "a queued message's record cannot be read: quarantined as a dead letter (its bytes kept)");
            self.due.remove(endpoint, due_at, id);
            self.tally
                .moved(endpoint, Some(Stage::Queued), Some(Stage::Dead));
            self.committer.request();
        }
        Ok(done)
    }
}
