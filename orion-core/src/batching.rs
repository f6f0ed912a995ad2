//! Group commit: a [`Store`] wrapper that gathers concurrent proposals into one
//! [`Command::Batch`] log entry.
//!
//! openraft appends (and fsyncs) each client write on its own, so a store that
//! takes proposals one at a time commits at most one per disk flush, however many
//! clients wait. This wrapper queues proposals; one task takes everything queued
//! (up to `max_batch`) and proposes it as a single entry, with a few such entries
//! in flight at once. Each caller gets its own command's [`Response`] back, with
//! the entry's index. Commands keep their order within a batch; concurrent
//! proposals had no order to keep.
//!
//! ```text
//!  propose ─┐                      ┌─► Batch[c1 c2 … cn] ──► inner.propose ─┐
//!  propose ─┼─► queue ─► batcher ──┤                                       ├─► split answers
//!  propose ─┘                      └─► (up to `in_flight` entries at once) ─┘
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::command::{Command, Response};
use crate::model::NodeId;
use crate::replica::Replica;
use crate::store::{Applied, Leadership, Peer, Store, StoreError};

type Reply = oneshot::Sender<Result<Applied, StoreError>>;

/// How proposals are gathered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchConfig {
    /// Most commands in one entry.
    pub max_batch: usize,
    /// Most entries proposed and not yet committed at once.
    pub in_flight: usize,
}

impl Default for BatchConfig {
    /// 256 commands keep an entry well under a megabyte for ordinary commands;
    /// 4 entries in flight keep the log's pipeline busy without reordering much.
    fn default() -> Self {
        BatchConfig {
            max_batch: 256,
            in_flight: 4,
        }
    }
}

/// A store that commits concurrent proposals together. See the module docs.
pub struct BatchingStore {
    inner: Arc<dyn Store>,
    queue: mpsc::UnboundedSender<(Command, Reply)>,
}

/// Counts proposals, entry sizes and commit latency, when given metrics.
type Meter = Option<Arc<crate::metrics::Metrics>>;

impl std::fmt::Debug for BatchingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchingStore").finish_non_exhaustive()
    }
}

impl BatchingStore {
    /// Wraps `inner`; spawns the batching task (it ends when the wrapper drops).
    pub fn new(inner: Arc<dyn Store>, config: BatchConfig) -> Self {
        Self::metered(inner, config, None)
    }

    /// As [`BatchingStore::new`], counting into `metrics`: proposals by
    /// outcome, commands per entry, and each entry's commit latency.
    pub fn metered(
        inner: Arc<dyn Store>,
        config: BatchConfig,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(batcher(inner.clone(), rx, config, metrics));
        BatchingStore { inner, queue }
    }
}

async fn batcher(
    inner: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<(Command, Reply)>,
    config: BatchConfig,
    meter: Meter,
) {
    let slots = Arc::new(Semaphore::new(config.in_flight.max(1)));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < config.max_batch.max(1) {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let inner = inner.clone();
        let meter = meter.clone();
        tokio::spawn(async move {
            commit(&*inner, batch, meter.as_deref()).await;
            drop(permit);
        });
    }
}

/// What a proposal's result is counted as.
fn outcome(r: &Result<Applied, StoreError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(StoreError::NoLeader(_)) => "no_leader",
        Err(StoreError::Timeout) => "timeout",
        Err(StoreError::Shutdown) => "shutdown",
        Err(_) => "error",
    }
}

async fn commit(
    inner: &dyn Store,
    mut batch: Vec<(Command, Reply)>,
    meter: Option<&crate::metrics::Metrics>,
) {
    let started = std::time::Instant::now();
    let n = batch.len();
    let count = |r: &Result<Applied, StoreError>| {
        if let Some(m) = meter {
            m.store_batch_size.observe(n as f64);
            if r.is_ok() {
                m.store_commit_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            m.store_proposals
                .get_or_create(&crate::metrics::OutcomeLabel {
                    outcome: outcome(r).to_string(),
                })
                .inc_by(n as u64);
        }
    };
    if batch.len() == 1 {
        let (cmd, reply) = batch.pop().expect("one");
        let r = inner.propose(cmd).await;
        count(&r);
        let _ = reply.send(r);
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
    let r = inner.propose(Command::batch(commands)).await;
    count(&r);
    match r {
        Ok(Applied {
            index,
            response: Response::Batch { responses },
        }) if responses.len() == replies.len() => {
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(Applied { index, response }));
            }
        }
        Ok(other) => {
            let why = format!("unexpected answer to a batch: {:?}", other.response);
            for reply in replies {
                let _ = reply.send(Err(StoreError::Forward(why.clone())));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(copy_error(&e)));
            }
        }
    }
}

