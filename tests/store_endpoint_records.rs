#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Conformance of the store's endpoint records and of retiring a deleted endpoint's queue, driven through
//! the store's public verbs (and, for a record written by an older release, sled directly).

mod backends;

use backends::{each_backend, in_own_runtime, open_sled, sled_once_released};

use hookd::model::{Millis, Stage};
use hookd::store::{EndpointState, NewMessage, Retire, Selection, Store};
use serde_json::json;

async fn enqueue(store: &Store, endpoint: &str, now: Millis) -> hookd::model::MessageId {
    let new = NewMessage {
        endpoint: endpoint.to_owned(),
        kind: "t".to_owned(),
        payload: "{}".to_owned(),
        idempotency_key: None,
        contact: None,
    };
    store.enqueue(&new, now).await.unwrap().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_endpoint_changes_are_each_kept() {
    each_backend(async |store| {
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .update_endpoint_state("acme", |state: &mut EndpointState| {
                        state.settings.insert(format!("key{i}"), json!(i));
                        if i == 7 {
                            state.paused = true;
                        }
                        Ok::<(), ()>(())
                    })
                    .await
                    .unwrap()
                    .unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let state = store.endpoint_state("acme").unwrap();
        assert_eq!(state.settings.len(), 16, "no change lost: {state:?}");
        assert!(state.paused);
    })
    .await;
}

#[test]
fn a_refused_change_writes_nothing_and_a_kept_one_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    in_own_runtime(async {
        let store = open_sled(dir.path());
        let refused = store
            .update_endpoint_state("acme", |state: &mut EndpointState| {
                state.paused = true;
                Err::<(), _>("no")
            })
            .await
            .unwrap();
        assert_eq!(refused, Err("no"));
        assert_eq!(
            store.endpoint_state("acme").unwrap(),
            EndpointState::default()
        );
        store
            .update_endpoint_state("acme", |state: &mut EndpointState| {
                state.definition = Some(
                    json!({"format": "json", "url": "http://x/"})
                        .as_object()
                        .cloned()
                        .unwrap(),
                );
                Ok::<(), ()>(())
            })
            .await
            .unwrap()
            .unwrap();
    });
    in_own_runtime(async {
        let store = open_sled(dir.path());
        let states = store.endpoint_states().unwrap();
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].0, "acme");
        assert_eq!(
            states[0].1.definition.as_ref().unwrap()["url"],
            json!("http://x/")
        );
        store.remove_endpoint_state("acme").await.unwrap();
        assert!(store.endpoint_states().unwrap().is_empty());
    });
}

#[test]
fn an_endpoint_record_of_the_previous_release_reads_as_overrides() {
    let dir = tempfile::tempdir().unwrap();
    in_own_runtime(async { drop(open_sled(dir.path())) });
    {
        // What the previous release wrote for `hookd endpoints set hook --url ...` and a pause.
        let db = sled_once_released(dir.path());
        let tree = db.open_tree("endpoint").unwrap();
        tree.insert(
            "hook",
            br#"{"verified_fingerprint":null,"verified_at":null,"verification_error":null,"settings":{"url":"http://new/","timeout_ms":1234},"paused":true,"disabled":null}"#.as_slice(),
        )
        .unwrap();
        db.flush().unwrap();
    }
    in_own_runtime(async {
        let store = open_sled(dir.path());
        let state = store.endpoint_state("hook").unwrap();
        assert_eq!(state.settings["url"], json!("http://new/"));
        assert_eq!(state.settings["timeout_ms"], json!(1234));
        assert!(state.paused);
        assert_eq!(state.definition, None, "a declared endpoint's record");
    });
}

#[tokio::test]
async fn retiring_an_endpoint_dead_letters_or_purges_only_its_queued_messages() {
    each_backend(async |store| {
        let mut gone = Vec::new();
        for i in 0..300 {
            gone.push(enqueue(store, "gone", 1_000 + i).await);
        }
        let kept = enqueue(store, "kept", 1_000).await;
        let reason = Retire::DeadLetter {
            reason: "endpoint deleted".into(),
        };
        assert_eq!(
            store.retire_queued("gone", &reason, 5_000).await.unwrap(),
            300
        );
        assert!(!store.has_queued("gone"));
        for id in &gone {
            let record = store.get(*id).await.unwrap().unwrap();
            assert_eq!(record.stage, Stage::Dead);
            assert_eq!(record.dead_reason.as_deref(), Some("endpoint deleted"));
        }
        assert_eq!(store.get(kept).await.unwrap().unwrap().stage, Stage::Queued);
        assert_eq!(store.counts().unwrap(), store.recount().await.unwrap());
        assert_eq!(store.counts().unwrap().by_endpoint["gone"].dead, 300);
        // Still replayable, and purgeable.
        let page = store.list_dead(Some("gone"), None, 1000).await.unwrap();
        assert_eq!(page.items.len(), 300);

        let purged = enqueue(store, "purged", 1_000).await;
        assert_eq!(
            store
                .retire_queued("purged", &Retire::Purge, 5_000)
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.get(purged).await.unwrap(), None);
        assert_eq!(store.counts().unwrap(), store.recount().await.unwrap());
        assert_eq!(
            store
                .purge(&Selection::All {
                    endpoint: Some("gone".into())
                })
                .await
                .unwrap(),
            300
        );
    })
    .await;
}
