//! A message record and its row: which fields live in columns (the ones queries select and order by) and
//! which in the record's JSON text, and how a row reads back as a [`MessageRecord`].
//!
//! The columns `stage` and `due_at` are the truth for the record's `stage` and `next_attempt_at`: a claim, a
//! release or the reaper changes only them, never the JSON. Reading a row lays them over the JSON's copy.

use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{millis_of, sql_millis};
use crate::model::{MessageId, MessageRecord, Stage};
use crate::store::StoreError;

/// The columns a message row is read with (`SELECT {COLUMNS} FROM hookd_messages`).
pub const COLUMNS: &str = "id, stage, due_at, record, payload";

/// The same, without the payload (listings).
pub const COLUMNS_NO_PAYLOAD: &str = "id, stage, due_at, record, '' AS payload";

/// A stage as its column holds it.
pub fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Queued => "queued",
        Stage::InFlight => "in_flight",
        Stage::Delivered => "delivered",
        Stage::Dead => "dead",
    }
}

/// A stage column back.
pub fn stage_of(name: &str) -> Result<Stage, StoreError> {
    match name {
        "queued" => Ok(Stage::Queued),
        "in_flight" => Ok(Stage::InFlight),
        "delivered" => Ok(Stage::Delivered),
        "dead" => Ok(Stage::Dead),
        other => Err(StoreError::Corrupt(format!("unknown stage `{other}`"))),
    }
}

/// The record's JSON text (without its payload, which has a column of its own).
pub fn record_json(record: &MessageRecord) -> Result<String, StoreError> {
    serde_json::to_string(record)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode message {}: {e}", record.id)))
}

/// A row read with [`COLUMNS`] as a record.
pub fn record_of(row: &PgRow) -> Result<MessageRecord, StoreError> {
    let id: Uuid = column(row, "id")?;
    let json: String = column(row, "record")?;
    let mut record: MessageRecord = serde_json::from_str(&json)
        .map_err(|e| StoreError::Corrupt(format!("message {id}: {e}")))?;
    record.stage = stage_of(&column::<String>(row, "stage")?)?;
    record.next_attempt_at = millis_of(column(row, "due_at")?);
    record.payload = column(row, "payload")?;
    Ok(record)
}

/// One column of a row, its absence or wrong type a corrupt-data error.
pub fn column<'r, T>(row: &'r PgRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
}

/// A message id as its column holds it.
pub fn uuid(id: MessageId) -> Uuid {
    Uuid::from_bytes(*id.as_bytes())
}

/// A message id column back.
pub fn message_id(id: Uuid) -> MessageId {
    // A UUID's 16 bytes are always a message id.
    MessageId::from_slice(id.as_bytes()).unwrap_or_default()
}

/// The columns a record's write sets, as parallel arrays for `UNNEST` (one entry a record).
#[derive(Default)]
pub struct Rows {
    pub ids: Vec<Uuid>,
    pub endpoints: Vec<String>,
    pub kinds: Vec<String>,
    pub stages: Vec<&'static str>,
    pub due_ats: Vec<i64>,
    pub contacts: Vec<Option<String>>,
    pub keys: Vec<Option<String>>,
    pub delivered_ats: Vec<Option<i64>>,
    pub records: Vec<String>,
    pub payloads: Vec<String>,
}

impl Rows {
    pub fn push(&mut self, record: &MessageRecord) -> Result<(), StoreError> {
        self.ids.push(uuid(record.id));
        self.endpoints.push(record.endpoint.clone());
        self.kinds.push(record.kind.clone());
        self.stages.push(stage_name(record.stage));
        self.due_ats.push(sql_millis(record.next_attempt_at));
        self.contacts.push(record.contact.clone());
        self.keys.push(record.idempotency_key.clone());
        self.delivered_ats.push(record.delivered_at.map(sql_millis));
        self.records.push(record_json(record)?);
        self.payloads.push(record.payload.clone());
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }
}