/// The same failure for every caller of a failed batch.
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::NoLeader(s) => StoreError::NoLeader(s.clone()),
        StoreError::Timeout => StoreError::Timeout,
        StoreError::Shutdown => StoreError::Shutdown,
        StoreError::Forward(s) => StoreError::Forward(s.clone()),
        StoreError::Unsupported(s) => StoreError::Unsupported(s),
        StoreError::Membership(s) => StoreError::Membership(s.clone()),
        StoreError::Storage(err) => StoreError::Storage(err.to_string().into()),
    }
}

#[async_trait]
impl Store for BatchingStore {
    async fn propose(&self, cmd: Command) -> Result<Applied, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((cmd, tx))
            .map_err(|_| StoreError::Shutdown)?;
        rx.await.map_err(|_| StoreError::Shutdown)?
    }

    fn replica(&self) -> &Arc<Replica> {
        self.inner.replica()
    }

    async fn read_barrier(&self) -> Result<(), StoreError> {
        self.inner.read_barrier().await
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.inner.leadership()
    }

    async fn add_peer(&self, peer: Peer) -> Result<(), StoreError> {
        self.inner.add_peer(peer).await
    }

    async fn remove_peer(&self, id: &NodeId) -> Result<(), StoreError> {
        self.inner.remove_peer(id).await
    }

    fn voters(&self) -> Vec<Peer> {
        self.inner.voters()
    }

    fn status(&self) -> crate::store::StoreStatus {
        self.inner.status()
    }

    async fn shutdown(&self) -> Result<(), StoreError> {
        self.inner.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::JobSpec;
    use crate::testing::MemStore;

    /// Wraps a store, recording how many commands each proposed entry carried.
    struct Recording {
        inner: MemStore,
        entries: parking_lot::Mutex<Vec<usize>>,
    }

    #[async_trait]
    impl Store for Recording {
        async fn propose(&self, cmd: Command) -> Result<Applied, StoreError> {
            let n = match &cmd {
                Command::Batch { commands, .. } => commands.len(),
                _ => 1,
            };
            self.entries.lock().push(n);
            self.inner.propose(cmd).await
        }
        fn replica(&self) -> &Arc<Replica> {
            self.inner.replica()
        }
        async fn read_barrier(&self) -> Result<(), StoreError> {
            self.inner.read_barrier().await
        }
        fn leadership(&self) -> watch::Receiver<Leadership> {
            self.inner.leadership()
        }
        async fn shutdown(&self) -> Result<(), StoreError> {
            self.inner.shutdown().await
        }
    }

    /// Concurrent proposals share entries (fewer entries reach the inner store than
    /// there were proposals, and every command reaches it once), each caller gets
    /// its own answer with its entry's index, and a refusal inside a batch reaches
    /// only its caller.
    #[tokio::test]
    async fn concurrent_proposals_share_entries_and_answers_stay_apart() {
        let mem = Arc::new(Recording {
            inner: MemStore::new("n1"),
            entries: Default::default(),
        });
        let store = Arc::new(BatchingStore::new(mem.clone(), BatchConfig::default()));
        // Every proposal is queued before the batcher runs (one thread: the
        // batcher only runs when this task waits).
        let proposals = (0..200).map(|i| {
            let store = store.clone();
            async move {
                let cmd = if i == 100 {
                    Command::StopJob {
                        name: "nope".into(),
                        purge: false,
                    }
                } else {
                    Command::UpsertJob {
                        spec: JobSpec::service(format!("job-{i}"), "img"),
                    }
                };
                (i, store.propose(cmd).await.unwrap())
            }
        });
        let answers = futures::future::join_all(proposals).await;
        let mut indexes = std::collections::BTreeSet::new();
        for (i, a) in answers {
            match a.response {
                Response::Job { name, version, .. } => {
                    assert_eq!((name, version), (format!("job-{i}"), 1));
                }
                Response::Refused { .. } => assert_eq!(i, 100, "only the bad one is refused"),
                other => panic!("{other:?}"),
            }
            indexes.insert(a.index);
        }
        assert_eq!(mem.replica().read(|s| s.jobs.len()), 199);
        let entries = mem.entries.lock().clone();
        assert_eq!(entries.iter().sum::<usize>(), 200, "every command once");
        assert_eq!(indexes.len(), entries.len(), "one index per entry");
        assert!(entries.len() < 200, "proposals shared entries: {entries:?}");
        assert!(entries.iter().any(|&n| n > 1), "{entries:?}");
    }
}
