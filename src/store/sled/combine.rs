//! Combining: the writes of concurrent callers share one sled transaction.
//!
//! Why: every sled 0.34 transaction seals and writes the log's I/O buffer twice, whatever it holds
//! (`PageCache::pin_log` rolls the buffer before and after reserving the transaction's batch manifest), and
//! each of those writes is a `pwrite` plus a blocking `sync_file_range`. One transaction per message therefore
//! cost two synchronous disk writes per enqueue and two more per attempt (docs/performance/design-notes.md,
//! "Why the store and the dispatcher are laid out as they are": "Writes that need a transaction share one").
//! A [`Combiner`] queues each caller's operation. When nobody is leading, one leader takes the lead and runs
//! everything queued, batch after batch, until the queue is empty; each caller gets its answer as soon as its
//! batch is written. For async callers the leader is a blocking task of its own (spawned only when nobody
//! leads), so while one transaction runs, the operations of other tasks pile up for the next and no caller's
//! thread is held. A blocking caller that finds nobody leading leads on its own thread.

use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use tokio::sync::oneshot;

use super::StoreError;

type Answer<T> = Result<T, StoreError>;

/// Operations of type `Op`, each answered with a `T` or a [`StoreError`].
pub(super) struct Combiner<Op, T> {
    state: Mutex<State<Op, T>>,
    /// How many messages an operation carries, and how many a batch may carry (at least one operation):
    /// a bound on a transaction's size, hence on the memory sled stages for it.
    weight: fn(&Op) -> usize,
    max_weight: usize,
}

/// The most messages one combined transaction carries.
pub(super) const MAX_BATCH_MESSAGES: usize = 256;

struct State<Op, T> {
    /// Operations waiting for a leader, with where their answer goes.
    queue: Vec<(Op, Reply<T>)>,
    leading: bool,
}

/// Where an answer goes: an async caller awaits it, a blocking caller blocks on it.
enum Reply<T> {
    Async(oneshot::Sender<Answer<T>>),
    Blocking(mpsc::Sender<Answer<T>>),
}

impl<T> Reply<T> {
    fn send(self, answer: Answer<T>) {
        // A caller that stopped waiting (a dropped request) needs no answer.
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(answer);
            }
            Reply::Blocking(tx) => {
                let _ = tx.send(answer);
            }
        }
    }
}

impl<Op, T> Combiner<Op, T> {
    /// A combiner whose batches carry at most `max_weight` messages, `weight` telling an operation's count.
    pub fn new(weight: fn(&Op) -> usize, max_weight: usize) -> Self {
        Combiner {
            state: Mutex::new(State {
                queue: Vec::new(),
                leading: false,
            }),
            weight,
            max_weight,
        }
    }
}

/// A poisoned lock only means that a panic happened while it was held; the state behind it is changed in
/// whole steps (a push, a swap, a flag), so it is consistent at all times.
fn lock<V>(mutex: &Mutex<V>) -> MutexGuard<'_, V> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<Op, T> Combiner<Op, T> {
    /// Queues `op`; true when the caller must lead (nobody was leading).
    fn enqueue(&self, op: Op, reply: Reply<T>) -> bool {
        let mut state = lock(&self.state);
        state.queue.push((op, reply));
        !std::mem::replace(&mut state.leading, true)
    }

    /// Runs `op`, possibly in one batch with other callers' operations, and waits for its answer. `exec` gets
    /// a batch of operations and answers each in order; when it fails as a whole, every operation of the batch
    /// gets the failure. A blocking call: when nobody leads, the caller writes on its own thread.
    pub fn run(&self, op: Op, exec: impl Fn(&[Op]) -> BatchResult<T>) -> Answer<T> {
        let (tx, rx) = mpsc::channel();
        if self.enqueue(op, Reply::Blocking(tx)) {
            self.lead(&exec);
        }
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Combined("the write was dropped".into())))
    }

    /// Runs batches until the queue is empty, then gives up the lead (under the same lock that queues, so an
    /// operation is either taken by this leader or finds nobody leading and leads itself).
    fn lead(&self, exec: &impl Fn(&[Op]) -> BatchResult<T>) {
        let mut guard = Leader {
            combiner: self,
            replies: Vec::new(),
        };
        loop {
            let batch = {
                let mut state = lock(&self.state);
                if state.queue.is_empty() {
                    state.leading = false;
                    return;
                }
                self.take_batch(&mut state.queue)
            };
            let (ops, replies): (Vec<Op>, Vec<Reply<T>>) = batch.into_iter().unzip();
            guard.replies = replies;
            let outcome = exec(&ops);
            answer_all(std::mem::take(&mut guard.replies), outcome);
        }
    }
}

impl<Op, T> Combiner<Op, T> {
    /// The oldest queued operations up to `max_weight` messages (at least one operation).
    fn take_batch(&self, queue: &mut Vec<(Op, Reply<T>)>) -> Vec<(Op, Reply<T>)> {
        let mut weight = 0;
        let mut take = 0;
        for (op, _) in queue.iter() {
            weight += (self.weight)(op);
            if take > 0 && weight > self.max_weight {
                break;
            }
            take += 1;
        }
        if take == queue.len() {
            std::mem::take(queue)
        } else {
            queue.drain(..take).collect()
        }
    }
}

