//! openraft's type configuration for Orion, and the node record it replicates.

use std::io::Cursor;

use orion_core::{NodeRole, Peer};
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// openraft's types as Orion uses them: commands in, responses out, `u64` node ids
    /// hashed from Orion's string ids, and [`RaftNode`] as the member record.
    pub TypeConfig:
        D = orion_core::Command,
        R = orion_core::Response,
        NodeId = u64,
        Node = RaftNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// openraft's numeric node id.
pub type RaftNodeId = u64;

/// A log entry as stored.
pub type Entry = openraft::Entry<TypeConfig>;

/// A log id (term + leader + index).
pub type LogId = openraft::LogId<RaftNodeId>;

/// A member of the Raft group as the log records it: Orion's string id plus where
/// to reach the node.
///
/// openraft keys members by a `u64`; [`node_id_of`] derives it from [`RaftNode::id`],
/// and this record keeps the string so leadership and peers can be reported in
/// Orion's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftNode {
    /// Orion's node id (`n1`, a host name).
    pub id: String,
    /// Where its Raft RPCs go (`host:port`).
    pub raft_addr: String,
    /// Where its HTTP API is (`host:port`).
    pub http_addr: String,
    /// Manager or worker; a manager that is a learner is waiting for a voter seat.
    #[serde(default)]
    pub role: NodeRole,
}

impl RaftNode {
    /// The member record for a [`Peer`].
    pub fn from_peer(peer: &Peer) -> Self {
        RaftNode {
            id: peer.id.clone(),
            raft_addr: peer.raft_addr.clone(),
            http_addr: peer.http_addr.clone(),
            role: peer.role,
        }
    }

    /// The [`Peer`] this record describes.
    pub fn to_peer(&self) -> Peer {
        Peer {
            id: self.id.clone(),
            raft_addr: self.raft_addr.clone(),
            http_addr: self.http_addr.clone(),
            role: self.role,
        }
    }
}

/// openraft's numeric id for an Orion node id: FNV-1a 64 of its UTF-8 bytes.
///
/// Stable across versions and platforms (it is part of the persisted log), so it must
/// never change. Two distinct names colliding is astronomically unlikely for a
/// cluster's handful of nodes; `Store::add_peer` on a [`crate::RaftStore`] refuses a
/// collision.
pub fn node_id_of(id: &str) -> RaftNodeId {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    id.bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Reference values of FNV-1a 64 (from the FNV test suite).
        assert_eq!(node_id_of(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(node_id_of("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(node_id_of("foobar"), 0x8594_4171_f739_67e8);
        assert_ne!(node_id_of("n1"), node_id_of("n2"));
    }
}
