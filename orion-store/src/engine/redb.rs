//! [`RedbEngine`]: the log and metadata as two tables in one redb file.

use std::path::Path;

use parking_lot::RwLock;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{EngineError, LogEngine, MetaKey, RawEntry};

const NAME: &str = "redb";
const FILE: &str = "orion.redb";
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The log over redb 4.
///
/// Every durable call commits with `Durability::Immediate` (durable when `commit`
/// returns); the others commit with `Durability::None`, which the next immediate
/// commit makes durable in order.
pub struct RedbEngine {
    db: RwLock<Option<Database>>,
}

fn be(e: impl Into<redb::Error>) -> EngineError {
    EngineError::backend(NAME, e.into())
}

impl RedbEngine {
    /// Whether `dir` holds a redb store.
    pub fn exists_in(dir: &Path) -> bool {
        dir.join(FILE).exists()
    }

    /// Opens or creates the store in `dir/orion.redb`.
    ///
    /// An existing file is checked first (redb's integrity check, every page's
    /// checksum): a damaged one, an empty one, or one that makes redb panic
    /// is refused with [`EngineError::Damaged`] naming it — never opened as a
    /// new, empty store.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        let path = dir.join(FILE);
        let damaged = |why: String| EngineError::Damaged {
            file: path.clone(),
            why,
        };
        let existed = match std::fs::metadata(&path) {
            Ok(m) if m.len() == 0 => return Err(damaged("the file is empty".into())),
            Ok(_) => true,
            Err(_) => false,
        };
        // A panic inside redb is caught and reported as one line: the default
        // hook, which would print it with a backtrace, is set aside meanwhile.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let opened = std::panic::catch_unwind(|| -> Result<RedbEngine, EngineError> {
            let mut db = Database::create(&path).map_err(|e| {
                if existed {
                    damaged(e.to_string())
                } else {
                    be(e)
                }
            })?;
            if existed {
                match db.check_integrity() {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(file = %path.display(), "the store failed redb's integrity check and was repaired")
                    }
                    Err(e) => return Err(damaged(e.to_string())),
                }
            }
            let engine = RedbEngine {
                db: RwLock::new(Some(db)),
            };
            // Create both tables up front, so readers never meet a missing table.
            engine.write(true, |_, _| Ok(()))?;
            Ok(engine)
        });
        std::panic::set_hook(hook);
        match opened {
            Ok(r) => r,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "redb panicked reading it".into());
                Err(damaged(format!("redb panicked reading it: {why}")))
            }
        }
    }

    fn write(
        &self,
        durable: bool,
        f: impl FnOnce(
            &mut redb::Table<u64, &[u8]>,
            &mut redb::Table<&str, &[u8]>,
        ) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let guard = self.db.read();
        let db = guard.as_ref().ok_or(EngineError::Closed)?;
        let mut txn = db.begin_write().map_err(be)?;
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability).map_err(be)?;
        {
            let mut log = txn.open_table(LOG).map_err(be)?;
            let mut meta = txn.open_table(META).map_err(be)?;
            f(&mut log, &mut meta)?;
        }
        txn.commit().map_err(be)
    }

    fn read<R>(
        &self,
        f: impl FnOnce(
            &redb::ReadOnlyTable<u64, &[u8]>,
            &redb::ReadOnlyTable<&str, &[u8]>,
        ) -> Result<R, EngineError>,
    ) -> Result<R, EngineError> {
        let guard = self.db.read();
        let db = guard.as_ref().ok_or(EngineError::Closed)?;
        let txn = db.begin_read().map_err(be)?;
        let log = txn.open_table(LOG).map_err(be)?;
        let meta = txn.open_table(META).map_err(be)?;
        f(&log, &meta)
    }
}

impl LogEngine for RedbEngine {
    fn name(&self) -> &'static str {
        NAME
    }

    fn append(&self, entries: &[RawEntry]) -> Result<(), EngineError> {
        self.write(true, |log, _| {
            for (index, bytes) in entries {
                log.insert(*index, bytes.as_slice()).map_err(be)?;
            }
            Ok(())
        })
    }

    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RawEntry>, EngineError> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.read(|log, _| {
            log.range(start..end)
                .map_err(be)?
                .map(|kv| {
                    let (k, v) = kv.map_err(be)?;
                    Ok((k.value(), v.value().to_vec()))
                })
                .collect()
        })
    }

    fn last_entry(&self) -> Result<Option<RawEntry>, EngineError> {
        self.read(|log, _| {
            Ok(log
                .last()
                .map_err(be)?
                .map(|(k, v)| (k.value(), v.value().to_vec())))
        })
    }

    fn truncate_from(&self, from: u64) -> Result<(), EngineError> {
        self.write(true, |log, _| {
            log.retain_in(from.., |_, _| false).map_err(be)
        })
    }

    fn purge_upto(&self, upto: u64, marker: &[u8]) -> Result<(), EngineError> {
        // One transaction: the marker and the deletes commit together.
        self.write(false, |log, meta| {
            meta.insert(MetaKey::LastPurged.as_str(), marker)
                .map_err(be)?;
            log.retain_in(..=upto, |_, _| false).map_err(be)
        })
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, EngineError> {
        self.read(|_, meta| {
            Ok(meta
                .get(key.as_str())
                .map_err(be)?
                .map(|v| v.value().to_vec()))
        })
    }

    fn put_meta(&self, items: &[(MetaKey, &[u8])], durable: bool) -> Result<(), EngineError> {
        self.write(durable, |_, meta| {
            for (k, v) in items {
                meta.insert(k.as_str(), *v).map_err(be)?;
            }
            Ok(())
        })
    }

    fn flush(&self) -> Result<(), EngineError> {
        // An empty immediate commit makes every earlier non-durable commit durable.
        self.write(true, |_, _| Ok(()))
    }

    fn close(&self) -> Result<(), EngineError> {
        self.flush().or_else(|e| match e {
            EngineError::Closed => Ok(()),
            e => Err(e),
        })?;
        drop(self.db.write().take());
        Ok(())
    }
}
