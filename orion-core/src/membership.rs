//! The `Membership` seam: who is alive, with what capacity, tags and addresses.
//!
//! Gossip informs, Raft decides: a membership event is a hint to the leader, which
//! commits the node's new status through the store before anything acts on it.
//! Adapters: `ChitchatMembership` in `orion-gossip`; `StaticMembership` in
//! [`crate::testing`].

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::model::{NodeAddrs, NodeId, NodeRole};
use crate::spec::Resources;

/// What a node publishes about itself through membership.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Bumped each time the node process starts, so a stale incarnation is told apart.
    pub generation: u64,
    /// Its addresses.
    pub addrs: NodeAddrs,
    /// Manager or worker.
    pub role: NodeRole,
    /// What it offers.
    pub capacity: Resources,
    /// What its allocations use now.
    pub used: Resources,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// What its instances of scaling jobs report, by job (see
    /// [`crate::scaling::JobLoad`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub load: BTreeMap<String, crate::scaling::JobLoad>,
    /// The nodes this one has lost (registered, not live in its view): its
    /// accusations, which the leader counts before it marks a node down
    /// ([`crate::liveness::verdict`]). Empty while the node is starved.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub suspects: BTreeSet<NodeId>,
    /// Whether this node is itself starved (its event loop lags): it then
    /// accuses no one, and its silence defends no one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub starved: bool,
}

/// A change in who is alive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // an update carries two records, by design; a few per node per stats round
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MembershipEvent {
    /// A node became alive (first seen, back from dead, or a new generation).
    Joined(Member),
    /// A live node's metadata changed.
    Updated {
        /// Before.
        previous: Member,
        /// After.
        updated: Member,
    },
    /// A node is suspected (missed heartbeats) but not yet declared dead.
    Suspect(NodeId),
    /// A node is declared dead.
    Dead(NodeId),
}

/// Why a membership call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// Binding or using the gossip socket failed.
    #[error("gossip transport failed: {0}")]
    Transport(String),
    /// The membership service was shut down.
    #[error("membership is shut down")]
    Shutdown,
}

/// Membership and failure detection.
///
/// # Correctness
///
/// - [`live`](Membership::live) includes the local node.
/// - Every change of the live set is reported once on [`subscribe`](Membership::subscribe)
///   in the order observed; a receiver that lags may miss events and should
///   re-read [`live`](Membership::live).
#[async_trait]
pub trait Membership: Send + Sync + 'static {
    /// The local node's id.
    fn local_id(&self) -> &NodeId;

    /// Live members now, the local one included.
    fn live(&self) -> Vec<Member>;

    /// Events from now on.
    fn subscribe(&self) -> broadcast::Receiver<MembershipEvent>;

    /// Publishes new facts about the local node (used resources, tags).
    async fn publish(&self, member: Member) -> Result<(), MembershipError>;

    /// Leaves the cluster and stops gossiping.
    async fn shutdown(&self);
}

/// Membership of a single node: the local node is the only member and never dies.
/// The default for a one-node cluster, where there is nobody to gossip with.
#[derive(Debug)]
pub struct SoloMembership {
    local: parking_lot::Mutex<Member>,
    id: NodeId,
    events: broadcast::Sender<MembershipEvent>,
}

impl SoloMembership {
    /// Membership of `local` alone.
    pub fn new(local: Member) -> Self {
        let (events, _) = broadcast::channel(16);
        SoloMembership {
            id: local.id.clone(),
            local: parking_lot::Mutex::new(local),
            events,
        }
    }
}

#[async_trait]
impl Membership for SoloMembership {
    fn local_id(&self) -> &NodeId {
        &self.id
    }

    fn live(&self) -> Vec<Member> {
        vec![self.local.lock().clone()]
    }

    fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        self.events.subscribe()
    }

    async fn publish(&self, member: Member) -> Result<(), MembershipError> {
        *self.local.lock() = member;
        Ok(())
    }

    async fn shutdown(&self) {}
}
