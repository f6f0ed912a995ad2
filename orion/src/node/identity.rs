//! The node-id file: a data dir remembers the node it was made for, so a node
//! renamed by accident does not reopen another node's Raft state as a stranger.

use std::path::Path;

use super::NodeError;

/// The file in the data dir that holds the node id.
pub const NODE_ID_FILE: &str = "node-id";

/// The node id: `given`, else the one this data dir was first started with,
/// else the host name. Refuses a `given` id other than the stored one; writes
/// the id when the data dir is new.
pub(crate) fn node_id(dir: &Path, given: Option<&str>) -> Result<String, NodeError> {
    let file = dir.join(NODE_ID_FILE);
    let stored = match std::fs::read_to_string(&file) {
        Ok(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(NodeError::DataDir { path: file, source }),
    };
    let id = match (given, stored.as_deref()) {
        (Some(given), Some(stored)) if given != stored => {
            return Err(NodeError::WrongNode {
                dir: dir.to_path_buf(),
                stored: stored.into(),
                given: given.into(),
            })
        }
        (_, Some(stored)) => return Ok(stored.to_string()),
        (Some(given), None) => given.to_string(),
        (None, None) => orion_core::cluster::host_name(),
    };
    orion_core::spec::check_dns_label(&id)
        .map_err(|p| super::ConfigError::new("node_id", format!("{id:?}: {p}")))?;
    std::fs::write(&file, format!("{id}\n"))
        .map_err(|source| NodeError::DataDir { path: file, source })?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_keeps_its_node_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(node_id(dir.path(), Some("n1")).unwrap(), "n1");
        assert_eq!(node_id(dir.path(), None).unwrap(), "n1", "remembered");
        assert_eq!(node_id(dir.path(), Some("n1")).unwrap(), "n1");
        let e = node_id(dir.path(), Some("n2")).unwrap_err();
        assert!(matches!(e, NodeError::WrongNode { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("belongs to node \"n1\", not \"n2\""),
            "{text}"
        );
        let stored = std::fs::read_to_string(dir.path().join(NODE_ID_FILE)).unwrap();
        assert_eq!(stored.trim(), "n1", "the refusal changed nothing");
    }

    #[test]
    fn a_new_data_dir_takes_the_host_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            node_id(dir.path(), None).unwrap(),
            orion_core::cluster::host_name()
        );
    }
}
