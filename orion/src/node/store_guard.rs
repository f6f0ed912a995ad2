//! A data dir that has held a Raft store never starts a new, empty one in
//! its place: once the store opened, `store-made` is written beside it, and
//! a later start whose `store/` is missing, or whose store file is missing or
//! empty, is refused (a deleted or truncated store would otherwise form a
//! new cluster with a new id, and treat the old one's containers as
//! strangers). A damaged file is refused by the engine itself
//! (`orion_store`'s `EngineError::Damaged`).

use std::path::Path;

use super::NodeError;

/// The marker: this data dir's store opened at least once.
pub const STORE_MADE_FILE: &str = "store-made";

/// What an engine's files under `store/` must be once made.
fn store_present(store: &Path) -> Result<(), String> {
    if !store.is_dir() {
        return Err(format!("{} is gone", store.display()));
    }
    let redb = store.join("orion.redb");
    let sled = store.join("sled");
    match (std::fs::metadata(&redb), sled.is_dir()) {
        (Ok(m), _) if m.len() == 0 => Err(format!("{} is empty", redb.display())),
        (Ok(_), _) => Ok(()),
        (Err(_), true) => match std::fs::read_dir(&sled).map(|mut d| d.next().is_some()) {
            Ok(true) => Ok(()),
            _ => Err(format!("{} is empty", sled.display())),
        },
        (Err(_), false) => Err(format!(
            "its store file ({} or {}) is gone",
            redb.display(),
            sled.display()
        )),
    }
}

/// Refuses to start when the store of a data dir that had one is gone.
pub(crate) fn check(dir: &Path) -> Result<(), NodeError> {
    if !dir.join(STORE_MADE_FILE).exists() {
        return Ok(());
    }
    store_present(&dir.join("store")).map_err(|what| NodeError::StoreGone {
        dir: dir.to_path_buf(),
        what,
    })
}

/// Notes that the store opened.
pub(crate) fn mark(dir: &Path) -> Result<(), NodeError> {
    let file = dir.join(STORE_MADE_FILE);
    if file.exists() {
        return Ok(());
    }
    std::fs::write(
        &file,
        "the Raft store of this data dir was made; see orion's store_guard\n",
    )
    .map_err(|source| NodeError::DataDir { path: file, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_that_was_made_must_stay() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // New: nothing to check.
        check(d).unwrap();
        std::fs::create_dir_all(d.join("store")).unwrap();
        std::fs::write(d.join("store/orion.redb"), b"x").unwrap();
        mark(d).unwrap();
        check(d).unwrap();
        // Emptied, deleted, the whole store dir gone: refused, naming it.
        std::fs::write(d.join("store/orion.redb"), b"").unwrap();
        let e = check(d).unwrap_err().to_string();
        assert!(
            e.contains("orion.redb is empty") && e.contains("not starting a new, empty cluster"),
            "{e}"
        );
        std::fs::remove_file(d.join("store/orion.redb")).unwrap();
        assert!(check(d).unwrap_err().to_string().contains("is gone"));
        std::fs::remove_dir_all(d.join("store")).unwrap();
        let e = check(d).unwrap_err().to_string();
        assert!(
            e.contains("store is gone") && e.contains("rejoin the cluster"),
            "{e}"
        );
    }
}
