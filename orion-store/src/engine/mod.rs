//! The storage-engine seam under the Raft log: an ordered map of log entries plus a
//! few metadata values, with explicit durability.
//!
//! Two engines implement it: [`SledEngine`] (sled 0.34, a log-structured B-tree) and
//! [`RedbEngine`] (redb 4, a copy-on-write B-tree in one file). Everything above this
//! seam ([`crate::log_store`], [`crate::state_machine`]) is engine-agnostic; the
//! engine is picked by [`crate::Engine`].

mod redb;
mod sled;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::redb::RedbEngine;
pub use self::sled::SledEngine;
use crate::config::Engine;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine's own error (I/O, corruption, lock held by another process).
    #[error("{engine}: {source}")]
    Backend {
        /// Which engine.
        engine: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The engine was closed by [`LogEngine::close`].
    #[error("storage engine is closed")]
    Closed,
    /// The store's file is damaged (or empty where it held a store): the
    /// node refuses to start on it rather than on a new, empty state.
    #[error("{} is damaged ({why}): not starting on it. Restore the data dir from a backup, or remove the data dir and rejoin the cluster from its peers (orion-node agent --join <a manager> --data-dir <a new dir>)", file.display())]
    Damaged {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The data directory holds another engine's files.
    #[error("{dir} holds a {found} store, not a {wanted} one")]
    WrongEngine {
        /// The data directory.
        dir: PathBuf,
        /// The engine whose files are there.
        found: &'static str,
        /// The engine asked for.
        wanted: &'static str,
    },
}

impl EngineError {
    pub(crate) fn backend(
        engine: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        EngineError::Backend {
            engine,
            source: Box::new(e),
        }
    }
}

/// A metadata value kept beside the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    /// The last vote (term + candidate + committed flag).
    Vote,
    /// The last committed log id.
    Committed,
    /// The last purged log id.
    LastPurged,
    /// The current snapshot's meta.
    SnapshotMeta,
    /// The current snapshot's bytes.
    SnapshotData,
}

impl MetaKey {
    /// The key as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            MetaKey::Vote => "vote",
            MetaKey::Committed => "committed",
            MetaKey::LastPurged => "last_purged",
            MetaKey::SnapshotMeta => "snapshot_meta",
            MetaKey::SnapshotData => "snapshot_data",
        }
    }
}

/// One log entry as bytes, keyed by its index.
pub type RawEntry = (u64, Vec<u8>);

/// An ordered, durable map of log entries plus metadata.
///
/// Calls are synchronous and may block on disk; async callers run the durable ones on
/// a blocking thread.
///
/// # Correctness
///
/// - [`append`](LogEngine::append) is durable (fsync'd) when it returns, with exactly one
///   sync per call however many entries it carries.
/// - [`put_meta`](LogEngine::put_meta) writes all its items atomically; with `durable`
///   they are fsync'd before it returns, otherwise they become durable with the next
///   durable write (writes are never reordered across a sync).
/// - [`purge_upto`](LogEngine::purge_upto) records the purge marker no later than it
///   deletes entries, so a crash never leaves a hole below the surviving log.
pub trait LogEngine: Send + Sync + 'static {
    /// The engine's name (`sled`, `redb`).
    fn name(&self) -> &'static str;

    /// Writes entries (ascending indexes, replacing any at those indexes) and syncs once.
    fn append(&self, entries: &[RawEntry]) -> Result<(), EngineError>;

    /// Entries with `start <= index < end`, ascending.
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RawEntry>, EngineError>;

    /// The entry with the highest index.
    fn last_entry(&self) -> Result<Option<RawEntry>, EngineError>;

    /// Deletes entries with `index >= from` and syncs.
    fn truncate_from(&self, from: u64) -> Result<(), EngineError>;

    /// Stores `marker` under [`MetaKey::LastPurged`], then deletes entries with
    /// `index <= upto`.
    fn purge_upto(&self, upto: u64, marker: &[u8]) -> Result<(), EngineError>;

    /// A metadata value.
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, EngineError>;

    /// Writes metadata values atomically; `durable` syncs before returning.
    fn put_meta(&self, items: &[(MetaKey, &[u8])], durable: bool) -> Result<(), EngineError>;

    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), EngineError>;

    /// Flushes and releases the files; later calls fail with [`EngineError::Closed`].
    fn close(&self) -> Result<(), EngineError>;
}

/// Opens (or creates) the engine's files under `dir`.
///
/// Refuses a directory that holds the other engine's files, so a changed default never
/// silently starts an empty store beside existing state.
pub fn open_engine(engine: Engine, dir: &Path) -> Result<Arc<dyn LogEngine>, EngineError> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::backend(engine.name(), e))?;
    let (found_other, other) = match engine {
        Engine::Sled => (RedbEngine::exists_in(dir), Engine::Redb),
        Engine::Redb => (SledEngine::exists_in(dir), Engine::Sled),
    };
    let ours = match engine {
        Engine::Sled => SledEngine::exists_in(dir),
        Engine::Redb => RedbEngine::exists_in(dir),
    };
    if found_other && !ours {
        return Err(EngineError::WrongEngine {
            dir: dir.to_path_buf(),
            found: other.name(),
            wanted: engine.name(),
        });
    }
    Ok(match engine {
        Engine::Sled => Arc::new(SledEngine::open(dir)?),
        Engine::Redb => Arc::new(RedbEngine::open(dir)?),
    })
}

/// Total size of the files under `dir`, in bytes (what the store occupies on disk).
pub fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
