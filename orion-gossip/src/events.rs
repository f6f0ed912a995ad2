//! The watcher task: chitchat's live-node snapshots in, membership events out.
//!
//! ```text
//! chitchat gossip round ──(live set or a node's version changed)──► watch
//!        │                                                            │
//!        │                            snapshot → live members by id ◄─┘
//!        │                                        │ diff against the last set
//!        │                                        ▼
//!        │                     live map updated, then Joined / Updated / Dead
//!        │                                  broadcast to subscribers
//!        └─ the local node's applied version ──► publish() waits on it
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chitchat::{ChitchatId, NodeState, Version};
use orion_core::membership::{Member, MembershipEvent};
use orion_core::model::NodeId;
use parking_lot::RwLock;
use tokio::sync::{broadcast, watch};
use tracing::{debug, error, info};

use crate::codec::live_members;
use crate::diff::diff;

/// What the watcher task maintains and the handle reads.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Live members by id, the local one included; replaced before the events
    /// describing the change are sent, so a subscriber that reads it after an
    /// event sees that event applied.
    pub(crate) live: RwLock<BTreeMap<NodeId, Member>>,
    /// Where events go.
    pub(crate) events: broadcast::Sender<MembershipEvent>,
}

/// The watcher task's inputs.
pub(crate) struct Watcher {
    /// The local node's chitchat id.
    pub(crate) local: ChitchatId,
    /// chitchat's live-node snapshots.
    pub(crate) snapshots: watch::Receiver<BTreeMap<ChitchatId, NodeState>>,
    /// The live map and the event channel.
    pub(crate) shared: Arc<Shared>,
    /// The local node's key-value version last applied to `shared`.
    pub(crate) applied: watch::Sender<Version>,
}

impl Watcher {
    /// Runs until `stop` fires or `server_ended` resolves (the gossip server
    /// stopped on its own, e.g. its socket broke).
    pub(crate) async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        server_ended: impl Future<Output = impl std::fmt::Debug>,
    ) {
        tokio::pin!(server_ended);
        loop {
            self.apply_latest();
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                result = &mut server_ended => {
                    error!(node_id = %self.local.node_id, ?result, "gossip server stopped; membership no longer updates");
                    break;
                }
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
    }

    /// Diffs the latest snapshot into events and publishes them.
    fn apply_latest(&mut self) {
        let snapshot = self.snapshots.borrow_and_update();
        // Before its first gossip round chitchat's snapshot is empty: not a
        // view of the cluster, and it would report everyone dead, us included.
        let Some(local_state) = snapshot.get(&self.local) else {
            return;
        };
        let current = live_members(&self.local, &snapshot);
        let local_version = local_state.max_version();
        drop(snapshot);

        let events = {
            let mut live = self.shared.live.write();
            let events = diff(&live, &current);
            *live = current;
            events
        };
        for event in events {
            log_event(&event);
            // No subscriber is not an error.
            let _ = self.shared.events.send(event);
        }
        self.applied.send_replace(local_version);
    }
}

/// One structured log line per event.
fn log_event(event: &MembershipEvent) {
    match event {
        MembershipEvent::Joined(member) => {
            info!(node_id = %member.id, generation = member.generation, role = %member.role, "node joined");
        }
        MembershipEvent::Updated { updated, .. } => {
            // Frequent (every change of used resources): debug, not info.
            debug!(node_id = %updated.id, generation = updated.generation, "node updated");
        }
        MembershipEvent::Suspect(id) => info!(node_id = %id, "node suspect"),
        MembershipEvent::Dead(id) => info!(node_id = %id, "node dead"),
    }
}
