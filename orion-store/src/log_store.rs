//! [`LogStore`]: openraft's log storage (`RaftLogStorage`) over a [`LogEngine`].
//!
//! Entries are stored as JSON under their index; the vote, the committed log id and
//! the last purged log id as metadata. Durable writes run on a blocking thread so an
//! fsync never stalls the runtime.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::{EngineError, LogEngine, MetaKey, RawEntry};
use crate::types::{Entry, LogId, RaftNodeId, TypeConfig};

type StoreResult<T> = Result<T, StorageError<RaftNodeId>>;

/// The Raft log, vote and commit pointer of one node. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct LogStore {
    engine: Arc<dyn LogEngine>,
}

fn io_err(
    subject: ErrorSubject<RaftNodeId>,
    verb: ErrorVerb,
    e: EngineError,
) -> StorageError<RaftNodeId> {
    StorageIOError::new(subject, verb, &e).into()
}

fn read_logs_err(e: impl std::error::Error + 'static) -> StorageError<RaftNodeId> {
    StorageIOError::read_logs(&e).into()
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(v)
}

pub(crate) fn from_json<T: DeserializeOwned>(b: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(b)
}

/// Runs a blocking engine call off the runtime's worker threads.
pub(crate) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, EngineError> + Send + 'static,
) -> Result<R, EngineError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(EngineError::backend("blocking task", e)),
    }
}

/// The bytes [`LogStore`] stores for a command at `index` (term 1), for benchmarks
/// and tools that write an engine directly.
pub fn encode_command_entry(index: u64, cmd: orion_core::Command) -> Vec<u8> {
    let entry = Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 0), index),
        payload: openraft::EntryPayload::Normal(cmd),
    };
    // An entry is plain data; serializing it cannot fail.
    to_json(&entry).unwrap_or_default()
}

impl LogStore {
    /// A log store over `engine`.
    pub fn new(engine: Arc<dyn LogEngine>) -> Self {
        LogStore { engine }
    }

    // openraft's own error type, as its trait methods return it.
    #[allow(clippy::result_large_err)]
    fn read_meta<T: DeserializeOwned>(&self, key: MetaKey) -> StoreResult<Option<T>> {
        let bytes = self
            .engine
            .get_meta(key)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
        bytes
            .map(|b| from_json(&b))
            .transpose()
            .map_err(|e| StorageIOError::new(ErrorSubject::Store, ErrorVerb::Read, &e).into())
    }

    #[allow(clippy::result_large_err)]
    fn decode(raw: RawEntry) -> StoreResult<Entry> {
        from_json(&raw.1).map_err(|e| StorageIOError::read_log_at_index(raw.0, &e).into())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        let raw = self.engine.read_range(start, end).map_err(read_logs_err)?;
        raw.into_iter().map(Self::decode).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> = self.read_meta(MetaKey::LastPurged)?;
        let last = self.engine.last_entry().map_err(read_logs_err)?;
        let last_log_id = match last {
            Some(raw) => Some(Self::decode(raw)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> StoreResult<()> {
        let bytes = to_json(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        let engine = self.engine.clone();
        blocking(move || engine.put_meta(&[(MetaKey::Vote, &bytes)], true))
            .await
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<RaftNodeId>>> {
        self.read_meta(MetaKey::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> StoreResult<()> {
        // Not synced: it becomes durable with the next append. Losing it in a crash only
        // means replaying fewer entries at start-up; the next commit replays the rest.
        let bytes = to_json(&committed)
            .map_err(|e| StorageIOError::new(ErrorSubject::Store, ErrorVerb::Write, &e))?;
        self.engine
            .put_meta(&[(MetaKey::Committed, &bytes)], false)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId>> {
        Ok(self
            .read_meta::<Option<LogId>>(MetaKey::Committed)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Vec::new();
        for entry in entries {
            let bytes =
                to_json(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            batch.push((entry.log_id.index, bytes));
        }
        let engine = self.engine.clone();
        // One engine call, so one fsync, for the whole batch.
        match blocking(move || engine.append(&batch)).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> StoreResult<()> {
        let engine = self.engine.clone();
        blocking(move || engine.truncate_from(log_id.index))
            .await
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> StoreResult<()> {
        let marker = to_json(&log_id)
            .map_err(|e| StorageIOError::new(ErrorSubject::Logs, ErrorVerb::Delete, &e))?;
        let engine = self.engine.clone();
        blocking(move || engine.purge_upto(log_id.index, &marker))
            .await
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
