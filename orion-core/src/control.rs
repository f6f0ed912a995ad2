//! The leader's control loop: node liveness and reconciliation.
//!
//! ```text
//!  wake: committed change │ tick │ leadership change │ membership event
//!                         ▼
//!            am I the Raft leader? ── no ──► sleep
//!                         │ yes
//!                         ▼
//!   gossip says dead / absent too long ──► SetNodeStatus(down)   (Raft decides)
//!   gossip says alive, state says down ──► SetNodeStatus(ready)
//!                         ▼
//!      reconcile::plan(state) ──► ApplyPlan (only when it changes something)
//! ```
//!
//! Errors never end the loop: a failed proposal is logged and the next wake
//! retries from fresh state. A deposed leader's proposals fail to commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::command::Command;
use crate::membership::{Membership, MembershipEvent};
use crate::model::{NodeId, NodeStatus};
use crate::reconcile;
use crate::scheduler::Scheduler;
use crate::store::Store;

/// How the leader paces reconciliation and judges liveness.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlConfig {
    /// Reconcile at least this often, even when nothing changed.
    pub reconcile_interval: Duration,
    /// Most placements requested in one pass (one Raft entry); the rest follow in
    /// the next pass.
    pub max_placements_per_pass: usize,
    /// A node absent from membership's live set this long is marked down, even
    /// without a dead event (it may have died while there was no leader).
    pub absent_grace: Duration,
}

impl Default for ControlConfig {
    /// 1 s: pending allocations are retried about once a second. 5,000 placements
    /// keep one Raft entry under a few MB. 5 s of absence is longer than gossip's own
    /// detection, so it only catches nodes gossip never reported.
    fn default() -> Self {
        ControlConfig {
            reconcile_interval: Duration::from_secs(1),
            max_placements_per_pass: 5_000,
            absent_grace: Duration::from_secs(5),
        }
    }
}

pub(crate) struct Control {
    pub(crate) node_id: NodeId,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) membership: Arc<dyn Membership>,
    pub(crate) scheduler: Arc<dyn Scheduler>,
    pub(crate) config: ControlConfig,
}

impl Control {
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let replica = self.store.replica().clone();
        let mut applied = replica.subscribe_applied();
        let mut leadership = self.store.leadership();
        let mut events = self.membership.subscribe();
        let mut tick = tokio::time::interval(self.config.reconcile_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut absent_since: HashMap<NodeId, Instant> = HashMap::new();
        let mut dead: Vec<NodeId> = Vec::new();
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                r = applied.changed() => if r.is_err() { break },
                r = leadership.changed() => if r.is_err() { break },
                _ = tick.tick() => {}
                ev = events.recv() => match ev {
                    Ok(MembershipEvent::Dead(id)) => dead.push(id),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {}
                },
            }
            if !leadership.borrow_and_update().is_self {
                absent_since.clear();
                dead.clear();
                continue;
            }
            self.liveness(&mut absent_since, std::mem::take(&mut dead))
                .await;
            self.reconcile().await;
        }
        debug!(node_id = %self.node_id, "control loop stopped");
    }

    /// Commits what gossip says of node liveness.
    async fn liveness(&self, absent_since: &mut HashMap<NodeId, Instant>, dead: Vec<NodeId>) {
        let live: Vec<NodeId> = self.membership.live().into_iter().map(|m| m.id).collect();
        let nodes: Vec<(NodeId, NodeStatus)> = self.store.replica().read(|s| {
            s.nodes
                .values()
                .map(|n| (n.id().clone(), n.status))
                .collect()
        });
        let now = Instant::now();
        for (id, status) in nodes {
            let alive = live.contains(&id);
            if alive {
                absent_since.remove(&id);
            }
            let declared_dead = dead.contains(&id) && !alive;
            let absent_too_long = !alive
                && now.duration_since(*absent_since.entry(id.clone()).or_insert(now))
                    >= self.config.absent_grace;
            let cmd = if status != NodeStatus::Down && (declared_dead || absent_too_long) {
                info!(node_id = %id, "node is dead; marking it down");
                Command::SetNodeStatus {
                    id,
                    status: NodeStatus::Down,
                    reason: Some("gossip declared it dead".into()),
                }
            } else if status == NodeStatus::Down && alive {
                info!(node_id = %id, "node is alive again; marking it ready");
                Command::SetNodeStatus {
                    id,
                    status: NodeStatus::Ready,
                    reason: None,
                }
            } else {
                continue;
            };
            if let Err(e) = self.store.propose(cmd).await {
                warn!(error = %e, "could not commit a node's liveness");
            }
        }
    }

    async fn reconcile(&self) {
        let replica = self.store.replica();
        if replica.read(|s| s.cluster_id.is_none()) {
            let cluster_id = uuid::Uuid::new_v4().simple().to_string();
            info!(%cluster_id, "forming a new cluster");
            if let Err(e) = self
                .store
                .propose(Command::InitCluster { cluster_id })
                .await
            {
                warn!(error = %e, "could not name the cluster");
                return;
            }
        }
        let max = self.config.max_placements_per_pass;
        let plan = replica.read(|s| reconcile::plan(s, &*self.scheduler, max, s.applied_index));
        if plan.is_empty() {
            return;
        }
        debug!(
            stops = plan.stops.len(),
            placements = plan.placements.len(),
            unplaced = plan.unplaced.len(),
            "applying plan"
        );
        match self.store.propose(Command::ApplyPlan { plan }).await {
            Ok(applied) => {
                debug!(index = applied.index, response = ?applied.response, "plan applied")
            }
            Err(e) => warn!(error = %e, "could not commit a plan"),
        }
    }
}
