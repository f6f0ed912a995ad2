//! The data-key file: the cluster's key for secrets at rest
//! ([`orion_core::secret::DataKey`]), kept in `<data-dir>/data.key`.
//!
//! The first start of a cluster's first node makes the key; every start
//! after reads it back. A node that joins a secure cluster receives the key
//! with its certificate (`CertGrant::data_key`); a joiner of an insecure-dev
//! cluster is given it (`NodeConfig::data_key`). Either keeps it the same
//! way. The
//! file holds 64 hex digits, is readable by this user only (0600), and is
//! written to `data.key.new`, synced, then renamed, so a crash leaves either
//! no key or the whole key. With autolock the file is sealed under the
//! unlock key (see [`super::autolock`]).

use std::path::Path;

use orion_core::at_rest::{self, UnlockKey};
use orion_core::secret::DataKey;
use tracing::{info, warn};

use super::{ConfigError, NodeError};

/// The file in the data dir that holds the data key.
pub const DATA_KEY_FILE: &str = "data.key";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::DataDir {
        path: path.to_path_buf(),
        source,
    }
}

/// The node's data key: the one in the data dir; else `given`, kept there;
/// else, when `fresh` (a new data dir forming a new cluster), a new one, kept
/// there; else none (the node then seals and opens no secrets, and says so).
/// Refuses a `given` key other than the one kept. The file is read and
/// written sealed under `sealed` (autolock) when given.
pub(crate) fn load_or_make(
    dir: &Path,
    given: Option<&DataKey>,
    fresh: bool,
    sealed: Option<&UnlockKey>,
) -> Result<Option<DataKey>, NodeError> {
    let path = dir.join(DATA_KEY_FILE);
    let pending = dir.join(format!("{DATA_KEY_FILE}.new"));
    let kept = match read(&path, sealed)? {
        Some(k) => Some(k),
        // Written and synced, then stopped before the rename.
        None => match read(&pending, sealed).ok().flatten() {
            Some(k) => {
                std::fs::rename(&pending, &path).map_err(io(&path))?;
                Some(k)
            }
            None => None,
        },
    };
    match (kept, given) {
        (Some(k), Some(g)) if k != *g => Err(ConfigError::new(
            "data_key",
            format!(
                "the key given (id {}) is not the one in {} (id {}): every node of a cluster holds the same key",
                g.id(),
                path.display(),
                k.id()
            ),
        )
        .into()),
        (Some(k), _) => Ok(Some(k)),
        (None, Some(g)) => {
            write(&path, g, sealed)?;
            Ok(Some(g.clone()))
        }
        (None, None) if fresh => {
            let k = DataKey::generate();
            write(&path, &k, sealed)?;
            info!(path = %path.display(), key_id = %k.id(), "made the cluster's data key for secrets");
            Ok(Some(k))
        }
        (None, None) => {
            warn!(path = %path.display(), "this node holds no data key: it cannot seal secrets, and tasks that use secrets are not placed on it (give it the cluster's key)");
            Ok(None)
        }
    }
}

fn read(path: &Path, sealed: Option<&UnlockKey>) -> Result<Option<DataKey>, NodeError> {
    let Some(bytes) = at_rest::read(path, sealed)? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&bytes).unwrap_or_default();
    DataKey::from_hex(text)
        .map(Some)
        .map_err(|p| NodeError::DataDir {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, p),
        })
}

/// Keeps `key` in `path` (to a `.new` file, synced, renamed, the directory
/// synced), sealed under `sealed` when given.
fn write(path: &Path, key: &DataKey, sealed: Option<&UnlockKey>) -> Result<(), NodeError> {
    let mut text = key.to_hex();
    text.push('\n');
    Ok(at_rest::write(path, text.as_bytes(), sealed)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_fresh_node_makes_the_key_and_keeps_it_private_and_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let k = load_or_make(dir.path(), None, true, None).unwrap().unwrap();
        let path = dir.path().join(DATA_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("data.key.new").exists());
        // A restart reads it back, fresh or not.
        assert_eq!(
            load_or_make(dir.path(), None, false, None).unwrap(),
            Some(k.clone())
        );
        assert_eq!(
            load_or_make(dir.path(), None, true, None).unwrap(),
            Some(k.clone())
        );
        assert_eq!(
            load_or_make(dir.path(), Some(&k), false, None).unwrap(),
            Some(k.clone())
        );
        let e = load_or_make(dir.path(), Some(&DataKey::generate()), false, None).unwrap_err();
        assert!(e.to_string().contains("data_key: the key given"), "{e}");
        assert_eq!(
            load_or_make(dir.path(), None, false, None).unwrap(),
            Some(k)
        );
    }

    #[test]
    fn a_joining_node_keeps_the_key_it_is_given_or_holds_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_or_make(dir.path(), None, false, None).unwrap(), None);
        assert!(!dir.path().join(DATA_KEY_FILE).exists());
        let given = DataKey::generate();
        let k = load_or_make(dir.path(), Some(&given), false, None).unwrap();
        assert_eq!(k, Some(given.clone()));
        assert_eq!(
            load_or_make(dir.path(), None, false, None).unwrap(),
            Some(given)
        );
    }

    #[test]
    fn a_key_left_pending_by_a_crash_is_taken_and_a_damaged_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let k = DataKey::generate();
        std::fs::write(dir.path().join("data.key.new"), k.to_hex().as_bytes()).unwrap();
        assert_eq!(
            load_or_make(dir.path(), None, false, None).unwrap(),
            Some(k)
        );
        assert!(dir.path().join(DATA_KEY_FILE).exists());
        std::fs::write(dir.path().join(DATA_KEY_FILE), "short").unwrap();
        let e = load_or_make(dir.path(), None, true, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("data.key") && e.contains("64 hex"), "{e}");
    }
}
