//! [`SledEngine`]: the log in a sled tree, metadata in another, `flush()` plus `fdatasync` as the sync.

use std::path::Path;

use parking_lot::RwLock;

use super::{EngineError, LogEngine, MetaKey, RawEntry};

const NAME: &str = "sled";
const SUBDIR: &str = "sled";

/// The log over sled 0.34.
///
/// sled only syncs every 500 ms on its own, and its `Db::flush` syncs with Linux's
/// `sync_file_range`, which neither flushes the disk's write cache nor the file's
/// size: not durable across a power loss. So every durable call here ends in
/// `Db::flush` and then `fdatasync` on sled's data file (`sled/db`), a real sync.
/// sled's log-structured writes recover as a prefix, so a write is never durable
/// before an earlier one.
pub struct SledEngine {
    inner: RwLock<Option<Inner>>,
}

struct Inner {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// sled's data file, opened again only to `fdatasync` it.
    file: std::fs::File,
}

impl Inner {
    /// Makes every write so far durable: sled writes its buffers out, then a real sync.
    fn sync(&self) -> Result<(), EngineError> {
        self.db.flush().map_err(be)?;
        self.file
            .sync_data()
            .map_err(|e| EngineError::backend(NAME, e))
    }
}

fn be(e: sled::Error) -> EngineError {
    EngineError::backend(NAME, e)
}

fn key_index(k: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = k.len().min(8);
    b[..n].copy_from_slice(&k[..n]);
    u64::from_be_bytes(b)
}

impl SledEngine {
    /// Whether `dir` holds a sled store.
    pub fn exists_in(dir: &Path) -> bool {
        dir.join(SUBDIR).exists()
    }

    /// Opens or creates the store in `dir/sled`.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        let db = sled::Config::new()
            .path(dir.join(SUBDIR))
            .open()
            .map_err(be)?;
        let log = db.open_tree("log").map_err(be)?;
        let meta = db.open_tree("meta").map_err(be)?;
        let file = std::fs::File::open(dir.join(SUBDIR).join("db"))
            .map_err(|e| EngineError::backend(NAME, e))?;
        Ok(SledEngine {
            inner: RwLock::new(Some(Inner {
                db,
                log,
                meta,
                file,
            })),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&Inner) -> Result<R, EngineError>) -> Result<R, EngineError> {
        match self.inner.read().as_ref() {
            Some(inner) => f(inner),
            None => Err(EngineError::Closed),
        }
    }
}

impl LogEngine for SledEngine {
    fn name(&self) -> &'static str {
        NAME
    }

    fn append(&self, entries: &[RawEntry]) -> Result<(), EngineError> {
        self.with(|i| {
            let mut batch = sled::Batch::default();
            for (index, bytes) in entries {
                batch.insert(&index.to_be_bytes(), bytes.as_slice());
            }
            i.log.apply_batch(batch).map_err(be)?;
            i.sync()
        })
    }

    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RawEntry>, EngineError> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.with(|i| {
            i.log
                .range(start.to_be_bytes()..end.to_be_bytes())
                .map(|kv| {
                    let (k, v) = kv.map_err(be)?;
                    Ok((key_index(&k), v.to_vec()))
                })
                .collect()
        })
    }

    fn last_entry(&self) -> Result<Option<RawEntry>, EngineError> {
        self.with(|i| {
            Ok(i.log
                .last()
                .map_err(be)?
                .map(|(k, v)| (key_index(&k), v.to_vec())))
        })
    }

    fn truncate_from(&self, from: u64) -> Result<(), EngineError> {
        self.with(|i| {
            let mut batch = sled::Batch::default();
            for k in i.log.range(from.to_be_bytes()..).keys() {
                batch.remove(k.map_err(be)?);
            }
            i.log.apply_batch(batch).map_err(be)?;
            i.sync()
        })
    }

    fn purge_upto(&self, upto: u64, marker: &[u8]) -> Result<(), EngineError> {
        self.with(|i| {
            // The marker goes first: sled recovers a prefix of writes, so the deletes
            // below are never durable without it.
            i.meta
                .insert(MetaKey::LastPurged.as_str(), marker)
                .map_err(be)?;
            let mut batch = sled::Batch::default();
            for k in i.log.range(..=upto.to_be_bytes()).keys() {
                batch.remove(k.map_err(be)?);
            }
            i.log.apply_batch(batch).map_err(be)?;
            Ok(())
        })
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, EngineError> {
        self.with(|i| Ok(i.meta.get(key.as_str()).map_err(be)?.map(|v| v.to_vec())))
    }

    fn put_meta(&self, items: &[(MetaKey, &[u8])], durable: bool) -> Result<(), EngineError> {
        self.with(|i| {
            let mut batch = sled::Batch::default();
            for (k, v) in items {
                batch.insert(k.as_str(), *v);
            }
            i.meta.apply_batch(batch).map_err(be)?;
            if durable {
                i.sync()?;
            }
            Ok(())
        })
    }

    fn flush(&self) -> Result<(), EngineError> {
        self.with(Inner::sync)
    }

    fn close(&self) -> Result<(), EngineError> {
        match self.inner.write().take() {
            Some(inner) => inner.sync(),
            None => Ok(()),
        }
    }
}
