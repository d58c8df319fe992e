//! What a message's writes cost sled, by how they are made: the measurement behind store format 4
//! (docs/performance/design-notes.md, "Why the store and the dispatcher are laid out as they are": its
//! opening paragraph and "1 KiB inline").
//!
//! `cargo bench --bench sled_writes [-- MESSAGES]` writes MESSAGES messages (default 200,000) on one thread,
//! without fsync, once per layout, into a fresh sled in a temporary directory, and prints each layout's rate
//! as a ratio against one plain insert per message measured in the same run:
//! - one insert of a 300-byte payload (the baseline) and of a 450-byte record with its payload inline;
//! - two inserts (a 150-byte record and its 300-byte payload in another tree), plain and in transactions of
//!   250 messages over both trees (how format 3 enqueued);
//! - one `apply_batch` of 250 inline records.
//!
//! Then, for payloads of 300 bytes to 8 KiB, a message's life as the store writes it: the enqueue and then
//! one or three rewrites of the record (a delivery at the first attempt; two retries and a delivery), with the
//! payload in the record against apart from it (a fifth as many messages; the ratio is the time with the
//! payload inline over the time with it apart, so below 1 favours inline). This chose the inline limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

const PER_TRANSACTION: usize = 250;

/// Writes the run's messages into the record tree and, for the layouts that keep payloads apart, the other.
type Layout<'a> = (&'a str, &'a dyn Fn(&sled::Tree, &sled::Tree));

fn main() {
    // `cargo test` runs bench targets too, without `--bench`: measure nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("sled_writes measures only under `cargo bench --bench sled_writes`");
        return;
    }
    let messages: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(200_000);
    let record = vec![b'r'; 150];
    let payload = vec![b'p'; 300];
    let inline = vec![b'b'; 450];
    let id = || uuid::Uuid::now_v7();

    let layouts: [Layout<'_>; 5] = [
        ("1 insert, 300-byte payload", &|msg, _| {
            for _ in 0..messages {
                msg.insert(id().as_bytes(), payload.as_slice()).unwrap();
            }
        }),
        ("1 insert, 450-byte record with its payload", &|msg, _| {
            for _ in 0..messages {
                msg.insert(id().as_bytes(), inline.as_slice()).unwrap();
            }
        }),
        ("2 inserts (record, payload), plain", &|msg, apart| {
            for _ in 0..messages {
                let id = id();
                apart.insert(id.as_bytes(), payload.as_slice()).unwrap();
                msg.insert(id.as_bytes(), record.as_slice()).unwrap();
            }
        }),
        (
            "2 inserts (record, payload), 250 per transaction",
            &|msg, apart| {
                for _ in 0..messages / PER_TRANSACTION {
                    let ids: Vec<_> = (0..PER_TRANSACTION).map(|_| id()).collect();
                    (msg, apart)
                        .transaction(|(msg, apart)| {
                            for id in &ids {
                                apart.insert(id.as_bytes(), payload.as_slice())?;
                                msg.insert(id.as_bytes(), record.as_slice())?;
                            }
                            Ok::<_, ConflictableTransactionError<()>>(())
                        })
                        .unwrap();
                }
            },
        ),
        ("1 insert, 450 bytes, apply_batch of 250", &|msg, _| {
            for _ in 0..messages / PER_TRANSACTION {
                let mut batch = sled::Batch::default();
                for _ in 0..PER_TRANSACTION {
                    batch.insert(id().as_bytes(), inline.as_slice());
                }
                msg.apply_batch(batch).unwrap();
            }
        }),
    ];

    let mut baseline = None;
    println!("{messages} messages per layout, one thread, no fsync");
    // The first layout runs twice and only its second run counts: the first warms the allocator and the
    // page cache, which would otherwise flatter every layout after it.
    let runs = std::iter::once((true, layouts[0])).chain(layouts.into_iter().map(|l| (false, l)));
    for (warm_up, (name, write)) in runs {
        let (_dir, msg, apart) = fresh_trees();
        let started = Instant::now();
        write(&msg, &apart);
        let rate = messages as f64 / started.elapsed().as_secs_f64();
        if warm_up {
            continue;
        }
        let baseline = *baseline.get_or_insert(rate);
        println!(
            "{name:<52} {rate:>9.0} messages/s  {:.2} x the first",
            rate / baseline
        );
    }

    let messages = messages / 5;
    println!(
        "\n{messages} messages per case: the enqueue and the record's rewrites, inline over apart"
    );
    for rewrites in [1, 3] {
        for size in [300, 512, 1024, 2048, 4096, 8192] {
            let inline = lifetime_seconds(messages, size, rewrites, true);
            let apart = lifetime_seconds(messages, size, rewrites, false);
            println!(
                "{size:>5}-byte payload, {rewrites} rewrite(s): {:>6.2} us inline, {:>6.2} us apart, ratio {:.2}",
                inline * 1e6 / messages as f64,
                apart * 1e6 / messages as f64,
                inline / apart
            );
        }
    }
}

/// Seconds to enqueue `messages` messages with a `size`-byte payload and rewrite each record `rewrites`
/// times, in id order as a lane delivers them, with the payload in the record or in its own tree.
fn lifetime_seconds(messages: usize, size: usize, rewrites: usize, inline: bool) -> f64 {
    let (_dir, msg, apart) = fresh_trees();
    let ids: Vec<_> = (0..messages).map(|_| uuid::Uuid::now_v7()).collect();
    let record_len = if inline { 150 + size } else { 150 };
    let started = Instant::now();
    for id in &ids {
        if !inline {
            apart.insert(id.as_bytes(), vec![b'p'; size]).unwrap();
        }
        msg.insert(id.as_bytes(), vec![b'r'; record_len]).unwrap();
    }
    for rewrite in 0..rewrites {
        for id in &ids {
            msg.insert(id.as_bytes(), vec![b'0' + rewrite as u8; record_len + 10])
                .unwrap();
        }
    }
    started.elapsed().as_secs_f64()
}

/// A fresh sled (in a temporary directory, kept while the guard lives) with the record tree and the payload
/// tree, configured as hookd configures its own.
fn fresh_trees() -> (tempfile::TempDir, sled::Tree, sled::Tree) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(64 << 20)
        .flush_every_ms(Some(500))
        .open()
        .unwrap();
    let (msg, apart) = (
        db.open_tree("msg").unwrap(),
        db.open_tree("payload").unwrap(),
    );
    (dir, msg, apart)
}
