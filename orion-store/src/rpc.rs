//! What travels between nodes besides Raft's own messages: calls a follower forwards
//! to the leader, and their answers. JSON over HTTP, on the paths below.

use std::time::Duration;

use orion_core::{Applied, Command, NodeId, Peer, StoreError};
use serde::{Deserialize, Serialize};

/// Raft append-entries (and heartbeats).
pub const APPEND_PATH: &str = "/raft/append";
/// Raft vote requests.
pub const VOTE_PATH: &str = "/raft/vote";
/// Raft snapshot chunks.
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";
/// Calls forwarded to the leader.
pub const FORWARD_PATH: &str = "/raft/forward";

/// A call only the leader can carry out.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub(crate) enum LeaderCall {
    /// Commit a command.
    Propose {
        /// The command (boxed: it is far larger than the other calls).
        cmd: Box<Command>,
    },
    /// Confirm leadership with a quorum and name the index reads must wait for.
    ReadIndex,
    /// Add a peer (learner, then voter for managers).
    AddPeer {
        /// The peer.
        peer: Peer,
    },
    /// Remove a peer.
    RemovePeer {
        /// Its node id.
        id: NodeId,
    },
}

/// A [`LeaderCall`] with the time the caller will wait for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Forwarded {
    /// The call.
    pub call: LeaderCall,
    /// How long the caller waits; the leader gives up no later.
    pub budget: Duration,
}

/// The leader's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub(crate) enum LeaderReply {
    /// The command was committed and applied on the leader.
    Applied {
        /// Index and response.
        applied: Applied,
    },
    /// Reads are linearizable once the replica has applied `index`.
    ReadIndex {
        /// The read index.
        index: u64,
    },
    /// Done.
    Done,
    /// It failed.
    Failed {
        /// Why.
        error: WireError,
    },
}

/// A [`StoreError`] as it crosses the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub(crate) enum WireError {
    /// The node asked is not the leader (any more): ask again.
    NotLeader,
    /// No leader, or no quorum: ask again later.
    NoLeader(String),
    /// The leader has been cut off from the majority for a while: asking again
    /// soon will not help.
    NoQuorum(String),
    /// Timed out; it may still commit.
    Timeout,
    /// The leader is shutting down.
    Shutdown,
    /// Storage failed on the leader.
    Storage(String),
    /// A membership change was refused.
    Membership(String),
}

impl WireError {
    /// Whether asking (the new) leader again may succeed.
    pub fn is_retry(&self) -> bool {
        matches!(
            self,
            WireError::NotLeader | WireError::NoLeader(_) | WireError::Shutdown
        )
    }
}

impl From<WireError> for StoreError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::NotLeader => StoreError::NoLeader("the leader changed".into()),
            WireError::NoLeader(why) | WireError::NoQuorum(why) => StoreError::NoLeader(why),
            WireError::Timeout => StoreError::Timeout,
            WireError::Shutdown => StoreError::NoLeader("the leader is shutting down".into()),
            WireError::Storage(why) => StoreError::Forward(format!("leader storage: {why}")),
            WireError::Membership(why) => StoreError::Membership(why),
        }
    }
}

impl From<StoreError> for WireError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoLeader(why) => WireError::NoLeader(why),
            StoreError::Timeout => WireError::Timeout,
            StoreError::Shutdown => WireError::Shutdown,
            StoreError::Membership(why) => WireError::Membership(why),
            other => WireError::Storage(other.to_string()),
        }
    }
}
