#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The store under bad data: a record that cannot be read never stalls its endpoint.

mod backends;

use backends::{each_backend, in_own_runtime, open_sled, sled_once_released};

use hookd::model::{MessageId, Stage};
use hookd::store::{CORRUPT_KIND, Lease, NewMessage};

fn new_message(endpoint: &str) -> NewMessage {
    NewMessage {
        endpoint: endpoint.to_owned(),
        kind: "t".to_owned(),
        payload: r#"{"n":1}"#.to_owned(),
        idempotency_key: None,
        contact: None,
    }
}

#[test]
fn an_unreadable_queued_record_is_quarantined_and_the_rest_of_the_scan_leased() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<MessageId> = in_own_runtime(async {
        let store = open_sled(dir.path());
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(
                store
                    .enqueue(&new_message("e"), 1_000 + i)
                    .await
                    .unwrap()
                    .id,
            );
        }
        store.commit().await.unwrap();
        ids
    });
    let bad = ids[1];
    {
        // The record's header still reads (endpoint, stage, due time), its payload is no longer UTF-8.
        let db = sled_once_released(dir.path());
        let msg = db.open_tree("msg").unwrap();
        let mut bytes = msg.get(bad.as_bytes()).unwrap().unwrap().to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        msg.insert(bad.as_bytes(), bytes).unwrap();
        db.flush().unwrap();
    }
    in_own_runtime(async {
        let store = open_sled(dir.path());
        let Lease::Taken(taken) = store.lease_due("e", 5_000, 10, 60_000).await.unwrap() else {
            panic!("the readable messages are leased");
        };
        let taken: Vec<MessageId> = taken.iter().map(|r| r.id).collect();
        assert_eq!(taken, [ids[0], ids[2]]);
        let dead = store.get(bad).await.unwrap().unwrap();
        assert_eq!(dead.stage, Stage::Dead);
        assert_eq!(dead.kind, CORRUPT_KIND);
        assert!(
            dead.dead_reason
                .as_deref()
                .unwrap()
                .starts_with("corrupt record: "),
            "{dead:?}"
        );
        let kept: serde_json::Value = serde_json::from_str(&dead.payload).unwrap();
        assert!(
            kept["corrupt_record_base64"].as_str().unwrap().len() > 20,
            "{kept}"
        );
        assert_eq!(
            store
                .list_dead(Some("e"), None, 10)
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        assert_eq!(store.counts().unwrap(), store.recount().await.unwrap());
    });
}

#[tokio::test]
async fn an_expired_lease_is_given_back_due_with_no_attempt_counted() {
    each_backend(async |store| {
        let id = store.enqueue(&new_message("e"), 1_000).await.unwrap().id;
        let other = store.enqueue(&new_message("f"), 1_000).await.unwrap().id;
        let Lease::Taken(_) = store.lease_due("e", 1_000, 1, 5_000).await.unwrap() else {
            panic!("leased");
        };
        let Lease::Taken(_) = store.lease_due("f", 1_000, 1, 9_000).await.unwrap() else {
            panic!("leased");
        };
        assert!(
            store.release_expired(5_000).await.unwrap().is_empty(),
            "not yet expired"
        );
        assert_eq!(store.release_expired(5_001).await.unwrap(), ["e"]);
        let record = store.get(id).await.unwrap().unwrap();
        assert_eq!(record.stage, Stage::Queued);
        assert_eq!(record.next_attempt_at, 5_001);
        assert_eq!(record.total_attempts, 0);
        assert_eq!(
            store.get(other).await.unwrap().unwrap().stage,
            Stage::InFlight
        );
        assert_eq!(store.counts().unwrap(), store.recount().await.unwrap());
    })
    .await;
}