impl<Op: Send + 'static, T: Send + 'static> Combiner<Op, T> {
    /// [`Combiner::run`] for async callers: the caller awaits its answer; when nobody leads, a blocking task
    /// is spawned to lead. Must run inside tokio.
    pub async fn run_async(
        self: &Arc<Self>,
        op: Op,
        exec: impl Fn(&[Op]) -> BatchResult<T> + Send + 'static,
    ) -> Answer<T> {
        let (tx, rx) = oneshot::channel();
        if self.enqueue(op, Reply::Async(tx)) {
            let combiner = Arc::clone(self);
            tokio::task::spawn_blocking(move || combiner.lead(&exec));
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Combined("the write was dropped".into())))
    }
}

/// What a batch gives: an answer per operation, in order, or a failure of the whole batch.
pub(super) type BatchResult<T> = Result<Vec<Answer<T>>, StoreError>;

/// The leader at work. Should a batch panic, the drop answers the batch's callers with an error and gives up
/// the lead, so that nobody waits for ever and the next caller can lead.
struct Leader<'a, Op, T> {
    combiner: &'a Combiner<Op, T>,
    replies: Vec<Reply<T>>,
}

impl<Op, T> Drop for Leader<'_, Op, T> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for reply in self.replies.drain(..) {
            reply.send(Err(StoreError::Combined("the write panicked".into())));
        }
        lock(&self.combiner.state).leading = false;
    }
}

/// Sends each caller its answer; a whole-batch failure answers every caller with it.
fn answer_all<T>(replies: Vec<Reply<T>>, outcome: BatchResult<T>) {
    match outcome {
        Ok(answers) => {
            let mut answers = answers.into_iter();
            for reply in replies {
                reply.send(answers.next().unwrap_or_else(|| {
                    Err(StoreError::Corrupt(
                        "a combined write gave no answer for an operation".into(),
                    ))
                }));
            }
        }
        Err(error) => {
            let shared = error.to_string();
            for reply in replies {
                reply.send(Err(StoreError::Combined(shared.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn a_caller_alone_runs_its_own_operation() {
        let combiner = Combiner::<u32, u32>::new(|_| 1, 16);
        let answer = combiner.run(7, |ops| Ok(ops.iter().map(|op| Ok(op * 2)).collect()));
        assert_eq!(answer.unwrap(), 14);
    }

    #[test]
    fn concurrent_callers_each_get_their_own_answer_and_share_batches() {
        let combiner = Arc::new(Combiner::<u32, u32>::new(|_| 1, 16));
        let batches = Arc::new(Mutex::new(Vec::new()));
        let start = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let (combiner, batches, start) = (
                    Arc::clone(&combiner),
                    Arc::clone(&batches),
                    Arc::clone(&start),
                );
                std::thread::spawn(move || {
                    start.wait();
                    (0..200u32)
                        .map(|i| {
                            let op = t * 1_000 + i;
                            let answer = combiner.run(op, |ops| {
                                lock(&batches).push(ops.len());
                                Ok(ops.iter().map(|op| Ok(op + 1)).collect())
                            });
                            (op, answer.unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for thread in threads {
            for (op, answer) in thread.join().unwrap() {
                assert_eq!(answer, op + 1);
            }
        }
        let batches = lock(&batches);
        assert_eq!(
            batches.iter().sum::<usize>(),
            1_600,
            "every operation ran once"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_async_callers_each_get_their_own_answer() {
        let combiner = Arc::new(Combiner::<u32, u32>::new(|_| 1, 16));
        let batches = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for op in 0..500u32 {
            let (combiner, batches) = (Arc::clone(&combiner), Arc::clone(&batches));
            tasks.spawn(async move {
                let answer = combiner
                    .run_async(op, move |ops| {
                        lock(&batches).push(ops.len());
                        Ok(ops.iter().map(|op| Ok(op * 3)).collect())
                    })
                    .await;
                (op, answer.unwrap())
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let (op, answer) = joined.unwrap();
            assert_eq!(answer, op * 3);
        }
        let batches = lock(&batches);
        assert_eq!(
            batches.iter().sum::<usize>(),
            500,
            "every operation ran once"
        );
        assert!(
            batches.iter().all(|n| *n <= 16),
            "a batch over its bound: {batches:?}"
        );
    }

    #[test]
    fn a_batch_that_panics_answers_its_callers_and_frees_the_lead() {
        let combiner = Combiner::<u32, u32>::new(|_| 1, 16);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            combiner.run(1, |_| panic!("a bug in a write"))
        }));
        assert!(panicked.is_err());
        // The panicking caller's own answer is left behind; later callers are served.
        let answer = combiner.run(2, |ops| Ok(ops.iter().map(|op| Ok(op * 10)).collect()));
        assert_eq!(answer.unwrap(), 20);
    }

    #[test]
    fn a_failed_batch_fails_every_operation_in_it() {
        let combiner = Combiner::<u32, u32>::new(|_| 1, 16);
        let answer = combiner.run(1, |_| Err(StoreError::Corrupt("disk on fire".into())));
        let error = answer.unwrap_err().to_string();
        assert!(error.contains("disk on fire"), "{error}");
    }
}
