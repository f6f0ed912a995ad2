//! The `Store` seam: replicated, durable cluster state.
//!
//! Adapters: `RaftStore` (openraft over sled or redb) in `orion-store`; `MemStore`
//! in [`crate::testing`].

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::command::{Command, Response};
use crate::model::{NodeId, NodeRole};
use crate::replica::Replica;

/// What a committed proposal answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The log index it was committed at.
    pub index: u64,
    /// What the state machine answered.
    pub response: Response,
}

/// Who leads, as this node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Leadership {
    /// The leader's node id, when one is known.
    pub leader: Option<NodeId>,
    /// The leader's HTTP API address, when known.
    pub leader_http: Option<String>,
    /// Whether this node is the leader.
    pub is_self: bool,
    /// The Raft term (0 for stores without terms).
    pub term: u64,
    /// This node leads but has heard from no majority of the voters for longer
    /// than an election takes: it is cut off (or deposed without knowing yet), so
    /// it takes no writes and its control loop does not act.
    #[serde(default)]
    pub quorum_lost: bool,
}

/// A peer as the store knows it: a Raft voter or learner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Peer {
    /// Its node id.
    pub id: NodeId,
    /// Where its Raft RPCs go.
    pub raft_addr: String,
    /// Where its HTTP API is.
    pub http_addr: String,
    /// Manager (voter) or worker (not a member of the Raft group).
    pub role: NodeRole,
}

/// Where a node's store stands: its log against its replica, how far the
/// followers trail (seen from the leader), and its snapshots. Read by
/// `/health` (the store component's `lag`) and the metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoreStatus {
    /// Index of the last entry in this node's log.
    pub last_log_index: u64,
    /// Index of the last entry applied to this node's replica.
    pub applied_index: u64,
    /// Entries in this node's log not yet applied: how far its reads trail
    /// what it has received.
    pub unapplied: u64,
    /// On the leader, how many entries each other voter's log trails the
    /// leader's (an unreachable one counts from 0); empty on a follower, which
    /// cannot know.
    pub followers_behind: std::collections::BTreeMap<String, u64>,
    /// Snapshots built and installed here.
    pub snapshots: SnapshotStatus,
    /// How long, in milliseconds, entries have waited in this node's log while
    /// its applied index stood still (0: none waits, or the index moves). A
    /// store whose entries wait for seconds cannot commit — a majority of the
    /// managers is not answering or not storing — even while this node still
    /// sees a leader (a follower of a leader that lost its quorum), so
    /// `/health` calls it unhealthy.
    #[serde(default)]
    pub commit_stalled_ms: u64,
}

impl StoreStatus {
    /// How far this node's view trails: the largest of its own unapplied
    /// entries and (on the leader) any follower's lag.
    pub fn lag(&self) -> u64 {
        self.followers_behind
            .values()
            .copied()
            .chain([self.unapplied])
            .max()
            .unwrap_or(0)
    }
}

/// What a node's store has done with snapshots since it opened.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotStatus {
    /// Snapshots this node built (compacting its log).
    pub built: u64,
    /// Snapshots this node installed from its leader.
    pub installed: u64,
    /// Log index the latest snapshot covers (0: none).
    pub index: u64,
    /// Size in bytes of the latest snapshot built or installed.
    pub size_bytes: u64,
    /// How long building the latest snapshot took, capture to durable, in
    /// seconds (0 before the first).
    pub build_seconds: f64,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No leader is known right now (election under way, or cut off from the majority);
    /// retry later.
    #[error("no leader is known: {0}")]
    NoLeader(String),
    /// The call timed out before the entry was known committed; it may commit later.
    #[error("timed out waiting for commit")]
    Timeout,
    /// The store was shut down.
    #[error("store is shut down")]
    Shutdown,
    /// Reading or writing local storage failed; not retryable.
    #[error("storage failed: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The request to the leader or a peer failed.
    #[error("forwarding to the leader failed: {0}")]
    Forward(String),
    /// The call is not supported by this store (membership changes on a `MemStore`).
    #[error("{0} is not supported by this store")]
    Unsupported(&'static str),
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    Membership(String),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::NoLeader(_) | StoreError::Timeout | StoreError::Forward(_)
        )
    }
}

/// Replicated, durable cluster state.
///
/// # Correctness
///
/// - [`propose`](Store::propose) returns only after the command is committed (on a
///   majority, durably) and applied to this node's [`Replica`]; a follower forwards
///   it to the leader and waits until it has applied the same index locally.
/// - The replica applies committed commands in log order, exactly once each, on
///   every node, including after a restart (log replay or snapshot install).
/// - [`replica`](Store::replica) reads are local and may lag the leader;
///   [`read_barrier`](Store::read_barrier) first makes them linearizable.
/// - `propose` is at-least-once: a proposal retried after a timeout, a forward
///   whose answer was lost, or a leader change may be committed twice (and a
///   caller that sees `Timeout` cannot know whether it was committed at all).
///   Every [`Command`] is therefore idempotent — applied a second time it
///   leaves the state as the first left it: allocation counters are absolute,
///   not deltas; several reports of one allocation in one command are folded
///   into one; a [`Command::Batch`] carries an id and is answered from the
///   state's recent batches when committed again. The property
///   `state::props::any_history_keeps_invariants_and_every_command_is_idempotent`
///   checks every kind after random histories, and the `command` fuzz target
///   every command it can decode.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Commits `cmd` and waits until this node has applied it.
    async fn propose(&self, cmd: Command) -> Result<Applied, StoreError>;

    /// This node's copy of the state.
    fn replica(&self) -> &Arc<Replica>;

    /// Waits until this node's replica reflects every write committed before the call.
    async fn read_barrier(&self) -> Result<(), StoreError>;

    /// Who leads; changes as elections happen.
    fn leadership(&self) -> watch::Receiver<Leadership>;

    /// Adds a node: managers become voters (learner first, then a membership change),
    /// workers are recorded and take no part in votes. Idempotent.
    async fn add_peer(&self, _peer: Peer) -> Result<(), StoreError> {
        Err(StoreError::Unsupported("adding peers"))
    }

    /// Removes a node from the voter set, shrinking it safely. Idempotent.
    async fn remove_peer(&self, _id: &NodeId) -> Result<(), StoreError> {
        Err(StoreError::Unsupported("removing peers"))
    }

    /// The current voters.
    fn voters(&self) -> Vec<Peer> {
        Vec::new()
    }

    /// Where this store stands (log, lag, snapshots); a store without a log
    /// reports its replica's applied index as both ends and no lag.
    fn status(&self) -> StoreStatus {
        let applied = self.replica().applied_index();
        StoreStatus {
            last_log_index: applied,
            applied_index: applied,
            ..StoreStatus::default()
        }
    }

    /// Stops replication and flushes what is durable.
    async fn shutdown(&self) -> Result<(), StoreError>;
}
